"""Quotas: how many live states one node may run, in all and per spec.

A node runs a live state while it holds a replica of it (clients attached
here), and for the TTL after it started one without attaching (`start`): a
loop of `start` or `attach` on fresh keys would otherwise make live states
without bound (each costs memory here and keys in Redis). A live state already
counted is always admitted again; a new one over a limit is refused with
QuotaExceededError before anything is started.
"""

from __future__ import annotations

import time
from collections import Counter

from ._changes import StateId
from ._exceptions import InvalidValueError, QuotaExceededError

MAX_LIVE_STATES = 100_000
"""The default limit of live states per node: far above what a normal app runs on one node
(an idle live state costs about 1 KB here), low enough to stop a runaway loop."""

MAX_GRACE = 600.0
"""At most how long a live state a node let go of (or started) still counts there: its TTL,
up to this (a live state kept for ever does not count for ever on the node that made it)."""


def check_limit(limit: object, where: str) -> int | None:
    """Return `limit` if it is None or an int ≥ 1, else raise InvalidValueError."""
    if limit is not None and (type(limit) is not int or limit < 1):
        raise InvalidValueError(f"{where} must be an int ≥ 1 or None, not {limit!r}.")
    return limit


class Quotas:
    """The live states one node runs: the held ones and the ones it started, per spec."""

    __slots__ = ("lapse", "limit", "per_spec")

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.lapse: dict[StateId, float] = {}  # each one counted -> when it stops counting
        self.per_spec: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self.lapse)

    def admit(self, id: StateId, spec_limit: int | None) -> None:
        """Make room for `id`; raise QuotaExceededError, naming the limit, if there is none."""
        if id in self.lapse:
            return
        over = self.limit is not None and len(self.lapse) >= self.limit
        over_spec = spec_limit is not None and self.per_spec[id.spec] >= spec_limit
        if over or over_spec:
            self._prune()  # only when full: the lapse times are not in order
            over = self.limit is not None and len(self.lapse) >= self.limit
            over_spec = spec_limit is not None and self.per_spec[id.spec] >= spec_limit
        if over:
            raise QuotaExceededError(
                f"Cannot start or attach to {id}: this node already runs {self.limit:,} live "
                "states, its limit (Node(max_live_states=...)); detach or stop some first."
            )
        if over_spec:
            raise QuotaExceededError(
                f"Cannot start or attach to {id}: this node already runs {spec_limit:,} live "
                f"states of {id.spec}, its limit ({id.spec}.max_live_states); detach or stop "
                "some first."
            )

    def count(self, id: StateId, until: float = float("inf")) -> None:
        """Count `id` until `until` (monotonic seconds), or for as long as it is held."""
        if id not in self.lapse:
            self.per_spec[id.spec] += 1
            self.lapse[id] = until
        else:
            self.lapse[id] = max(self.lapse[id], until)

    def release(self, id: StateId, ttl: float | None) -> None:
        """`id` is no longer held here: it stops counting when its TTL would end it."""
        if id in self.lapse:
            self.lapse[id] = lapse(ttl)

    def _prune(self) -> None:
        """Forget the live states that stopped counting."""
        now = time.monotonic()
        for id in [id for id, until in self.lapse.items() if until <= now]:
            del self.lapse[id]
            self.per_spec[id.spec] -= 1


def lapse(ttl: float | None) -> float:
    """When a live state with this TTL, let go of or started now, stops counting."""
    return time.monotonic() + min(MAX_GRACE if ttl is None else ttl, MAX_GRACE)
