"""Clients: attachments of one caller to one live state, as group members.

A `Client` is the public handle. Its `Inbox` is what the replica delivers to:
the client's sync callback directly, or a `Backlog` (for an async callback or
`changes()`) bounded in length (`max_pending`) and in age (`max_lag`) that is
replaced by one `reset` when the reader falls behind. The inbox also holds the
client's presence (`Tracker`, _presence.py).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from ._changes import Change
from ._declare import DEFAULT
from ._exceptions import LiveStateError
from ._presence import Tracker, check_entry
from ._values import JSON, FrozenList

if TYPE_CHECKING:
    from typing import Self

    from ._backends.base import Applied
    from ._declare import Spec
    from ._node import Node
    from ._replica import Replica
    from ._rules import Caller


class OnChange(Protocol):
    """The shape of an `on_change` callback: called with each Change; may be async."""

    def __call__(self, change: Change, /) -> Awaitable[None] | None: ...


class Writer(Protocol):
    """How a client's put, delete, append and increment reach its node (one per node, shared
    by its inboxes): the inbox names the live state, its lifetime and the caller."""

    def __call__(
        self,
        inbox: Inbox,
        kind: str,
        prop: str,
        value: Any,
        max_len: int | None,
        write_id: str | None,
        /,
    ) -> Awaitable[Applied]: ...


LIMITS = (1000, 1.0)
"""The default (max_pending, max_lag) of `attach`, shared by every client that keeps it."""


class Inbox:
    """Where one client's changes go: its sync callback directly, else a Backlog.

    `receive` is what the replica calls with each change. A client with a sync
    callback keeps no backlog (the common case, at thousands of clients per
    live state: its inbox stays small); one is made when it needs one.
    """

    __slots__ = (
        "backlog", "caller", "client", "closed", "limits",
        "node", "on_change", "replica", "tracker", "write",
    )  # fmt: skip

    def __init__(
        self,
        node: Node,
        replica: Replica,
        on_change: OnChange | None,
        max_pending: int,
        max_lag: float,
        caller: Caller | None,
        write: Writer,
    ) -> None:
        self.node = node
        self.replica = replica
        self.write = write  # the node's: the client's writes go through it
        self.caller = caller  # who the client's writes are for (None: trusted code)
        self.on_change = on_change
        self.closed = False
        limits = (max_pending, max_lag)
        self.limits = LIMITS if limits == LIMITS else limits
        self.tracker: Tracker | None = None  # its presence, once it tracks one
        is_async = inspect.iscoroutinefunction(on_change) or inspect.iscoroutinefunction(
            getattr(on_change, "__call__", None)  # noqa: B004 - an object with async __call__
        )
        self.backlog: Backlog | None = None
        if is_async:
            self.backlog = Backlog(self, on_change)  # type: ignore[arg-type]
        elif on_change is None:
            self.backlog = Backlog(self, None)
        self.client = Client(self)

    @property
    def receive(self) -> Callable[[Change], object]:
        """What the replica calls with each change: the sync callback, or the backlog's."""
        if self.backlog is None:
            return self.on_change  # type: ignore[return-value]
        return self.backlog.deliver

    def end(self, change: Change | None) -> None:
        """Mark the client detached, delivering `change` (a `stopped`) last if given."""
        self.closed = True
        backlog = self.backlog
        if backlog is not None:
            backlog.end(change)
        elif change is not None:
            try:
                self.on_change(change)  # type: ignore[misc]
            except Exception:
                self.replica.log.exception("%s: an on_change of a client raised", self.replica.id)

    def returned(self, result: object) -> None:
        """A sync on_change returned `result`: if awaitable, treat on_change as async from now."""
        if not inspect.isawaitable(result):
            return
        on_change = self.on_change

        async def awaiting(change: Change) -> None:
            result = on_change(change)  # type: ignore[misc]
            if inspect.isawaitable(result):
                await result

        self.backlog = backlog = Backlog(self, awaiting)
        backlog.first = result
        backlog.wake()

    async def leave(self) -> None:
        """Detach: stop deliveries, and have the node let go of the replica if it was the last."""
        if not self.closed:
            if self.tracker is not None and self.tracker.wanted is not None:
                try:
                    await self.tracker.show(None)
                except LiveStateError as error:
                    # Not fatal: the node's release (or, if it died, its lease) takes it too.
                    self.replica.log.warning(
                        "%s: could not end a presence (%s)", self.replica.id, error
                    )
            self.replica.discard(self)
            self.end(None)
            await self.replica.release()


