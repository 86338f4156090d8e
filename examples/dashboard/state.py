"""The dashboard's shared state, and the background task that feeds it.

DASHBOARD_TICK (seconds between background updates, default 1) and
DASHBOARD_TOKEN (if set, the bearer token POSTs must carry) come from the
environment.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from typing import Any, ClassVar

from livestate import LiveState

TICK = float(os.environ.get("DASHBOARD_TICK", "1"))
TOKEN = os.environ.get("DASHBOARD_TOKEN", "")
MAX_EVENTS = 20
HISTORY = 60  # points per sparkline
MAIN = "main"

logger = logging.getLogger("dashboard")


class Dashboard(LiveState):
    """One dashboard: a tick counter, load and memory with their recent history, a status and
    the latest events."""

    ttl = None
    # Viewers (attached pages) may only read; server code (the background task and
    # the HTTP API, public callers) writes.
    acl: ClassVar[Mapping[str, Any]] = {"group": ["read"], "public": "all"}

    def on_mount(self, key: str) -> dict[str, Any]:
        return {
            "ticks": 0,
            "load": 0.0,
            "memory": 0.0,
            "load_history": [],
            "memory_history": [],
            "status": "starting",
            "events": [],
        }


def memory_used() -> float:
    """The share of memory in use, in percent, from /proc/meminfo (0.0 where there is none)."""
    try:
        with open("/proc/meminfo") as meminfo:
            fields = {line.split(":")[0]: int(line.split()[1]) for line in meminfo}
        return round(100 * (1 - fields["MemAvailable"] / fields["MemTotal"]), 1)
    except (OSError, KeyError, ValueError, ZeroDivisionError):
        return 0.0


async def feed(key: str = MAIN) -> None:
    """Write the ticks, load and memory (and their history) every TICK seconds, until cancelled.

    The histories grow by an atomic append with max_len: each tick sends one
    number to every page, not the whole series.
    """
    await Dashboard.start(key)
    while True:
        try:
            load, memory = round(os.getloadavg()[0], 2), memory_used()
            await Dashboard.increment(key, "ticks")
            await Dashboard.put(key, "load", load)
            await Dashboard.put(key, "memory", memory)
            await Dashboard.append(key, "load_history", load, max_len=HISTORY)
            await Dashboard.append(key, "memory_history", memory, max_len=HISTORY)
        except Exception:
            # A backend hiccup must not end the feed; the next tick tries again.
            logger.exception("The dashboard feed failed to write")
        await asyncio.sleep(TICK)
