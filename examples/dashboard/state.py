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
MAIN = "main"

logger = logging.getLogger("dashboard")


class Dashboard(LiveState):
    """One dashboard: a tick counter, the load average, a status and the latest events."""

    ttl = None
    # Viewers (attached pages) may only read; server code (the background task and
    # the HTTP API, public callers) writes.
    acl: ClassVar[Mapping[str, Any]] = {"group": ["read"], "public": "all"}

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"ticks": 0, "load": 0.0, "status": "starting", "events": []}


async def feed(key: str = MAIN) -> None:
    """Write the tick count and the load average every TICK seconds, until cancelled."""
    await Dashboard.start(key)
    while True:
        try:
            await Dashboard.increment(key, "ticks")
            await Dashboard.put(key, "load", round(os.getloadavg()[0], 2))
        except Exception:
            # A backend hiccup must not end the feed; the next tick tries again.
            logger.exception("The dashboard feed failed to write")
        await asyncio.sleep(TICK)
