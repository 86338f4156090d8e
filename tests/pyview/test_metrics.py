"""PyView's own metrics reach Prometheus through livestate's InstrumentationProvider."""

from __future__ import annotations

from prometheus_client import REGISTRY
from pyview import PyView  # type: ignore[import-untyped]
from pyview.ws_handler import LiveSocketMetrics  # type: ignore[import-untyped]

from livestate.pyview import PrometheusInstrumentation


def test_pyview_records_into_prometheus() -> None:
    """What PyView's socket handler records (connections, mounts, render times) is exported,
    labelled by the attributes PyView passes; one name is one metric across providers."""
    provider = PrometheusInstrumentation()
    app = PyView(instrumentation=provider)
    assert app.instrumentation is provider
    metrics = LiveSocketMetrics(provider)  # what PyView's socket handler makes
    before = REGISTRY.get_sample_value("pyview_liveview_mounts_total", {"view": "Room"}) or 0
    metrics.active_connections.add(1)
    metrics.mounts.add(1, {"view": "Room"})
    with provider.time_histogram("pyview.render.duration", {"view": "Room"}):
        pass
    LiveSocketMetrics(PrometheusInstrumentation()).mounts.add(1, {"view": "Room"})
    assert REGISTRY.get_sample_value("pyview_liveview_mounts_total", {"view": "Room"}) == before + 2
    assert REGISTRY.get_sample_value("pyview_websocket_active_connections") is not None
    assert (REGISTRY.get_sample_value("pyview_render_duration_count", {"view": "Room"}) or 0) >= 1
    with provider.span("render") as span:
        span.set_attribute("view", "Room")  # kept nowhere, and harmless
