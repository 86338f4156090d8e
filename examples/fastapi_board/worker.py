"""A task without an event loop (a Celery task's shape) that adds a card to a board.

    LIVESTATE_URL=redis://127.0.0.1:6379/0 python -m fastapi_board.worker team "Ship it"

run from examples/. It uses livestate.sync's default node (its own thread and
connection), so every web node on the same Redis shows the card at once.
"""

from __future__ import annotations

import secrets
import sys

from livestate import sync

from .state import Board, new_card


def add_card(key: str, text: str) -> str:
    """Add a card to the board `key`; return its id."""
    card_id = secrets.token_hex(4)
    sync.start(Board, key)
    sync.put(Board, key, f"card:{card_id}", new_card(text, "todo", "a worker"))
    return card_id


if __name__ == "__main__":
    print(add_card(sys.argv[1], " ".join(sys.argv[2:]) or "A card from a worker"))
