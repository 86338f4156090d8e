"""Log lines that name the node they come from, so a deployment's logs can be filtered."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

logger = logging.getLogger("livestate")
"""The one logger livestate writes to."""


class NodeLog(logging.LoggerAdapter[logging.Logger]):
    """livestate's logger, with "node <id>: " before each message and `node` in its extra.

    Each message names the live state it concerns itself, first ("Chat 'lobby': ...").
    """

    def __init__(self, node: str) -> None:
        super().__init__(logger, {"node": node})

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = self.extra or {}
        kwargs.setdefault("extra", {}).update(extra)
        return f"node {extra.get('node')}: {msg}", kwargs
