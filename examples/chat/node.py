"""Which node serves a page (shown in every page's footer, so a visitor can see a failover),
and how many room pages this node serves (for the demo's status page).

`livestate demo` names its nodes (LIVESTATE_DEMO_NODE, "node 2") and passes the
URL of its status page (LIVESTATE_DEMO_STATUS); run by hand, a node is its host
name.
"""

from __future__ import annotations

import os
import socket
from collections import Counter

PAGES: Counter[str] = Counter()
"""Room -> how many of its pages this process serves now (RoomView keeps it)."""


def served_by() -> dict[str, str | int]:
    """The node's name, PID and the demo's status page URL ("" outside `livestate demo`)."""
    return {
        "node": os.environ.get("LIVESTATE_DEMO_NODE") or socket.gethostname(),
        "pid": os.getpid(),
        "status_url": os.environ.get("LIVESTATE_DEMO_STATUS", ""),
    }
