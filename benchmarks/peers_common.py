"""What every system in benchmarks/peers.py shares: the payload, the recorder, the counter.

The same recorder runs behind every subscriber of every system, so its cost
(about a quarter of a microsecond per delivery) is in every figure alike.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import time
from dataclasses import dataclass, field
from typing import Any

ROOM = "lobby"
FILLER = "x" * 120  # brings the JSON of one update to about 200 bytes


def payload(phase: int, seq: int) -> dict[str, Any]:
    """One ~200-byte update; `m` carries phase, sequence and the send time (time.time_ns()).

    `m` is first and delimited by < >, so text-only systems find it with two
    `find`s and no JSON decoding: a real transport would not decode either.
    """
    return {
        "m": f"<{phase}:{seq}:{time.time_ns()}>",
        "room": ROOM,
        "user": "alice",
        "kind": "message",
        "body": FILLER,
    }


def text_key(text: str) -> str:
    """The `m` field of an update inside any text that holds its JSON."""
    start = text.find("<")
    return text[start + 1 : text.find(">", start)]


def bytes_key(data: bytes) -> bytes:
    """The `m` field of an update inside bytes that hold its JSON."""
    start = data.find(b"<")
    return data[start + 1 : data.find(b">", start)]


def encode(update: dict[str, Any]) -> str:
    """The JSON text of an update, as the text-only systems send it."""
    return json.dumps(update, separators=(",", ":"))


class SharedCounter:
    """An int64 in a file mapped by the receiver (writes) and the writer (reads).

    It lets the writer keep a bounded number of messages in flight at
    saturation without any traffic through the server under test.
    """

    def __init__(self, path: str, create: bool = False) -> None:
        if create:
            with open(path, "wb") as file:
                file.write(b"\0" * 8)
        self._fd = os.open(path, os.O_RDWR)
        self._map = mmap.mmap(self._fd, 8)

    def set(self, value: int) -> None:
        struct.pack_into("q", self._map, 0, value)

    def get(self) -> int:
        value: int = struct.unpack_from("q", self._map, 0)[0]
        return value

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)


@dataclass
class Phase:
    """What the receiver saw of one phase of the writer."""

    completed: int = 0  # messages delivered to all N subscribers
    latencies_ns: list[int] = field(default_factory=list)
    first_cpu: float = 0.0
    last_cpu: float = 0.0
    first_wall_ns: int = 0
    last_wall_ns: int = 0


class Recorder:
    """Counts deliveries per message; at the Nth, records latency, CPU and wall time."""

    def __init__(self, n: int, counter: SharedCounter | None) -> None:
        self.n = n
        self.counts: dict[str | bytes, int] = {}
        self.phases: dict[int, Phase] = {}
        self.total = 0
        self.resets = 0  # livestate only: a gap turned into a whole-state reset
        self.counter = counter

    def deliver(self, key: str | bytes) -> None:
        """One subscriber got the update whose `m` field is `key`."""
        count = self.counts.get(key, 0) + 1
        if count < self.n:
            self.counts[key] = count
            return
        if self.n > 1:
            del self.counts[key]
        self._complete(key)

    def _complete(self, key: str | bytes) -> None:
        now = time.time_ns()
        cpu = time.process_time()
        text = (key.decode() if isinstance(key, bytes) else key).strip("<>")
        phase_text, _, rest = text.partition(":")
        sent_ns = int(rest.partition(":")[2])
        phase = self.phases.get(int(phase_text))
        if phase is None:
            phase = self.phases[int(phase_text)] = Phase(first_cpu=cpu, first_wall_ns=now)
        phase.completed += 1
        phase.latencies_ns.append(now - sent_ns)
        phase.last_cpu = cpu
        phase.last_wall_ns = now
        self.total += 1
        if self.counter is not None:
            self.counter.set(self.total)

    def partial(self, phase: int) -> int:
        """Deliveries of messages of `phase` that did not reach all N subscribers."""
        prefix = f"{phase}:"
        return sum(
            count
            for key, count in self.counts.items()
            if (key.decode() if isinstance(key, bytes) else key).lstrip("<").startswith(prefix)
        )

    def report(self, sent: dict[int, int]) -> dict[str, Any]:
        """Per phase: sent, completed, lost, p50/p99 latency, CPU per delivery, deliveries/s."""
        out: dict[str, Any] = {"resets": self.resets, "phases": {}}
        for number, count in sent.items():
            phase = self.phases.get(number, Phase())
            partial = self.partial(number)
            # CPU and wall time run from the first completed message to the last, so
            # they cover the work of all messages but the first.
            deliveries = max(phase.completed - 1, 0) * self.n + partial
            cpu = phase.last_cpu - phase.first_cpu
            wall = (phase.last_wall_ns - phase.first_wall_ns) / 1e9
            latencies = sorted(phase.latencies_ns)
            out["phases"][str(number)] = {
                "sent": count,
                "completed": phase.completed,
                "lost": count - phase.completed,
                "p50_ms": percentile(latencies, 0.50) / 1e6,
                "p99_ms": percentile(latencies, 0.99) / 1e6,
                "cpu_us_per_delivery": cpu / deliveries * 1e6 if deliveries else None,
                "deliveries_per_s": deliveries / wall if wall > 0 else None,
            }
        return out


def percentile(ordered: list[int], fraction: float) -> float:
    """The value at `fraction` of a sorted list (nearest rank), or NaN if it is empty."""
    if not ordered:
        return float("nan")
    return float(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))])
