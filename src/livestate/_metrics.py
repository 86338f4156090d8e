"""Metrics: what a node counts, exported through prometheus-client when it is installed.

A node makes a `Metrics` only when metrics are on (prometheus-client importable,
and LIVESTATE_METRICS not "0"); everywhere else the node holds None, and each
place that counts checks that first, so metrics off cost one comparison. Counting
is per write or per message, never per client: a fan-out to a thousand clients
adds its count once.

Every metric is labelled with the node id; none is labelled with a key, so their
number stays bounded whatever the keys (see `livestate inspect` for keys).
"""

from __future__ import annotations

import os
import time
from typing import Any

NAMES = {
    "live_states": "Live states with a replica on this node (clients attached here).",
    "clients": "Clients attached on this node.",
    "writes": "Writes this node made, by op kind.",
    "deliveries": "Changes handed to clients on this node, by change kind.",
    "write_seconds": "Seconds a write takes, from the call to the local replica showing it.",
    "delivery_seconds": "Seconds from a write on any node to this node's replica applying it.",
    "resyncs": "Snapshots a replica loaded instead of the next message, by cause.",
    "resets": "Resets handed to clients instead of a backlog or a gap, by cause.",
    "reconnects": "Times the backend's pub/sub connection was opened again.",
    "backend_errors": "Backend calls that failed, by error (BUSY, OOM, timeout, ...).",
    "lease_renewals": "Leases this node renewed on its live states.",
}
"""The metrics, each `livestate_<name>` (counters get `_total`), and what they count."""

_LATENCY = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def enabled() -> bool:
    """Whether metrics are on: prometheus-client is installed and LIVESTATE_METRICS is not 0."""
    if os.environ.get("LIVESTATE_METRICS", "1") == "0":
        return False
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True


_made: dict[str, Any] = {}


def _family() -> dict[str, Any]:
    """The prometheus-client objects, made once per process (its registry refuses twins)."""
    if not _made:
        from prometheus_client import Counter, Gauge, Histogram

        node = ["node"]
        _made.update(
            {
                "live_states": Gauge("livestate_live_states", NAMES["live_states"], node),
                "clients": Gauge("livestate_clients", NAMES["clients"], node),
                "writes": Counter("livestate_writes", NAMES["writes"], [*node, "kind"]),
                "deliveries": Counter("livestate_deliveries", NAMES["deliveries"], [*node, "kind"]),
                "write_seconds": Histogram(
                    "livestate_write_seconds", NAMES["write_seconds"], node, buckets=_LATENCY
                ),
                "delivery_seconds": Histogram(
                    "livestate_delivery_seconds",
                    NAMES["delivery_seconds"],
                    node,
                    buckets=_LATENCY,
                ),
                "resyncs": Counter("livestate_resyncs", NAMES["resyncs"], [*node, "cause"]),
                "resets": Counter("livestate_resets", NAMES["resets"], [*node, "cause"]),
                "reconnects": Counter("livestate_reconnects", NAMES["reconnects"], node),
                "backend_errors": Counter(
                    "livestate_backend_errors", NAMES["backend_errors"], [*node, "error"]
                ),
                "lease_renewals": Counter(
                    "livestate_lease_renewals", NAMES["lease_renewals"], node
                ),
            }
        )
    return _made


class Metrics:
    """One node's metrics: small methods the node, its replicas, clients and backend call."""

    def __init__(self, node: str) -> None:
        family = _family()
        self.node = node
        self._family = family
        self._states = family["live_states"].labels(node)
        self._clients = family["clients"].labels(node)
        self._write_seconds = family["write_seconds"].labels(node)
        self._delivery_seconds = family["delivery_seconds"].labels(node)
        self._reconnects = family["reconnects"].labels(node)
        self._leases = family["lease_renewals"].labels(node)
        self._children: dict[tuple[str, str], Any] = {}

    def close(self) -> None:
        """Remove this node's series: a closed node is not reported any more."""
        for name in ("live_states", "clients", "write_seconds", "delivery_seconds",
                     "reconnects", "lease_renewals"):  # fmt: skip
            self._family[name].remove(self.node)
        for name, label in self._children:
            self._family[name].remove(self.node, label)
        self._children.clear()

    def _child(self, name: str, label: str) -> Any:
        child = self._children.get((name, label))
        if child is None:
            child = self._children[name, label] = self._family[name].labels(self.node, label)
        return child

    def population(self, states: int, clients: int) -> None:
        """How many live states and clients this node has now."""
        self._states.set(states)
        self._clients.set(clients)

    def wrote(self, kind: str, started: float) -> None:
        """A write of op `kind`, called at `started` (perf_counter), is done and shown here."""
        self._child("writes", kind).inc()
        self._write_seconds.observe(time.perf_counter() - started)

    def delivered(self, kind: str, count: int, sent: float) -> None:
        """A change of `kind` went to `count` clients; `sent` is the write's wall clock time."""
        if count:
            self._child("deliveries", kind).inc(count)
        if sent:
            self._delivery_seconds.observe(max(0.0, time.time() - sent))

    def resynced(self, cause: str) -> None:
        """A replica loaded a snapshot because of `cause` (gap, reconnect, heartbeat, ...)."""
        self._child("resyncs", cause).inc()

    def reset(self, cause: str, count: int = 1) -> None:
        """`count` clients got a reset instead of changes, because of `cause`."""
        self._child("resets", cause).inc(count)

    def reconnected(self) -> None:
        """The pub/sub connection was opened again."""
        self._reconnects.inc()

    def failed(self, error: str) -> None:
        """A backend call failed with `error` (a server error code, or the error's kind)."""
        self._child("backend_errors", error).inc()

    def renewed(self, count: int) -> None:
        """`count` leases were renewed."""
        self._leases.inc(count)
