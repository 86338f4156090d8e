"""PyView's own metrics in Prometheus, beside livestate's: an InstrumentationProvider.

PyView (0.9) records its metrics (WebSocket connections, mounts, events, render
and event durations, message sizes) into whatever `instrumentation=` provider
the app gives it; by default nothing. This provider keeps them in
prometheus-client's default registry, named as PyView names them with dots as
underscores (`pyview.render.duration` → `pyview_render_duration`), so one
`/metrics` endpoint shows the views and the live states together.

A metric's labels are the attribute names of its first record (PyView always
passes the same ones for a metric: `view`, `event`); a later record missing one
gets "". Spans are not kept (Prometheus has none): `start_span` returns one that
drops everything.
"""

from __future__ import annotations

import threading
from typing import Any

from pyview.instrumentation import InstrumentationProvider  # type: ignore[import-untyped]
from pyview.instrumentation.interfaces import (  # type: ignore[import-untyped]
    Counter,
    Gauge,
    Histogram,
    Span,
    UpDownCounter,
)

from .._extras import require


class _Instrument:
    """One PyView instrument over one prometheus-client metric, made at its first record."""

    def __init__(self, provider: PrometheusInstrumentation, kind: str, name: str, doc: str) -> None:
        self._provider = provider
        self._kind = kind
        self._name = name.replace(".", "_").replace("-", "_")
        self._doc = doc or name
        self._metric: Any = None
        self._labels: tuple[str, ...] = ()

    def _series(self, attributes: dict[str, Any] | None) -> Any:
        if self._metric is None:
            self._labels = tuple(sorted(attributes or ()))
            self._metric = self._provider.metric(self._kind, self._name, self._doc, self._labels)
        if not self._labels:
            return self._metric
        values = attributes or {}
        return self._metric.labels(*(str(values.get(label, "")) for label in self._labels))


class _Counter(_Instrument, Counter):  # type: ignore[misc]
    def add(self, value: float = 1, attributes: dict[str, Any] | None = None) -> None:
        self._series(attributes).inc(value)


class _UpDownCounter(_Instrument, UpDownCounter):  # type: ignore[misc]
    def add(self, value: float, attributes: dict[str, Any] | None = None) -> None:
        self._series(attributes).inc(value)


class _Gauge(_Instrument, Gauge):  # type: ignore[misc]
    def set(self, value: float, attributes: dict[str, Any] | None = None) -> None:
        self._series(attributes).set(value)


class _Histogram(_Instrument, Histogram):  # type: ignore[misc]
    def record(self, value: float, attributes: dict[str, Any] | None = None) -> None:
        self._series(attributes).observe(value)


class _Span(Span):  # type: ignore[misc]
    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def add_event(self, name: str, attributes: dict[str, Any] | None = None) -> None:
        pass

    def end(self, status: str = "ok") -> None:
        pass


class PrometheusInstrumentation(InstrumentationProvider):  # type: ignore[misc]
    """PyView's metrics into prometheus-client: `PyView(instrumentation=...)`.

    Instruments with one name are one metric, however often PyView asks for
    them. Raises ImportError, saying what to install, without prometheus-client.
    """

    def __init__(self) -> None:
        self._client = require("prometheus_client", "PrometheusInstrumentation", "metrics")
        self._instruments: dict[tuple[str, str], _Instrument] = {}
        self._lock = threading.Lock()

    def metric(self, kind: str, name: str, doc: str, labels: tuple[str, ...]) -> Any:
        """The prometheus-client metric for an instrument (shared across providers by name)."""
        with self._lock:
            made = _made.get(name)
            if made is None:
                made = _made[name] = {
                    "counter": self._client.Counter,
                    "updown": self._client.Gauge,
                    "gauge": self._client.Gauge,
                    "histogram": self._client.Histogram,
                }[kind](name, doc, labels)
            return made

    def _instrument(self, kind: str, cls: type[_Instrument], name: str, description: str) -> Any:
        with self._lock:
            found = self._instruments.get((kind, name))
            if found is None:
                found = self._instruments[kind, name] = cls(self, kind, name, description)
            return found

    def create_counter(self, name: str, description: str = "", unit: str = "") -> Counter:
        """A counter (PyView's name, dots as underscores)."""
        result: Counter = self._instrument("counter", _Counter, name, description)
        return result

    def create_updown_counter(
        self, name: str, description: str = "", unit: str = ""
    ) -> UpDownCounter:
        """A counter that goes both ways: a Prometheus gauge."""
        result: UpDownCounter = self._instrument("updown", _UpDownCounter, name, description)
        return result

    def create_gauge(self, name: str, description: str = "", unit: str = "") -> Gauge:
        """A gauge."""
        result: Gauge = self._instrument("gauge", _Gauge, name, description)
        return result

    def create_histogram(self, name: str, description: str = "", unit: str = "") -> Histogram:
        """A histogram (prometheus-client's default buckets)."""
        result: Histogram = self._instrument("histogram", _Histogram, name, description)
        return result

    def start_span(self, name: str, attributes: dict[str, Any] | None = None) -> Span:
        """A span that keeps nothing: Prometheus has no spans."""
        return _Span()


_made: dict[str, Any] = {}
"""prometheus-client metrics by name: its registry refuses a name twice per process."""
