"""A shared board that several people edit at once: FastAPI, plain JS, livestate.asgi.

    uvicorn fastapi_board.app:app --app-dir examples               # memory://, one process
    LIVESTATE_URL=redis://127.0.0.1:6379/0 uvicorn fastapi_board.app:app --app-dir examples \\
        --port 8001                                                # another node, same boards

Open http://127.0.0.1:8000/boards/team. Each card is its own property (`card:<id>`)
and its votes another (`votes:<id>`), so people editing different cards never
overwrite each other, and votes are atomic increments. `POST /api/boards/{key}/cards`
adds a card from plain synchronous code through `livestate.sync`, as a webhook or a
Celery task would (`python -m fastapi_board.worker` is such a task).

Who is looking at the board is presence: the page serves each browser a visitor
cookie, the endpoint's `identify` makes it the socket's identity (the page never
sends one), and the page tracks its display name as its meta.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse
from pydantic import BaseModel, Field

import livestate
from livestate import sync
from livestate.asgi import Connection, LiveStateEndpoint

from .state import Board, new_card

PAGE = Path(__file__).with_name("board.html")
KEY = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
VISITOR = "board-visitor"
VISITOR_ID = re.compile(r"[0-9a-f]{16}")


def authorize(connection: Connection, spec: type[livestate.LiveState], key: str) -> str | None:
    """Any visitor may edit any board whose name is a short slug; other keys are refused."""
    return "group" if KEY.fullmatch(key) else None


def identify(connection: Connection) -> str | None:
    """Who a socket is in presence: the visitor cookie the board page set (no cookie: nobody).

    A real app would use its signed session's user id here.
    """
    visitor = connection.cookies.get(VISITOR, "")
    return visitor if VISITOR_ID.fullmatch(visitor) else None


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start this node; let sync code in this process (the HTTP handler below) use it."""
    async with livestate.lifespan(app):
        # On memory:// a node's boards live in this loop: sync calls from threads run here.
        blocking = sync.SyncNode(loop=asyncio.get_running_loop())
        sync.set_default(blocking)
        try:
            yield
        finally:
            sync.set_default(None)


app = FastAPI(title="livestate board", lifespan=lifespan)
app.mount("/livestate", LiveStateEndpoint([Board], authorize=authorize, identify=identify))


class NewCard(BaseModel):
    """A card posted by another system."""

    text: str = Field(min_length=1, max_length=280)
    column: str = Field(default="todo", pattern="^(todo|doing|done)$")


@app.get("/")
async def home() -> RedirectResponse:
    """The team's board."""
    return RedirectResponse("/boards/team")


@app.get("/boards/{key}")
async def board(key: str, request: Request) -> FileResponse:
    """The board page (plain HTML and JS; the client comes from /livestate/livestate.js).

    A browser without a visitor cookie gets one: its identity in the board's presence.
    """
    if not KEY.fullmatch(key):
        raise HTTPException(404, "A board's name is lower-case letters, digits and dashes.")
    response = FileResponse(PAGE, media_type="text/html")
    if not VISITOR_ID.fullmatch(request.cookies.get(VISITOR, "")):
        response.set_cookie(VISITOR, secrets.token_hex(8), httponly=True, samesite="lax")
    return response


@app.post("/api/boards/{key}/cards", status_code=201)
def add_card(key: str, card: NewCard) -> dict[str, str]:
    """Add a card from synchronous code (FastAPI runs this in a worker thread)."""
    if not KEY.fullmatch(key):
        raise HTTPException(404, "No such board.")
    card_id = secrets.token_hex(4)
    try:
        sync.start(Board, key)
        sync.put(Board, key, f"card:{card_id}", new_card(card.text, card.column, "the API"))
    except livestate.LiveStateError as error:
        raise HTTPException(409, str(error)) from error
    return {"id": card_id}
