"""A task without an event loop (a Celery task's shape) that adds a card to a board.

    LIVESTATE_URL=redis://127.0.0.1:6379/0 python -m fastapi_board.worker team "Ship it"

run from examples/. It uses livestate.sync's default node (its own thread and
connection), so every web node on the same Redis shows the card at once. It is
trusted server code: it calls the board's `add_card` action with no caller, so
the card's author is the server, named "a worker".
"""

from __future__ import annotations

import sys

from livestate import sync

from .state import Board


def add_card(key: str, text: str) -> str:
    """Add a card to the board `key`; return its id."""
    sync.start(Board, key)
    return str(sync.call(Board, key, "add_card", {"text": text, "name": "a worker"}))


if __name__ == "__main__":
    print(add_card(sys.argv[1], " ".join(sys.argv[2:]) or "A card from a worker"))
