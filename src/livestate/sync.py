"""The server API for code without an event loop: Django and Flask views, Celery tasks, scripts.

    from livestate import sync

    sync.put(Board, "main", "title", "Plans")        # blocks until the write is done
    sync.append(Board, "main", "cards", card, max_len=200)
    print(sync.get(Board, "main"))

The functions mirror the async server API with the spec first, raise the same
errors and are safe to call from any number of threads. They use a default
`SyncNode`: a livestate node with its own event loop on a background thread,
made on first use from LIVESTATE_URL (so on `redis://` a Celery worker shares
live states with every web process), closed at interpreter exit or by `close()`.

On `memory://` a node's live states live in its own process and event loop: a
thread of a web app that must reach the app's live states uses
`SyncNode(loop=app_loop)`, which runs each call on the app's loop and node
(`set_default(...)` makes it what the functions use).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from ._declare import DEFAULT
from ._exceptions import BackendUnavailableError, InvalidValueError
from ._node import Node, current_node, use
from ._rules import Caller
from ._spec import LiveState
from ._values import JSON, FrozenList

if TYPE_CHECKING:
    from typing import Self

__all__ = [
    "SyncNode",
    "append",
    "call",
    "close",
    "default",
    "delete",
    "get",
    "increment",
    "presence",
    "put",
    "reset",
    "set_default",
    "start",
    "stop",
    "update",
]

_T = TypeVar("_T")


class SyncNode:
    """A blocking, thread-safe face of a livestate node.

    `SyncNode(url)` (default LIVESTATE_URL, else `memory://`) starts a background
    thread with its own event loop and `livestate.Node` on first use.
    `SyncNode(loop=loop)` runs calls on a running loop of yours instead, with
    `node` or that loop's current node; call it from other threads only.
    Every call waits at most `timeout` seconds, then raises
    BackendUnavailableError (a write may still happen). The methods are the
    public caller's server API (role public) with the spec first, and raise
    what it raises. `close()` (or `with`) detaches and stops what it started;
    a SyncNode that owns a thread is also closed at interpreter exit.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        node: Node | None = None,
        timeout: float = 10.0,
    ) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise InvalidValueError(f"timeout must be a number of seconds > 0, not {timeout!r}.")
        if url is not None and (loop is not None or node is not None):
            raise InvalidValueError(
                "Pass either url (a SyncNode with its own node and thread) or loop/node "
                "(calls run on your loop), not both."
            )
        self.url = url
        self.timeout = float(timeout)
        self._node = node
        self._loop = loop
        self._owns_loop = loop is None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        where = "its own thread" if self._owns_loop else "a given loop"
        return f"<livestate.sync.SyncNode on {where}{' (closed)' if self._closed else ''}>"

    @property
    def closed(self) -> bool:
        """Whether `close()` has been called."""
        return self._closed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # The server API, spec first, blocking.

    def get(self, spec: type[LiveState], key: str, prop: Any = DEFAULT) -> Any:
        """The whole state (read-only Mapping) or one property's value; see LiveState.get."""
        return self._call(lambda node: node.get(spec, key, prop))

    def presence(self, spec: type[LiveState], key: str) -> Mapping[str, FrozenList]:
        """Who is present: identity -> its metas; see LiveState.presence."""
        return self._call(lambda node: node.presence(spec, key))

    def put(
        self,
        spec: type[LiveState],
        key: str,
        prop: str,
        value: Any,
        *,
        caller: Caller | None = None,
        write_id: str | None = None,
    ) -> None:
        """Set `prop` to `value`; see LiveState.put."""
        self._call(lambda node: node.put(spec, key, prop, value, caller=caller, write_id=write_id))

    def delete(
        self,
        spec: type[LiveState],
        key: str,
        prop: str,
        *,
        caller: Caller | None = None,
        write_id: str | None = None,
    ) -> None:
        """Remove `prop`; see LiveState.delete."""
        self._call(lambda node: node.delete(spec, key, prop, caller=caller, write_id=write_id))

    def reset(
        self,
        spec: type[LiveState],
        key: str,
        *,
        caller: Caller | None = None,
        write_id: str | None = None,
    ) -> None:
        """Rerun on_mount and replace the whole state; see LiveState.reset."""
        self._call(lambda node: node.reset(spec, key, caller=caller, write_id=write_id))

    def append(
        self,
        spec: type[LiveState],
        key: str,
        prop: str,
        item: Any,
        *,
        max_len: int | None = None,
        caller: Caller | None = None,
        write_id: str | None = None,
    ) -> None:
        """Append `item` to the list `prop` atomically; see LiveState.append."""
        self._call(
            lambda node: node.append(
                spec, key, prop, item, max_len=max_len, caller=caller, write_id=write_id
            )
        )

    def increment(
        self,
        spec: type[LiveState],
        key: str,
        prop: str,
        by: int | float = 1,
        *,
        caller: Caller | None = None,
        write_id: str | None = None,
    ) -> JSON:
        """Add `by` to the number `prop` atomically, return the result; see LiveState.increment."""
        return self._call(
            lambda node: node.increment(spec, key, prop, by, caller=caller, write_id=write_id)
        )

    def update(
        self,
        spec: type[LiveState],
        key: str,
        prop: str,
        fn: Callable[[Any], Any],
        *,
        default: Any = DEFAULT,
        caller: Caller | None = None,
        write_id: str | None = None,
    ) -> JSON:
        """Replace `prop` with `fn(value)` atomically; see LiveState.update.

        `fn` runs on the node's event loop thread, maybe more than once.
        """
        return self._call(
            lambda node: node.update(
                spec, key, prop, fn, default=default, caller=caller, write_id=write_id
            )
        )

    def call(
        self,
        spec: type[LiveState],
        key: str,
        action: str,
        args: Mapping[str, Any] | None = None,
        *,
        caller: Caller | None = None,
        write_id: str | None = None,
    ) -> JSON:
        """Run one of the spec's actions and return its result; see LiveState.call.

        The action runs on the node's event loop thread, maybe more than once.
        """
        return self._call(
            lambda node: node.call(spec, key, action, args, caller=caller, write_id=write_id)
        )

    def start(self, spec: type[LiveState], key: str) -> None:
        """Start the live state for `key` if absent; see LiveState.start."""
        self._call(lambda node: node.start(spec, key))

    def stop(self, spec: type[LiveState], key: str, *, caller: Caller | None = None) -> None:
        """End the live state now; see LiveState.stop."""
        self._call(lambda node: node.stop(spec, key, caller=caller))

    def close(self) -> None:
        """Close the node and stop the thread this SyncNode started; closing twice does nothing.

        A SyncNode on a loop of yours leaves that loop and its node alone.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread, loop = self._thread, self._loop
        if not self._owns_loop or thread is None or loop is None:
            return
        atexit.unregister(self.close)
        node = self._node

        async def shutdown() -> None:
            if node is not None:
                await node.aclose()
            # Calls still in flight end here, in this loop, rather than when collected.
            others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        future = asyncio.run_coroutine_threadsafe(shutdown(), loop)
        try:
            future.result(self.timeout)
        except Exception:  # closing is best effort: the loop stops either way
            pass
        loop.call_soon_threadsafe(loop.stop)
        if thread is not threading.current_thread():
            thread.join(self.timeout)

    # Internals.

    def _call(self, operation: Callable[[Node], Awaitable[_T]]) -> _T:
        loop = self._ensure_loop()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None:
            raise RuntimeError(
                "livestate.sync blocks, so it cannot be called from a running event loop "
                f"({'its own' if running is loop else 'this thread'}'s); in async code, "
                "await the LiveState class methods (await Board.put(...)) instead."
            )

        async def run() -> _T:
            node = self._node or current_node()
            with use(node):
                return await operation(node)

        future = asyncio.run_coroutine_threadsafe(run(), loop)
        try:
            return future.result(self.timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise BackendUnavailableError(
                f"livestate did not answer within {self.timeout:g} s; the call may still take "
                "effect. Check the backend, or pass a larger timeout to SyncNode."
            ) from None

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise RuntimeError(
                    "This livestate.sync.SyncNode is closed; make a new one, or call "
                    "livestate.sync functions, which make a new default."
                )
            if self._loop is not None:
                return self._loop
            loop = asyncio.new_event_loop()
            self._node = Node(self.url)
            started = threading.Event()

            def serve() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(started.set)
                try:
                    loop.run_forever()
                finally:
                    loop.close()

            self._thread = threading.Thread(target=serve, name="livestate-sync", daemon=True)
            self._thread.start()
            started.wait()
            self._loop = loop
            atexit.register(self.close)
            return loop


_default: SyncNode | None = None
_default_lock = threading.Lock()


def default() -> SyncNode:
    """The SyncNode the module's functions use: made on first use from LIVESTATE_URL."""
    global _default
    with _default_lock:
        if _default is None or _default.closed:
            _default = SyncNode()
        return _default


