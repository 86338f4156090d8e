"""Where the chat saves its rooms: SQLite by default, PostgreSQL when DATABASE_URL is set.

One table, `livestate_snapshots`: one row per live state (spec name, key) with
the version it was saved at and its state as JSON. A save replaces the row only
with a version at least as high, because livestate may call on_persist again
with a version already saved, or (after another node took over) an older one.

Environment: DATABASE_URL (`postgresql://user:password@host:5432/db`; needs
`pip install asyncpg`), else CHAT_DATABASE (a SQLite file, shared by the nodes
of one machine and kept across restarts; default `:memory:`, one database per
process, so a room's history outlives its TTL while the process runs).
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from collections.abc import Mapping
from typing import Any, Protocol

TABLE = "livestate_snapshots"


class Store(Protocol):
    """What a spec's on_mount and on_persist need: load the last save, save a newer one."""

    async def load(self, spec: str, key: str) -> tuple[int, dict[str, Any]] | None:
        """The version and state last saved for (spec, key), or None."""

    async def save(self, spec: str, key: str, version: int, state: Mapping[str, Any]) -> bool:
        """Store `state` at `version` unless a higher version is stored; say whether it was."""

    async def aclose(self) -> None:
        """Close the connections."""


class SQLiteStore:
    """A SQLite file (or `:memory:`), used from a worker thread so the event loop never waits."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._connection: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()  # one statement at a time on the one connection

    async def load(self, spec: str, key: str) -> tuple[int, dict[str, Any]] | None:
        row = await self._run(
            f"SELECT version, state FROM {TABLE} WHERE spec = ? AND key = ?", (spec, key)
        )
        return None if row is None else (int(row[0]), json.loads(row[1]))

    async def save(self, spec: str, key: str, version: int, state: Mapping[str, Any]) -> bool:
        row = await self._run(
            f"INSERT INTO {TABLE} (spec, key, version, state, saved_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (spec, key) DO UPDATE SET version = excluded.version, "
            "state = excluded.state, saved_at = excluded.saved_at "
            f"WHERE excluded.version >= {TABLE}.version RETURNING version",
            (spec, key, version, json.dumps(state, separators=(",", ":")), time.time()),
        )
        return row is not None

    async def aclose(self) -> None:
        async with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    async def _run(self, sql: str, args: tuple[Any, ...]) -> Any:
        async with self._lock:
            return await asyncio.to_thread(self._execute, sql, args)

    def _execute(self, sql: str, args: tuple[Any, ...]) -> Any:
        if self._connection is None:
            connection = sqlite3.connect(self.path, check_same_thread=False, timeout=10)
            if self.path != ":memory:":
                connection.execute("PRAGMA journal_mode=WAL")  # several nodes, one file
            connection.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} (spec TEXT NOT NULL, key TEXT NOT NULL, "
                "version INTEGER NOT NULL, state TEXT NOT NULL, saved_at REAL NOT NULL, "
                "PRIMARY KEY (spec, key))"
            )
            connection.commit()
            self._connection = connection
        with self._connection:  # a transaction: committed, or rolled back on error
            return self._connection.execute(sql, args).fetchone()


class PostgresStore:
    """A PostgreSQL database through an asyncpg pool (made on first use, on the running loop)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._pool: Any = None
        self._opening = asyncio.Lock()

    async def load(self, spec: str, key: str) -> tuple[int, dict[str, Any]] | None:
        pool = await self._ready()
        row = await pool.fetchrow(
            f"SELECT version, state FROM {TABLE} WHERE spec = $1 AND key = $2", spec, key
        )
        return None if row is None else (int(row["version"]), json.loads(row["state"]))

    async def save(self, spec: str, key: str, version: int, state: Mapping[str, Any]) -> bool:
        pool = await self._ready()
        stored = await pool.fetchval(
            f"INSERT INTO {TABLE} (spec, key, version, state) VALUES ($1, $2, $3, $4::jsonb) "
            "ON CONFLICT (spec, key) DO UPDATE SET version = excluded.version, "
            "state = excluded.state, saved_at = now() "
            f"WHERE excluded.version >= {TABLE}.version RETURNING version",
            spec, key, version, json.dumps(state, separators=(",", ":")),
        )  # fmt: skip
        return stored is not None

    async def aclose(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def _ready(self) -> Any:
        async with self._opening:
            if self._pool is None:
                try:
                    import asyncpg  # type: ignore[import-untyped]
                except ImportError as error:
                    raise ImportError(
                        "DATABASE_URL names PostgreSQL, which needs asyncpg: pip install asyncpg"
                    ) from error
                pool = await asyncpg.create_pool(self.url, min_size=1, max_size=4)
                try:
                    await pool.execute(
                        f"CREATE TABLE IF NOT EXISTS {TABLE} (spec text NOT NULL, "
                        "key text NOT NULL, version bigint NOT NULL, state jsonb NOT NULL, "
                        "saved_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (spec, key))"
                    )
                except asyncpg.UniqueViolationError:
                    pass  # another node created it at the same moment
                except BaseException:
                    await pool.close()
                    raise
                self._pool = pool
            return self._pool


def open_store(url: str | None = None) -> Store:
    """The store `url` names (`postgresql://…`, `sqlite:///path`, or a SQLite path), else the
    one the environment names (DATABASE_URL, CHAT_DATABASE)."""
    url = url or os.environ.get("DATABASE_URL") or os.environ.get("CHAT_DATABASE") or ":memory:"
    if url.startswith(("postgres://", "postgresql://")):
        return PostgresStore(url)
    return SQLiteStore(url.removeprefix("sqlite:///"))


_stores: dict[asyncio.AbstractEventLoop, Store] = {}


def store() -> Store:
    """This event loop's store, opened from the environment on first use."""
    loop = asyncio.get_running_loop()
    found = _stores.get(loop)
    if found is None:
        for gone in [other for other in _stores if other.is_closed()]:
            del _stores[gone]
        found = _stores[loop] = open_store()
    return found
