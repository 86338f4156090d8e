"""Metrics: what a node counts, exported through prometheus-client when it is installed.

A node makes a `Metrics` only when metrics are on (prometheus-client importable,
and LIVESTATE_METRICS not "0"); everywhere else the node holds None, and each
place that counts checks that first, so metrics off cost one comparison. Counting
is per write or per message, never per client: a fan-out to a thousand clients
adds its count once.

Counting is plain Python arithmetic on the node's own numbers (no lock, no
prometheus-client object per count); one collector, registered once per process,
turns every live node's numbers into metric families when Prometheus scrapes.

Every metric is labelled with the node id; none is labelled with a key, so their
number stays bounded whatever the keys (see `livestate inspect` for keys).
"""

from __future__ import annotations

import bisect
import os
import time
import weakref
from collections import Counter
from collections.abc import Iterator
from typing import Any

NAMES = {
    "live_states": "Live states with a replica on this node (clients attached here).",
    "clients": "Clients attached on this node.",
    "writes": "Writes this node made, by op kind.",
    "deliveries": "Changes handed to clients on this node, by change kind.",
    "write_seconds": "Seconds a write takes, from the call to the local replica showing it.",
    "delivery_seconds": "Seconds from a write on another node to this node's replica applying it.",
    "resyncs": "Snapshots a replica loaded instead of the next message, by cause.",
    "resets": "Resets handed to clients instead of a backlog or a gap, by cause.",
    "reconnects": "Times the backend's pub/sub connection was opened again.",
    "backend_errors": "Backend calls that failed, by error (BUSY, OOM, unavailable, ...).",
    "lease_renewals": "Leases this node renewed on its live states.",
    "quota_refusals": "Calls refused by a limit (live states per node or spec, attaches).",
}
"""The metrics, each `livestate_<name>` (counters get `_total`), and what they count."""

BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Upper bounds (seconds) of the latency histograms' buckets."""

_LABELLED = {"writes": "kind", "deliveries": "kind", "resyncs": "cause", "resets": "cause",
             "backend_errors": "error", "quota_refusals": "limit"}  # fmt: skip

_nodes: weakref.WeakSet[Metrics] = weakref.WeakSet()
_registered = False


def enabled() -> bool:
    """Whether metrics are on: prometheus-client is installed and LIVESTATE_METRICS is not 0."""
    if os.environ.get("LIVESTATE_METRICS", "1") == "0":
        return False
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True


class _Histogram:
    """Bucket counts, a count and a sum: what a Prometheus histogram exports."""

    __slots__ = ("buckets", "count", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * (len(BUCKETS) + 1)  # the last one is +Inf
        self.count = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.count += 1
        self.sum += seconds


class Metrics:
    """One node's metrics: small methods the node, its replicas, clients and backend call."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.states = 0
        self.clients = 0
        self.counts: dict[str, Counter[str]] = {name: Counter() for name in _LABELLED}
        self.deliveries = self.counts["deliveries"]  # counted once per change
        self.reconnects = 0
        self.renewals = 0
        self.write_seconds = _Histogram()
        self.delivery_seconds = _Histogram()
        _register()
        _nodes.add(self)

    def close(self) -> None:
        """Stop reporting this node: a closed node is not scraped any more."""
        _nodes.discard(self)

    def population(self, states: int, clients: int) -> None:
        """How many live states and clients this node has now."""
        self.states = states
        self.clients = clients

    def wrote(self, kind: str, started: float) -> None:
        """A write of op `kind`, called at `started` (perf_counter), is done and shown here."""
        self.counts["writes"][kind] += 1
        self.write_seconds.observe(time.perf_counter() - started)

    def delivered(self, kind: str, count: int, sent: float) -> None:
        """A change of `kind` went to `count` clients; `sent` is the write's wall clock time."""
        if count:
            self.deliveries[kind] += count
        if sent:
            seconds = time.time() - sent  # below 0 when the writer's clock runs ahead
            self.delivery_seconds.observe(seconds if seconds > 0.0 else 0.0)

    def resynced(self, cause: str) -> None:
        """A replica loaded a snapshot because of `cause` (gap, reconnect, heartbeat, ...)."""
        self.counts["resyncs"][cause] += 1

    def reset(self, cause: str, count: int = 1) -> None:
        """`count` clients got a reset instead of changes, because of `cause`."""
        self.counts["resets"][cause] += count

    def reconnected(self) -> None:
        """The pub/sub connection was opened again."""
        self.reconnects += 1

    def failed(self, error: str) -> None:
        """A backend call failed with `error` (a server error code, or the error's kind)."""
        self.counts["backend_errors"][error] += 1

    def refused(self, limit: str) -> None:
        """A call was refused by `limit` (live_states, attaches)."""
        self.counts["quota_refusals"][limit] += 1

    def renewed(self, count: int) -> None:
        """`count` leases were renewed."""
        self.renewals += count


def _register() -> None:
    """Register the one collector in prometheus-client's default registry, once."""
    global _registered
    if not _registered:
        from prometheus_client import REGISTRY

        REGISTRY.register(_Collector())
        _registered = True


class _Collector:
    """Turns every live node's numbers into metric families at scrape time."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        nodes = list(_nodes)
        states = GaugeMetricFamily("livestate_live_states", NAMES["live_states"], labels=["node"])
        clients = GaugeMetricFamily("livestate_clients", NAMES["clients"], labels=["node"])
        reconnects = CounterMetricFamily(
            "livestate_reconnects", NAMES["reconnects"], labels=["node"]
        )
        renewals = CounterMetricFamily(
            "livestate_lease_renewals", NAMES["lease_renewals"], labels=["node"]
        )
        labelled = {
            name: CounterMetricFamily(f"livestate_{name}", NAMES[name], labels=["node", label])
            for name, label in _LABELLED.items()
        }
        histograms = {
            name: HistogramMetricFamily(f"livestate_{name}", NAMES[name], labels=["node"])
            for name in ("write_seconds", "delivery_seconds")
        }
        for metrics in nodes:
            node = metrics.node
            states.add_metric([node], metrics.states)
            clients.add_metric([node], metrics.clients)
            reconnects.add_metric([node], metrics.reconnects)
            renewals.add_metric([node], metrics.renewals)
            for name, family in labelled.items():
                for label, value in metrics.counts[name].items():
                    family.add_metric([node, label], value)
            for name, histogram_family in histograms.items():
                histogram: _Histogram = getattr(metrics, name)
                running, buckets = 0, []
                for bound, count in zip(
                    [*map(str, BUCKETS), "+Inf"], histogram.buckets, strict=True
                ):
                    running += count
                    buckets.append((bound, running))
                histogram_family.add_metric([node], buckets, histogram.sum)
        yield states
        yield clients
        yield reconnects
        yield renewals
        yield from labelled.values()
        yield from histograms.values()
