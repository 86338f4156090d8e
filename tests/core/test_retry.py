"""Retry schedules (`_retry.Backoff`): what each retry waits, counted from 1."""

from __future__ import annotations

import pytest

from livestate._retry import Backoff, delay


def test_retries_are_counted_from_one_and_the_last_delay_repeats() -> None:
    """Retry n waits the n-th delay; every retry after the last delay waits that one."""
    schedule = Backoff((0.05, 0.1, 0.2, 0.5))
    assert [delay(schedule, n) for n in range(1, 8)] == [0.05, 0.1, 0.2, 0.5, 0.5, 0.5, 0.5]


def test_an_exponential_schedule_doubles_up_to_its_cap() -> None:
    """Backoff.exponential(first, cap): retry n waits min(cap, first * 2 ** (n - 1))."""
    for first, cap in ((0.002, 0.05), (0.5, 30.0), (1.0, 5.0), (0.002, 0.1), (3.0, 1.0)):
        schedule = Backoff.exponential(first, cap)
        for n in range(1, 40):
            assert delay(schedule, n) == min(cap, first * 2 ** (n - 1)), (first, cap, n)


def test_a_zero_first_delay_stays_zero() -> None:
    """An exponential schedule from 0 (a zero interval) never waits, and ends."""
    assert Backoff.exponential(0.0, 30.0).delays == (0.0,)


def test_jitter_draws_each_wait_from_zero_to_the_delay() -> None:
    """With jitter, retry n waits a uniform draw from [0, its delay]: spread, never more."""
    schedule = Backoff.exponential(0.002, 0.1, jitter=True)
    for n in range(1, 12):
        waits = [delay(schedule, n) for _ in range(200)]
        bound = min(0.1, 0.002 * 2 ** (n - 1))
        assert all(0 <= wait <= bound for wait in waits)
        assert len(set(waits)) > 1


def test_a_schedule_that_cannot_be_is_refused() -> None:
    """No delays, a negative one, or retry number 0 raise ValueError naming the problem."""
    with pytest.raises(ValueError, match="at least one delay"):
        Backoff(())
    with pytest.raises(ValueError, match="0 or more seconds"):
        Backoff((0.1, -1.0))
    with pytest.raises(ValueError, match="0 or more seconds"):
        Backoff.exponential(-0.1, 1.0)
    with pytest.raises(ValueError, match="counted from 1"):
        delay(Backoff((0.1,)), 0)
