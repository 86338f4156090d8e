"""The board's state spec: one property per card, one counter per card's votes."""

from __future__ import annotations

from typing import Any

from livestate import LiveState

COLUMNS = ("todo", "doing", "done")


def new_card(text: str, column: str = "todo", by: str = "someone") -> dict[str, Any]:
    """A card's value: its text, its column and who added it."""
    return {"text": text, "column": column, "by": by}


class Board(LiveState):
    """A board per key. Visitors (group) edit it; other code reads, adds or moves cards."""

    ttl = 600.0
    acl = {"group": "all", "public": ["read", "write"]}

    def on_mount(self, key: str) -> dict[str, Any]:
        return {
            "title": f"Board “{key}”",
            "card:welcome": new_card("Drag ideas here: add a card below.", "todo", "livestate"),
        }
