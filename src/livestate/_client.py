"""Clients: attachments of one caller to one live state, as group members."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from ._changes import Change
from ._spec import DEFAULT
from ._values import JSON

if TYPE_CHECKING:
    from typing import Self

    from ._node import Node, Replica
    from ._spec import LiveState

logger = logging.getLogger("livestate")


class OnChange(Protocol):
    """The shape of an `on_change` callback: called with each Change; may be async."""

    def __call__(self, change: Change, /) -> Awaitable[None] | None: ...


class Client:
    """One attachment to a live state: a group member for the ACL.

    `state` is the current state (a read-only Mapping kept up to date by the node)
    and `version` its version. Changes arrive in version order through the
    `on_change` callback given to `attach`, or through `changes()`. Use it as an
    async context manager, or call `detach()`, to let go.
    """

    __slots__ = (
        "__weakref__",
        "_callback",
        "_closed",
        "_max_pending",
        "_node",
        "_pending",
        "_pump",
        "_replica",
        "_stale",
        "_sync",
        "_waiter",
    )

    def __init__(
        self, node: Node, replica: Replica, on_change: OnChange | None, max_pending: int
    ) -> None:
        self._node = node
        self._replica = replica
        self._closed = False
        self._max_pending = max_pending
        self._pending: deque[Change] | None = None  # made on first use: sync callbacks need none
        self._stale = False  # pending changes overflowed: the next one delivered is a reset
        self._pump: asyncio.Task[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        is_async = inspect.iscoroutinefunction(on_change) or inspect.iscoroutinefunction(
            getattr(on_change, "__call__", None)  # noqa: B004 - an object with async __call__
        )
        self._sync: Callable[[Change], Any] | None = None if is_async else on_change
        self._callback: Callable[[Change], Awaitable[None]] | None = (
            on_change if is_async else None  # type: ignore[assignment]
        )

    def __repr__(self) -> str:
        status = "detached" if self._closed else f"version {self.version}"
        return f"<Client of {self._replica.id} at {status}>"

    @property
    def key(self) -> str:
        """The key of the live state this client is attached to."""
        return self._replica.id.key

    @property
    def spec(self) -> type[LiveState]:
        """The state spec of the live state."""
        return self._replica.spec

    @property
    def state(self) -> Mapping[str, JSON]:
        """The current state: a read-only Mapping whose values are read-only too."""
        return self._replica.view

    @property
    def version(self) -> int:
        """The version of `state`."""
        return self._replica.version

    @property
    def attached(self) -> bool:
        """Whether the client is still attached (not detached, stopped or closed with its node)."""
        return not self._closed

    async def put(self, prop: str, value: Any) -> None:
        """Set `prop` to `value`; see LiveState.put."""
        await self._live().put(self.spec, self.key, prop, value, role="group")

    async def delete(self, prop: str) -> None:
        """Remove `prop`; see LiveState.delete."""
        await self._live().delete(self.spec, self.key, prop, role="group")

    async def reset(self) -> None:
        """Run on_mount again and replace the whole state; see LiveState.reset."""
        await self._live().reset(self.spec, self.key, role="group")

    async def append(self, prop: str, item: Any, *, max_len: int | None = None) -> None:
        """Append `item` to the list `prop` atomically; see LiveState.append."""
        await self._live().append(self.spec, self.key, prop, item, max_len=max_len, role="group")

    async def increment(self, prop: str, by: int | float = 1) -> JSON:
        """Add `by` to the number `prop` atomically, return the result; see LiveState.increment."""
        return await self._live().increment(self.spec, self.key, prop, by, role="group")

    async def update(self, prop: str, fn: Callable[[Any], Any], *, default: Any = DEFAULT) -> JSON:
        """Replace `prop` with `fn(value)` atomically; see LiveState.update."""
        return await self._live().update(
            self.spec, self.key, prop, fn, default=default, role="group"
        )

    async def changes(self) -> AsyncIterator[Change]:
        """Every change from now on, in version order; ends when the client is detached.

        Raises RuntimeError if the client has an `on_change` callback, which
        already receives the changes.
        """
        if self._sync or self._callback:
            raise RuntimeError(
                f"This client of {self._replica.id} delivers changes to its on_change callback; "
                "attach without on_change to iterate over changes()."
            )
        loop = asyncio.get_running_loop()
        while True:
            change = self._next()
            if change is None:
                if self._closed:
                    return
                self._waiter = loop.create_future()
                await self._waiter
                continue
            yield change

    async def detach(self) -> None:
        """Let go of the live state; the last client to leave starts its TTL countdown.

        Detaching twice does nothing.
        """
        if not self._closed:
            await self._node.detach(self)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.detach()

    def _live(self) -> Node:
        if self._closed:
            raise RuntimeError(
                f"This client of {self._replica.id} is detached; attach a new one with "
                f"{self.spec.__qualname__}.attach({self.key[:200]!r})."
            )
        return self._node

    @property
    def _receiver(self) -> Callable[[Change], object]:
        """What the replica calls with each change: a sync on_change itself, else `_deliver`."""
        return self._sync if self._sync is not None else self._deliver

    def _deliver(self, change: Change) -> None:
        """Hand one change over without waiting for the receiver."""
        if self._sync is not None:
            try:
                self._sync(change)
            except Exception:
                logger.exception("on_change of a client of %s raised", self._replica.id)
            return
        pending = self._pending
        if pending is None:
            pending = self._pending = deque()
        if self._stale:
            pass  # the reset that comes next covers this change too
        elif len(pending) < self._max_pending:
            pending.append(change)
        else:
            # A slow reader: forget the backlog and resend the whole state when it reads.
            pending.clear()
            self._stale = True
        self._wake()

    def _end(self, change: Change | None) -> None:
        """Mark the client detached, delivering `change` (a `stopped`) last if given."""
        self._closed = True
        if change is None:
            self._pending = None
            self._stale = False
        elif self._sync is not None:
            self._deliver(change)
        else:
            pending = self._pending = self._pending or deque()
            if self._stale:  # resolve the pending reset now, so `stopped` stays last
                self._stale = False
                pending.clear()
                pending.append(self._replica.reset_change())
            pending.append(change)
        self._wake()

    def _next(self) -> Change | None:
        if self._stale:
            self._stale = False
            self._pending = None
            return self._replica.reset_change()
        return self._pending.popleft() if self._pending else None

    def _wake(self) -> None:
        if self._callback is not None:
            if self._pump is None and (self._pending or self._stale):
                self._pump = asyncio.get_running_loop().create_task(self._run_callback())
        elif self._waiter is not None:
            if not self._waiter.done():
                self._waiter.set_result(None)
            self._waiter = None

    async def _run_callback(self) -> None:
        assert self._callback is not None
        try:
            while (change := self._next()) is not None:
                try:
                    await self._callback(change)
                except Exception:
                    logger.exception("on_change of a client of %s raised", self._replica.id)
        finally:
            self._pump = None
