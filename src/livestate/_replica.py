"""Replicas: a node's copy of one live state, kept in version order.

The replica is the one place that orders what a backend publishes. It applies
each op at the next version, holds one that comes early for a moment, and
loads a fresh snapshot (a resync, then one `reset` to its clients) when
something went missing: a gap that does not fill, a lifetime it does not know,
a backend's resync signal, or a heartbeat that finds the server ahead. Reads
made elsewhere never move it, so no read can leave a client behind.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from ._acl import ACL, READ
from ._backends.base import Backend, Message, Mounted, Snapshot
from ._changes import Change, Op, StateId, apply
from ._exceptions import LiveStateError
from ._log import NodeLog
from ._presence import Roster, Tracker, leave_op, node_of
from ._retry import Backoff, delay
from ._values import JSON, FrozenDict

if TYPE_CHECKING:
    from ._declare import Spec
    from ._metrics import Metrics

HOLD = 1.0
"""Seconds a message that came ahead of its predecessor waits for it before a resync."""

RESYNC_BACKOFF = Backoff((0.05, 0.1, 0.25, 0.5, 1.0))
"""Seconds between attempts to resync while the backend is unavailable."""


class Host(Protocol):
    """What a replica needs from the node that keeps it (the node's own `Keeper`)."""

    node: str
    """The node's id, which its holds and its clients' presences are under."""
    backend: Backend
    log: NodeLog
    metrics: Metrics | None

    def mount(self, spec: type[Spec], id: StateId) -> Awaitable[Mounted]:
        """Run the spec's on_mount for the live state, checked and frozen."""

    def ended(self, replica: Replica) -> object:
        """The live state itself detached every client (stopped, or read revoked): let go."""

    def release(self, replica: Replica) -> Awaitable[None]:
        """A client detached: let go of the replica if it was the last."""

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `coroutine` in a task the node keeps (and cancels when it closes)."""

    def write(self, id: StateId, op: Op) -> Awaitable[object]:
        """Write `op` as a client of the live state would."""


class Receiver(Protocol):
    """What a replica needs of each client it delivers to (an Inbox, _client.py)."""

    tracker: Tracker | None
    """The client's presence, once it tracks one."""

    @property
    def receive(self) -> Callable[[Change], object]:
        """What to call with each change."""

    def end(self, change: Change | None) -> None:
        """The client is detached, with `change` (a `stopped`) delivered last if given."""

    def returned(self, result: object) -> None:
        """Its on_change returned `result` (an awaitable makes it async from now on)."""


class Replica:
    """One node's copy of one live state, shared by the node's clients of it.

    Its `host` (the node) runs on_mount, spawns its tasks, writes for it, and lets
    go of it when the live state detaches every client itself (it stopped, or the
    ACL no longer lets the group read) or when its last client detaches.
    """

    __slots__ = (
        "acl",
        "backend",
        "behind",
        "buffer",
        "closed",
        "declared",
        "epoch",
        "held",
        "host",
        "id",
        "inboxes",
        "leaving",
        "log",
        "metrics",
        "miscounted",
        "missing",
        "node",
        "on_applied",
        "past",
        "ready",
        "receivers",
        "roster",
        "spec",
        "state",
        "syncing",
        "timer",
        "version",
        "view",
        "waiters",
        "waiting",
    )

    def __init__(self, host: Host, spec: type[Spec], id: StateId) -> None:
        self.host = host
        # The host's, kept at hand: they are read on every change.
        self.backend = host.backend
        self.log = host.log
        self.metrics = host.metrics
        self.node = host.node
        self.spec = spec
        self.id = id
        self.state: dict[str, JSON] = {}
        self.roster = Roster()
        self.view = MappingProxyType(self.state)
        self.version = 0
        self.epoch = ""
        self.acl = ACL()
        self.declared = ""  # what the spec that started this lifetime declared
        self.inboxes: dict[Receiver, None] = {}
        # What fan_out calls, one per client: built on first use after clients change.
        self.receivers: tuple[Callable[[Change], object], ...] | None = None
        # Messages wait here while a snapshot loads; None when live.
        self.buffer: list[Message] | None = []
        self.held: dict[int, Message] = {}  # came early: version -> message
        self.timer: asyncio.TimerHandle | None = None
        self.waiters: dict[int, asyncio.Future[None]] = {}
        self.past: deque[str] = deque(maxlen=4)  # epochs of lifetimes this replica left
        self.behind: int | None = None  # the version the last heartbeat found, if ahead
        self.missing = 0  # heartbeats in a row that found the live state gone
        self.miscounted = False  # the last heartbeat counted other presences at our version
        self.leaving: asyncio.Task[None] | None = None  # ending presences no client here has
        self.closed = False
        self.waiting = 0  # attach calls waiting for `ready`
        self.ready: asyncio.Task[None] | None = None
        self.syncing: asyncio.Task[None] | None = None
        self.on_applied: Callable[[Change], object] | None = None  # the persister's, if any

    def __repr__(self) -> str:
        return f"<Replica of {self.id} at {self.epoch}:{self.version}>"

    @property
    def live(self) -> bool:
        """Whether the replica applies messages as they come (not closed, not resyncing)."""
        return self.buffer is None and not self.closed

    async def open(self) -> None:
        """Subscribe, then start or load the live state, so that no message falls in between."""
        await self.backend.subscribe(self.id, self)
        snapshot = await self.backend.open(self.id, self._mount, self.node, hold=True)
        self._load(snapshot)
        self._drain()

    def close(self) -> None:
        """Stop ordering and wake whoever waits; the node unsubscribes and lets go."""
        self.closed = True
        self._cancel_timer()
        self.held.clear()
        self._resolve(None)

    def write(self, op: Op) -> Awaitable[object]:
        """Write `op` through the node as a client of this live state: fenced to the
        lifetime this replica shows, as its clients' writes are."""
        return self.host.write(self.id, op._replace(epoch=self.epoch or None))

    async def release(self) -> None:
        """A client detached: the node lets go of the replica if it was the last."""
        await self.host.release(self)

    def _mount(self) -> Awaitable[Mounted]:
        return self.host.mount(self.spec, self.id)

    # The backend's Listener side.

    def wants(self, epoch: str, version: int) -> bool:
        """Whether a message at this position would be news (a backend may skip decoding it)."""
        return self.buffer is not None or epoch != self.epoch or version > self.version

    def receive(self, message: Message) -> None:
        """Apply one published message in version order; resync when one went missing."""
        if self.buffer is not None:
            self.buffer.append(message)
            return
        epoch, version, op, sent = message
        if epoch != self.epoch:
            if op != "stopped" and epoch not in self.past:
                self.resync("lifetime")  # a lifetime this replica does not know: load it
            return
        if type(op) is str:
            if op == "stopped":
                self._end("the live state was stopped")
            return
        if version != self.version + 1:
            if version <= self.version:
                return  # seen already (this node's own write, applied when it returned)
            # Another node's earlier write is still on its way: wait for it a moment.
            self.held[version] = message
            if self.timer is None:
                self.timer = asyncio.get_running_loop().call_later(HOLD, self.resync, "gap")
            return
        self._apply(version, op, sent)  # type: ignore[arg-type]
        if self.held or self.timer is not None:  # (rarely: most messages come in order)
            self._apply_held()

    def _apply_held(self) -> None:
        """Apply what came early and is next now; stop the gap's timer once none is left."""
        held = self.held
        while held and self.buffer is None and not self.closed:
            early = held.pop(self.version + 1, None)
            if early is None:
                return
            self._apply(early.version, early.op, early.sent)  # type: ignore[arg-type]
        if not held and self.timer is not None:
            self._cancel_timer()

    def resync(self, cause: str = "reconnect") -> None:
        """Load a fresh snapshot and send one reset, in a task; messages wait meanwhile.

        `cause` is counted in the metrics: gap, lifetime, reconnect, heartbeat, lost,
        unreadable or diverged.
        """
        if self.buffer is not None or self.closed:
            return
        if self.metrics is not None:
            self.metrics.resynced(cause)
        self._cancel_timer()
        self.buffer = [self.held[version] for version in sorted(self.held)]
        self.held.clear()
        # Diverged: what was applied here is wrong, so even a snapshot at the same version
        # replaces it.
        self.syncing = self.host.spawn(self._sync(force=cause == "diverged"))

    def notice(self, kind: str, value: JSON) -> None:
        """A notice from any node (a `persist_failed`): a change at the current version."""
        if not self.closed and kind == "persist_failed":
            self.fan_out(Change(self.id.key, "persist_failed", None, value, self.version))

    def observe(self, epoch: str | None, version: int, present: int | None = None) -> None:
        """Resync if two heartbeats in a row find the server ahead of what was applied here
        (or, at the same version, with another number of presences: one was lost alone);
        else make sure the presence shows what this node's clients track."""
        if self.buffer is not None or self.closed:
            return
        if epoch is None:
            # Gone: stopped (its message is on the way) or lost (the server restarted).
            self.missing += 1
            if self.missing >= 2:
                self.resync("lost")
            return
        self.missing = 0
        if epoch == self.epoch and self.version >= version:
            self.behind = None
            miscounted = present is not None and self.version == version
            miscounted = miscounted and present != len(self.roster)
            if miscounted and self.miscounted:
                self.resync("diverged")
                return
            self.miscounted = miscounted
            self._reconcile()
        elif self.behind is not None and (epoch != self.epoch or self.version < self.behind):
            self.resync("heartbeat")
        else:
            self.behind = version

    # The node's side.

    async def reached(self, epoch: str, version: int) -> None:
        """Return once `version` of lifetime `epoch` is applied here, or a snapshot replaced it."""
        if self.closed or (epoch == self.epoch and self.version >= version):
            return
        future = self.waiters.get(version)
        if future is None:
            future = self.waiters[version] = asyncio.get_running_loop().create_future()
        await asyncio.shield(future)

    def add(self, inbox: Receiver) -> None:
        """Deliver changes to `inbox` from now on."""
        self.inboxes[inbox] = None
        self.receivers = None

    def discard(self, inbox: Receiver) -> None:
        """Stop delivering changes to `inbox`."""
        self.inboxes.pop(inbox, None)
        self.receivers = None

    def fan_out(self, change: Change, sent: float = 0.0) -> None:
        """Deliver `change` (written at wall clock time `sent`, if known) to every client."""
        receivers = self.receivers
        if receivers is None:
            receivers = self.receivers = tuple(inbox.receive for inbox in self.inboxes)
        # A sync on_change is called here, with no frame in between: at a thousand clients
        # per live state this loop is most of a write's cost.
        for receive in receivers:
            try:
                result = receive(change)
            except Exception:
                self.log.exception("%s: an on_change of a client raised", self.id)
                continue
            if result is not None:
                self._returned(receive, result)
        if self.metrics is not None:
            self.metrics.delivered(change.kind, len(receivers), sent)
        if self.on_applied is not None:
            self.on_applied(change)

    def reset_change(self) -> Change:
        """A `reset` change with the whole current state."""
        return Change(self.id.key, "reset", None, FrozenDict(self.state), self.version)

    # Internals.

    def _apply(self, version: int, op: Op, sent: float) -> None:
        kind = op.kind
        if kind == "join" or kind == "leave":
            lost = self.roster.removes(op) if kind == "leave" else ()
            self.version = version
            diff = self.roster.apply(op, version)
            self.fan_out(Change(self.id.key, "presence", None, diff, version), sent)
            if self.waiters:
                self._resolve(version)
            if lost and any(node_of(ref) == self.node for ref in lost):
                self._reconcile()
            return
        acl = op.acl
        if acl is not None and not acl.allows("group", READ):
            # Revoked: the clients must not see the new state, not even in `client.state` as
            # their last `stopped` arrives, only that they are out.
            self.acl = acl
            self._end("its ACL no longer lets the group read")
            return
        try:
            made = apply(self.state, op, self.id, version)
        except LiveStateError:
            self.log.warning("%s: the replica diverged at version %d; resyncing", self.id, version)
            self.resync("diverged")
            return
        self.version = version
        if acl is not None:
            self.acl = acl
        self.fan_out(made, sent)
        if self.waiters:
            self._resolve(version)

    def _load(self, snapshot: Snapshot, force: bool = False) -> bool:
        """Take `snapshot` (in place: views stay valid) unless it is not newer (or, with
        `force`, older); say if taken."""
        self.behind = None
        self.missing = 0
        self.miscounted = False
        stale = snapshot.version < self.version or (snapshot.version == self.version and not force)
        if snapshot.epoch == self.epoch and stale:
            self._resolve(None)
            return False
        if self.epoch and snapshot.epoch != self.epoch:
            self.past.append(self.epoch)
            if snapshot.version <= self.version:
                self.log.warning(
                    "%s started anew at version %d, not above %d; was the server's clock set back?",
                    self.id,
                    snapshot.version,
                    self.version,
                )
        self.state.clear()
        self.state.update(snapshot.state)
        self.version = snapshot.version
        self.epoch = snapshot.epoch
        self.acl = snapshot.acl
        self.declared = snapshot.declared
        self.roster.load(snapshot.presence)
        self._resolve(None)
        self._reconcile()
        return True

    def _drain(self) -> None:
        buffered, self.buffer = self.buffer or [], None
        for message in buffered:
            self.receive(message)  # a gap among them starts another resync, which keeps the rest

    async def _sync(self, force: bool = False) -> None:
        """Load a snapshot (starting the live state anew if it was lost), then send a reset;
        with `force`, even one at the version applied here."""
        attempt = 0
        while not self.closed:
            try:
                snapshot = await self.backend.read(self.id)
                if snapshot is None:
                    self.log.warning("%s was lost under attached clients; starting anew", self.id)
                    snapshot = await self.backend.open(self.id, self._mount, self.node, hold=True)
            except Exception as error:
                attempt += 1
                seconds = delay(RESYNC_BACKOFF, attempt)
                self.log.warning(
                    "%s: resync failed (%s); retrying in %.2fs", self.id, error, seconds
                )
                await asyncio.sleep(seconds)
                continue
            if self.closed:
                return  # the node let go meanwhile; its release ends any hold taken above
            if not snapshot.acl.allows("group", READ):
                # As above: the clients leave without the state that shut them out.
                self.acl = snapshot.acl
                self._end("its ACL no longer lets the group read")
                return
            if self._load(snapshot, force):
                if self.metrics is not None:
                    self.metrics.reset("resync", len(self.inboxes))
                self.fan_out(self.reset_change())
            self._drain()
            return

    def _end(self, why: str) -> None:
        """Detach every client with a last `stopped` change, and have the node let go."""
        self.log.info("%s: detaching its clients on this node: %s", self.id, why)
        change = Change(self.id.key, "stopped", None, None, self.version)
        for inbox in tuple(self.inboxes):
            self.discard(inbox)
            inbox.end(change)
        self.host.ended(self)

    def _reconcile(self) -> None:
        """Make the backend show what this node's clients track: show again what is
        missing (a sweep took it while this node was cut off, a new lifetime began, a write
        failed) and end what no client here tracks (a leave that failed in an outage)."""
        roster = self.roster
        mine = set()
        for inbox in self.inboxes:
            tracker = inbox.tracker
            if tracker is None:
                continue
            mine.add(tracker.ref)
            wanted = tracker.wanted
            if wanted is not None and not tracker.busy and not roster.shows(tracker.ref, wanted):
                self.host.spawn(self._quietly(tracker.refresh(), "show a presence again"))
        if self.leaving is None and roster.entries:
            stray = [ref for ref in roster.entries if ref not in mine and node_of(ref) == self.node]
            if stray:
                self.leaving = self.host.spawn(self._leave(stray))

    async def _leave(self, refs: list[str]) -> None:
        try:
            await self._quietly(self.write(leave_op(refs)), "end a presence")
        finally:
            self.leaving = None

    async def _quietly(self, writing: Awaitable[object], what: str) -> None:
        try:
            await writing
        except LiveStateError as error:
            # The next heartbeat or resync tries again.
            self.log.warning("%s: could not %s (%s)", self.id, what, error)

    def _returned(self, receive: Callable[[Change], object], result: object) -> None:
        """A sync on_change returned something: if it is awaitable, await its results from now."""
        for inbox in self.inboxes:
            if inbox.receive is receive:
                inbox.returned(result)
                self.receivers = None
                return

    def _resolve(self, version: int | None) -> None:
        """Wake the waiters for `version` and below (None: all of them)."""
        if not self.waiters:
            return
        for waited in [v for v in self.waiters if version is None or v <= version]:
            future = self.waiters.pop(waited)
            if not future.done():
                future.set_result(None)

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