def set_default(node: SyncNode | None) -> None:
    """Make `node` what the module's functions use (None: a new one from LIVESTATE_URL)."""
    global _default
    with _default_lock:
        _default = node


def close() -> None:
    """Close the default SyncNode, if any; the next call makes a new one."""
    with _default_lock:
        node = _default
    if node is not None:
        node.close()


def get(spec: type[LiveState], key: str, prop: Any = DEFAULT) -> Any:
    """The whole state or one property's value; see SyncNode.get."""
    return default().get(spec, key, prop)


def presence(spec: type[LiveState], key: str) -> Mapping[str, FrozenList]:
    """Who is present: identity -> its metas; see SyncNode.presence."""
    return default().presence(spec, key)


def put(
    spec: type[LiveState],
    key: str,
    prop: str,
    value: Any,
    *,
    caller: Caller | None = None,
    write_id: str | None = None,
) -> None:
    """Set `prop` to `value`; see SyncNode.put."""
    default().put(spec, key, prop, value, caller=caller, write_id=write_id)


def delete(
    spec: type[LiveState],
    key: str,
    prop: str,
    *,
    caller: Caller | None = None,
    write_id: str | None = None,
) -> None:
    """Remove `prop`; see SyncNode.delete."""
    default().delete(spec, key, prop, caller=caller, write_id=write_id)


