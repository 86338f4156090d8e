"""Where the authoritative state lives: `memory://` in one process, `redis://` across many."""

from __future__ import annotations

from .base import Backend, Message, Mounted, Snapshot
from .memory import MemoryBackend

__all__ = ["Backend", "MemoryBackend", "Message", "Mounted", "Snapshot", "from_url"]


def from_url(url: str) -> Backend:
    """The backend for `url`: `memory://`, `redis://host:port/db` (also `rediss://`,
    `valkey://`, `unix://`; any node of a cluster will do), `redis+cluster://h1:p1,h2:p2`
    or `redis+sentinel://h1:p1,h2:p2/SERVICE`.

    Raises InvalidValueError for any other scheme, and ImportError, saying what to
    install, when the Redis client is missing.
    """
    from .._exceptions import InvalidValueError

    scheme = url.partition("://")[0].lower()
    if scheme == "memory":
        return MemoryBackend()
    if scheme in ("redis", "rediss", "valkey", "valkeys", "unix") or scheme.endswith(
        ("+sentinel", "+cluster")
    ):
        from .redis import RedisBackend

        return RedisBackend(url)
    raise InvalidValueError(
        f"LIVESTATE_URL {url!r} names no known backend; use memory:// or redis://host:6379/0."
    )
