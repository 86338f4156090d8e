"""Retry schedules as data, and the one function that reads them.

A schedule is the wait before each retry in turn: `Backoff((0.05, 0.1, 0.2, 0.5))`
waits 50 ms before the first retry, 100 ms before the second, and 500 ms before
the fourth and every one after it (the last delay repeats). A doubling one with
a ceiling is written out by `Backoff.exponential(first, cap)`: `first` before
the first retry, twice that before the second, and so on up to `cap`. With
`jitter`, each wait is drawn uniformly between 0 and the scheduled delay ("full
jitter"), so that many clients retrying at once spread out.

`delay(schedule, attempt)` is the wait before retry number `attempt`, counted
from 1: a loop that counts its failures passes the count after the failure.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """The seconds to wait before each retry in turn; the last delay repeats.

    With `jitter`, a wait is drawn uniformly from 0 to the scheduled delay.
    Raises ValueError for an empty schedule or a negative delay.
    """

    delays: tuple[float, ...]
    jitter: bool = False

    def __post_init__(self) -> None:
        if not self.delays:
            raise ValueError("A Backoff needs at least one delay.")
        if min(self.delays) < 0:
            raise ValueError(f"A Backoff's delays must be 0 or more seconds, not {self.delays}.")

    @classmethod
    def exponential(cls, first: float, cap: float, *, jitter: bool = False) -> Backoff:
        """Wait `first` seconds before the first retry, then twice as long before each
        next one, never more than `cap`: retry n waits `min(cap, first * 2 ** (n - 1))`.

        Raises ValueError if `first` or `cap` is negative.
        """
        if first < 0 or cap < 0:
            raise ValueError(f"A Backoff's delays must be 0 or more seconds, not {first}, {cap}.")
        delays = [min(first, cap)]
        while 0 < delays[-1] < cap:
            delays.append(min(cap, delays[-1] * 2))
        return cls(tuple(delays), jitter)


def delay(schedule: Backoff, attempt: int) -> float:
    """Seconds to wait before retry number `attempt` (1 for the first retry).

    Raises ValueError if `attempt` is below 1.
    """
    if attempt < 1:
        raise ValueError(f"Retries are counted from 1, not {attempt}.")
    delays = schedule.delays
    seconds = delays[min(attempt, len(delays)) - 1]
    return random.uniform(0, seconds) if schedule.jitter else seconds