def reset(
    spec: type[LiveState], key: str, *, caller: Caller | None = None, write_id: str | None = None
) -> None:
    """Rerun on_mount and replace the whole state; see SyncNode.reset."""
    default().reset(spec, key, caller=caller, write_id=write_id)


def append(
    spec: type[LiveState],
    key: str,
    prop: str,
    item: Any,
    *,
    max_len: int | None = None,
    caller: Caller | None = None,
    write_id: str | None = None,
) -> None:
    """Append `item` to the list `prop` atomically; see SyncNode.append."""
    default().append(spec, key, prop, item, max_len=max_len, caller=caller, write_id=write_id)


def increment(
    spec: type[LiveState],
    key: str,
    prop: str,
    by: int | float = 1,
    *,
    caller: Caller | None = None,
    write_id: str | None = None,
) -> JSON:
    """Add `by` to the number `prop` atomically and return the result; see SyncNode.increment."""
    return default().increment(spec, key, prop, by, caller=caller, write_id=write_id)


def update(
    spec: type[LiveState],
    key: str,
    prop: str,
    fn: Callable[[Any], Any],
    *,
    default: Any = DEFAULT,
    caller: Caller | None = None,
    write_id: str | None = None,
) -> JSON:
    """Replace `prop` with `fn(value)` atomically; see SyncNode.update."""
    return _default_node().update(
        spec, key, prop, fn, default=default, caller=caller, write_id=write_id
    )


def call(
    spec: type[LiveState],
    key: str,
    action: str,
    args: Mapping[str, Any] | None = None,
    *,
    caller: Caller | None = None,
    write_id: str | None = None,
) -> JSON:
    """Run one of the spec's actions and return its result; see SyncNode.call."""
    return default().call(spec, key, action, args, caller=caller, write_id=write_id)


def start(spec: type[LiveState], key: str) -> None:
    """Start the live state for `key` if absent; see SyncNode.start."""
    _default_node().start(spec, key)


def stop(spec: type[LiveState], key: str, *, caller: Caller | None = None) -> None:
    """End the live state now; see SyncNode.stop."""
    _default_node().stop(spec, key, caller=caller)


_default_node = default  # `update`'s own `default=` argument hides the function's name
