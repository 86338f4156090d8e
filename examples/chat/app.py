"""The chat app: `uvicorn chat.app:app --app-dir examples`, or `livestate demo`.

Environment: LIVESTATE_URL (memory:// or redis://…; every node of a cluster
uses the same), PYVIEW_SECRET (the same on every node, so that a page served by
one node can join on another), LIVESTATE_ALLOWED_ORIGINS (comma-separated
origins allowed besides the app's own host), CHAT_ROOM_TTL and
CHAT_TYPING_SECONDS (see state.py),
LIVESTATE_JOIN_TIMEOUT and LIVESTATE_MAX_SOCKETS_PER_CLIENT (WebSocketLimitsMiddleware).
"""

from __future__ import annotations

import os
from pathlib import Path

from markupsafe import Markup
from pyview import PyView  # type: ignore[import-untyped]
from pyview.template import defaultRootTemplate  # type: ignore[import-untyped]
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.staticfiles import StaticFiles

import livestate
from livestate import NotFoundError
from livestate.pyview import OriginCheckMiddleware, WebSocketLimitsMiddleware

from .lobby import LobbyView
from .node import PAGES, served_by
from .room import RoomView
from .state import ChatRoom, room_name

STATIC = Path(__file__).resolve().parent / "static"

HEAD = Markup("""
<meta name="color-scheme" content="light dark">
<link rel="stylesheet" href="/chat-static/chat.css">
<script src="/chat-static/chat.js"></script>
""")


async def messages_json(request: Request) -> JSONResponse:
    """The messages of a room as JSON, read through the server API as a public caller."""
    room = room_name(request.path_params["room"])
    try:
        messages = await ChatRoom.get(room, "messages")
    except NotFoundError:
        return JSONResponse({"error": f"No one is in room {room!r}."}, status_code=404)
    return JSONResponse({"room": room, "messages": messages})


async def presence_json(request: Request) -> JSONResponse:
    """Who is in a room (nick -> one meta per open page), through the server API's presence."""
    room = room_name(request.path_params["room"])
    try:
        presence = await ChatRoom.presence(room)
    except NotFoundError:
        return JSONResponse({"error": f"No one is in room {room!r}."}, status_code=404)
    return JSONResponse({"room": room, "presence": {nick: list(m) for nick, m in presence.items()}})


async def node_json(request: Request) -> JSONResponse:
    """Which node this is and how many room pages it serves, for the demo's status page."""
    pages = {room: count for room, count in PAGES.items() if count > 0}
    return JSONResponse({**served_by(), "pages": sum(pages.values()), "rooms": pages})


def create_app() -> PyView:
    """The chat as a PyView app, with livestate's node started by its lifespan."""
    app = PyView(
        lifespan=livestate.lifespan,
        routes=[
            Route("/api/rooms/{room}/messages", messages_json),
            Route("/api/rooms/{room}/presence", presence_json),
            Route("/api/node", node_json),
        ],
    )
    app.mount("/static", StaticFiles(packages=[("pyview", "static")]), name="static")
    app.mount("/chat-static", StaticFiles(directory=STATIC), name="chat-static")
    app.rootTemplate = defaultRootTemplate(
        title="livestate chat", title_suffix="", head_content=HEAD
    )
    app.add_live_view("/", LobbyView)
    app.add_live_view("/rooms/{room}", RoomView)
    allowed = [o for o in os.environ.get("LIVESTATE_ALLOWED_ORIGINS", "").split(",") if o]
    app.add_middleware(OriginCheckMiddleware, allowed_origins=allowed)
    app.add_middleware(
        WebSocketLimitsMiddleware,
        join_timeout=float(os.environ.get("LIVESTATE_JOIN_TIMEOUT", "5")),
        max_per_client=int(os.environ.get("LIVESTATE_MAX_SOCKETS_PER_CLIENT", "100")),
    )
    return app


app = create_app()