class Backlog:
    """A client's changes waiting for its reader (an async callback, or `changes()`),
    bounded in length (`max_pending`) and in age (`max_lag`): a reader that falls
    behind gets one `reset` instead."""

    __slots__ = ("callback", "first", "inbox", "pending", "pump", "stale", "waiter")

    def __init__(self, inbox: Inbox, callback: Callable[[Change], Awaitable[Any]] | None) -> None:
        self.inbox = inbox
        self.callback = callback  # None: `changes()` reads it
        # Queued changes with when each was queued; made on first use.
        self.pending: deque[tuple[float, Change]] | None = None
        self.stale = False  # the backlog was dropped: the next change delivered is a reset
        self.pump: asyncio.Task[None] | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.first: Awaitable[Any] | None = None  # what a sync on_change returned, to await

    def deliver(self, change: Change) -> None:
        """Queue one change for the reader, without waiting for it."""
        if not self.stale:
            pending = self.pending
            if pending is None:
                pending = self.pending = deque()
            now = time.monotonic()
            max_pending, max_lag = self.inbox.limits
            if len(pending) >= max_pending or (pending and now - pending[0][0] > max_lag):
                # A slow reader: forget the backlog and hand it the whole state when it reads.
                pending.clear()
                self.stale = True
            else:
                pending.append((now, change))
        self.wake()

    def end(self, change: Change | None) -> None:
        """The client is detached: drop the backlog, or queue `change` (a `stopped`) last."""
        if change is None:
            self.pending = None
            self.stale = False
        else:
            pending = self.pending = self.pending or deque()
            if self.stale:  # resolve the pending reset now, so `stopped` stays last
                self.stale = False
                pending.clear()
                pending.append((0.0, self.inbox.replica.reset_change()))
            pending.append((0.0, change))
        self.wake()

    def next(self) -> Change | None:
        """The next change for the reader, or None; a reset if it fell behind."""
        pending = self.pending
        inbox = self.inbox
        if not self.stale and pending:
            if pending[0][0] and time.monotonic() - pending[0][0] > inbox.limits[1]:
                self.stale = True
                if inbox.node.metrics is not None:
                    inbox.node.metrics.reset("lag")
            else:
                return pending.popleft()[1]
        if self.stale:
            self.stale = False
            # Keep what `end` queued (a `stopped`); the reset covers everything before it.
            self.pending = deque(item for item in pending or () if not item[0]) or None
            return inbox.replica.reset_change()
        return None

    def wake(self) -> None:
        """Run the callback on what is queued, or wake the `changes()` reader."""
        if self.callback is not None:
            if self.pump is None and (self.pending or self.stale or self.first):
                self.pump = asyncio.get_running_loop().create_task(self._run_callback())
        elif self.waiter is not None:
            if not self.waiter.done():
                self.waiter.set_result(None)
            self.waiter = None

    async def _run_callback(self) -> None:
        callback = self.callback
        if callback is None:  # pragma: no cover - wake starts the pump only with a callback
            return
        try:
            if self.first is not None:
                first, self.first = self.first, None
                await self._guard(first)
            while (change := self.next()) is not None:
                await self._guard(callback(change))
        finally:
            self.pump = None

    async def _guard(self, awaitable: Awaitable[Any]) -> None:
        try:
            await awaitable
        except Exception:
            replica = self.inbox.replica
            replica.log.exception("%s: an on_change of a client raised", replica.id)


