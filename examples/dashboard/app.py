"""The dashboard app: `uvicorn dashboard.app:app --app-dir examples`.

A background task and an HTTP API write the state through livestate's server
API; every open dashboard page shows it live. POST JSON to
/api/dashboards/{key}: {"status": "..."} sets the status, {"event": "..."}
appends an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from markupsafe import Markup
from pyview import PyView  # type: ignore[import-untyped]
from pyview.template import defaultRootTemplate  # type: ignore[import-untyped]
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.staticfiles import StaticFiles

import livestate
from livestate import InvalidValueError, NotFoundError
from livestate.pyview import OriginCheckMiddleware, WebSocketLimitsMiddleware

from .state import MAX_EVENTS, TOKEN, Dashboard, feed
from .view import DashboardView

STATIC = Path(__file__).resolve().parent / "static"
HEAD = Markup('<link rel="stylesheet" href="/dashboard-static/dashboard.css">')


@contextlib.asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """Start livestate's node, then the feed; stop them in the reverse order."""
    async with livestate.lifespan(app):
        task = asyncio.create_task(feed())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def post_dashboard(request: Request) -> JSONResponse:
    """Write to a dashboard from outside any LiveView, as a public caller."""
    if TOKEN and request.headers.get("authorization") != f"Bearer {TOKEN}":
        return JSONResponse({"error": "A valid bearer token is required."}, status_code=401)
    key = request.path_params["key"][:64]
    try:
        body = await request.json()
    except ValueError:
        return JSONResponse({"error": "The body must be a JSON object."}, status_code=400)
    if not isinstance(body, dict):
        return JSONResponse({"error": "The body must be a JSON object."}, status_code=400)
    try:
        await Dashboard.start(key)
        if "status" in body:
            await Dashboard.put(key, "status", str(body["status"])[:200])
        if "event" in body:
            event = {"text": str(body["event"])[:200], "at": time.time()}
            await Dashboard.append(key, "events", event, max_len=MAX_EVENTS)
    except (InvalidValueError, NotFoundError) as error:
        return JSONResponse({"error": str(error)}, status_code=400)
    return JSONResponse({"ok": True, "state": await Dashboard.get(key)})


def create_app() -> PyView:
    """The dashboard as a PyView app."""
    app = PyView(
        lifespan=lifespan,
        routes=[Route("/api/dashboards/{key}", post_dashboard, methods=["POST"])],
    )
    app.mount("/static", StaticFiles(packages=[("pyview", "static")]), name="static")
    app.mount("/dashboard-static", StaticFiles(directory=STATIC), name="dashboard-static")
    app.rootTemplate = defaultRootTemplate(
        title="livestate dashboard", title_suffix="", head_content=HEAD
    )
    app.add_live_view("/", DashboardView)
    app.add_live_view("/dashboards/{key}", DashboardView)
    app.add_middleware(OriginCheckMiddleware)
    app.add_middleware(WebSocketLimitsMiddleware)
    return app


app = create_app()
