"""A shared board that several people edit at once: FastAPI, plain JS, livestate.asgi.

    uvicorn fastapi_board.app:app --app-dir examples               # memory://, one process
    LIVESTATE_URL=redis://127.0.0.1:6379/0 uvicorn fastapi_board.app:app --app-dir examples \\
        --port 8001                                                # another node, same boards

Open http://127.0.0.1:8000/boards/team. Each card is its own property (`card:<id>`)
and its voters another (`votes:<id>`), so people editing different cards never
overwrite each other. Pages only read; they change the board through the spec's
actions (state.py), which run here as the visitor the cookie names.
`POST /api/boards/{key}/cards` adds a card from plain synchronous code through
`livestate.sync`, as a webhook or a Celery task would (`python -m
fastapi_board.worker` is such a task): trusted server code, calling the same action.

Who a browser is: the page serves each browser a random visitor cookie (HttpOnly,
a secret), and the endpoint's `identify` makes a digest of it the socket's
identity: cards, votes and presence show the digest, which cannot be turned back
into a cookie, and the page never sends an identity of its own.
"""

from __future__ import annotations

import asyncio
import hashlib
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

from .state import Board

PAGE = Path(__file__).with_name("board.html")
KEY = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
VISITOR = "board-visitor"
VISITOR_ID = re.compile(r"[0-9a-f]{32}")


def authorize(connection: Connection, spec: type[livestate.LiveState], key: str) -> str | None:
    """Any visitor may open any board whose name is a short slug; other keys are refused.

    As a group member it may read and call the board's actions: the ACL grants no more.
    """
    return "group" if KEY.fullmatch(key) else None


def identify(connection: Connection) -> str | None:
    """Who a socket is, for actions and presence: the visitor cookie's digest (none: nobody).

    The digest, not the cookie: identities are shown to every page (a card's `by`,
    the presence), and a cookie shown would let anyone put it in their browser and
    act as its owner. A real app would use its signed session's user id here.
    """
    visitor = connection.cookies.get(VISITOR, "")
    if not VISITOR_ID.fullmatch(visitor):
        return None
    return hashlib.sha256(visitor.encode()).hexdigest()[:16]


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
        response.set_cookie(VISITOR, secrets.token_hex(16), httponly=True, samesite="lax")
    return response


@app.post("/api/boards/{key}/cards", status_code=201)
def add_card(key: str, card: NewCard) -> dict[str, str]:
    """Add a card from synchronous code (FastAPI runs this in a worker thread).

    Trusted server code: it calls the board's action with no caller, so the card's
    author is the server (a real API would authenticate its callers first).
    """
    if not KEY.fullmatch(key):
        raise HTTPException(404, "No such board.")
    args = {"text": card.text, "column": card.column, "name": "the API"}
    try:
        sync.start(Board, key)
        card_id = sync.call(Board, key, "add_card", args)
    except livestate.LiveStateError as error:
        raise HTTPException(409, str(error)) from error
    return {"id": str(card_id)}
