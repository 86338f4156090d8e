"""The React counter's server: the livestate endpoint and the page Vite built.

    cd examples/react_counter && npm ci && npm run build
    uvicorn react_counter.app:app --app-dir examples          # memory://, one process

or, across two nodes, LIVESTATE_URL=redis://127.0.0.1:6379/0 on ports 8000 and 8001.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

import livestate
from livestate import LiveState
from livestate.asgi import LiveStateEndpoint

DIST = Path(__file__).with_name("dist")


class Counter(LiveState):
    """One shared number per key; every visitor may change it."""

    ttl = 300.0
    acl = {"group": "all", "public": ["read"]}

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"count": 0}


if not (DIST / "index.html").exists():
    raise SystemExit(
        f"The page is not built: run `npm ci && npm run build` in {DIST.parent} first."
    )

app = Starlette(
    lifespan=livestate.lifespan,
    routes=[
        Mount("/livestate", app=LiveStateEndpoint([Counter])),
        Mount("/", app=StaticFiles(directory=DIST, html=True)),
    ],
)