class Client:
    """One attachment to a live state: a group member for the ACL.

    `state` is the current state (a read-only Mapping kept up to date by the node)
    and `version` its version. Changes arrive in version order through the
    `on_change` callback given to `attach`, or through `changes()`. Use it as an
    async context manager, or call `detach()`, to let go.
    """

    __slots__ = ("__weakref__", "_inbox")

    def __init__(self, inbox: Inbox) -> None:
        self._inbox = inbox

    def __repr__(self) -> str:
        status = "detached" if self._inbox.closed else f"version {self.version}"
        return f"<Client of {self._inbox.replica.id} at {status}>"

    @property
    def key(self) -> str:
        """The key of the live state this client is attached to."""
        return self._inbox.replica.id.key

    @property
    def spec(self) -> type[Spec]:
        """The state spec of the live state."""
        return self._inbox.replica.spec

    @property
    def state(self) -> Mapping[str, JSON]:
        """The current state: a read-only Mapping whose values are read-only too."""
        return self._inbox.replica.view

    @property
    def version(self) -> int:
        """The version of `state`: it only grows, by one per write, or by a jump with a reset."""
        return self._inbox.replica.version

    @property
    def presence(self) -> Mapping[str, FrozenList]:
        """Who is present now: a read-only Mapping of identity -> its metas (a read-only list,
        one meta per client that tracks that identity, in the order they joined).

        Kept current like `state`; each join, meta update and leave is a `presence` change.
        A `reset` change may stand for presence changes too (a resync folds them in, as it
        does writes): read `presence` again after one.
        """
        return self._inbox.replica.roster.view

    @property
    def caller(self) -> Caller | None:
        """Who this client acts for, as `attach` was told (None: trusted server code)."""
        return self._inbox.caller

    @property
    def attached(self) -> bool:
        """Whether the client is still attached (not detached, stopped or closed with its node)."""
        return not self._inbox.closed

    async def put(self, prop: str, value: Any, *, write_id: str | None = None) -> None:
        """Set `prop` to `value`; see LiveState.put."""
        await self._write("put", prop, value, None, write_id)

    async def delete(self, prop: str, *, write_id: str | None = None) -> None:
        """Remove `prop`; see LiveState.delete."""
        await self._write("delete", prop, None, None, write_id)

    async def reset(self, *, write_id: str | None = None) -> None:
        """Run on_mount again and replace the whole state; see LiveState.reset."""
        node, spec, key, caller = self._aim()
        await node.reset(spec, key, role="group", caller=caller, write_id=write_id)

    async def append(
        self, prop: str, item: Any, *, max_len: int | None = None, write_id: str | None = None
    ) -> None:
        """Append `item` to the list `prop` atomically; see LiveState.append."""
        await self._write("append", prop, item, max_len, write_id)

    async def increment(
        self, prop: str, by: int | float = 1, *, write_id: str | None = None
    ) -> JSON:
        """Add `by` to the number `prop` atomically, return the result; see LiveState.increment."""
        return (await self._write("increment", prop, by, None, write_id)).value

    async def update(
        self,
        prop: str,
        fn: Callable[[Any], Any],
        *,
        default: Any = DEFAULT,
        write_id: str | None = None,
    ) -> JSON:
        """Replace `prop` with `fn(value)` atomically; see LiveState.update."""
        node, spec, key, caller = self._aim()
        return await node.update(
            spec, key, prop, fn, default=default, role="group", caller=caller, write_id=write_id
        )

    async def call(
        self, action: str, args: Mapping[str, Any] | None = None, *, write_id: str | None = None
    ) -> JSON:
        """Run one of the spec's actions as this client (a group member); see LiveState.call."""
        node, spec, key, caller = self._aim()
        return await node.call(
            spec, key, action, args, role="group", caller=caller, write_id=write_id
        )

    async def track(self, identity: str, meta: Any = None) -> None:
        """Show this client in the live state's presence as `identity`, with a JSON `meta`.

        Call it again to change the meta (say, typing): calls made while one is
        being written are coalesced, so only the latest is written next. Several
        clients (a user's tabs) may track one identity. Returns once every client
        of this node shows it; every other node's within the convergence bound.
        Detaching (or `untrack`) ends it; so does this node's death, within its lease.
        Raises InvalidValueError (identity a str of 1 to 256 characters; identity and
        meta within 2,048 bytes of JSON), PermissionDeniedError (needs read),
        NotFoundError, BackendUnavailableError.
        """
        inbox = self._inbox
        replica = inbox.replica
        entry = check_entry(identity, meta, replica.id)
        self._aim()
        if inbox.tracker is None:
            inbox.tracker = Tracker(replica.node, replica.write)
        await inbox.tracker.show(entry)

    async def untrack(self) -> None:
        """Stop showing this client in the presence (nothing if it does not show).

        Raises BackendUnavailableError; detaching ends the presence too.
        """
        tracker = self._inbox.tracker
        if tracker is not None:
            self._aim()
            await tracker.show(None)

    async def changes(self) -> AsyncIterator[Change]:
        """Every change from now on, in version order; ends when the client is detached.

        A reader more than `max_lag` seconds or `max_pending` changes behind gets
        one `reset` instead of the backlog. Raises RuntimeError if the client has
        an `on_change` callback, which already receives the changes.
        """
        inbox = self._inbox
        if inbox.on_change is not None:
            raise RuntimeError(
                f"This client of {inbox.replica.id} delivers changes to its on_change callback; "
                "attach without on_change to iterate over changes()."
            )
        backlog = inbox.backlog
        if backlog is None:  # pragma: no cover - a client without on_change has one
            return
        loop = asyncio.get_running_loop()
        while True:
            change = backlog.next()
            if change is None:
                if inbox.closed:
                    return
                backlog.waiter = loop.create_future()
                await backlog.waiter
                continue
            yield change

    async def detach(self) -> None:
        """Let go of the live state; the last client to leave starts its TTL countdown.

        Detaching twice does nothing.
        """
        await self._inbox.leave()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.detach()

    def _write(
        self, kind: str, prop: str, value: Any, max_len: int | None, write_id: str | None
    ) -> Awaitable[Applied]:
        """A put, delete, append or increment through this client, straight to its node's
        writer (no coroutine of the node's own in between: this is every client write's
        path). Raises RuntimeError if the client is detached."""
        inbox = self._inbox
        if inbox.closed:
            raise self._detached()
        return inbox.write(inbox, kind, prop, value, max_len, write_id)

    def _aim(self) -> tuple[Node, type[Spec], str, Caller | None]:
        """What a write through this client names: its node, spec, key and caller. Raises
        RuntimeError if the client is detached."""
        inbox = self._inbox
        if inbox.closed:
            raise self._detached()
        replica = inbox.replica
        return inbox.node, replica.spec, replica.id.key, inbox.caller

    def _detached(self) -> RuntimeError:
        return RuntimeError(
            f"This client of {self._inbox.replica.id} is detached; attach a new one with "
            f"{self.spec.__qualname__}.attach({self.key[:200]!r})."
        )
