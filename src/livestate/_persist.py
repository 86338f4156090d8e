"""Persistence: a spec's on_persist saves its live states, one node at a time, off the write path.

Each node keeps one `Persister` per live state of a persisting spec that it
holds (has a replica of), and one `Persistence` that renews their claims in the
backend five times per claim lease, like the heartbeat. Only the claim's holder
saves; a node that dies stops renewing, and another holder claims within the
lease. The holder saves the replica's own state (no extra read), at most once
per `persist_interval` after changes, in the persister's task: a write or a
delivery only sets an event. Saves never overlap: a change that lands during a
save is saved by the next one, which starts when this one ends, or
`persist_interval` after this one began if that is later. A node that lets go
of its replica stops waiting out the debounce, and gives the claim up as soon
as its save under way (if any) ends; another holder takes it at its next
renewal. A failing save is retried with backoff; after `max_persist_failures`
in a row every client, on every node, gets a `persist_failed` change.

When the node lets go of its replica and no other node holds the live state
(its TTL countdown), the persister stays on as a watcher: it reads the live
state when a public write moved it, and when the live state is gone (its TTL
ran out, or it was stopped) it saves the last state with `final=True`. At a
graceful shutdown, the last node holding a live state saves it with
`final=True` too. The choices and the loss bound: docs/persistence.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, NamedTuple

from ._changes import Change, StateId
from ._declare import Spec, persisted, persists
from ._exceptions import LiveStateError
from ._retry import Backoff, delay
from ._values import FrozenDict

if TYPE_CHECKING:
    from ._backends import Backend
    from ._log import NodeLog
    from ._replica import Replica

ORPHANS = 8
"""Live states whose saver died that one renewal round takes up, at most."""

MAX_BACKOFF = 30.0
"""The longest wait, in seconds, between two attempts of a failing save."""

SHUTDOWN_GRACE = 10.0
"""Seconds a node's graceful shutdown waits for its last saves before it cancels them."""


class Kept(NamedTuple):
    """A live state as last known to a persister: its state, lifetime and version."""

    state: FrozenDict
    epoch: str
    version: int


class Persistence:
    """One node's persisters, and the task that renews their claims in the backend."""

    def __init__(self, backend: Backend, node: str, log: NodeLog) -> None:
        self.backend = backend
        self.node = node
        self.log = log
        self.persisters: dict[StateId, Persister] = {}
        self.closing = False
        self._ticker: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def started(self) -> None:
        """The node started: if this process has specs that persist, look for orphans."""
        if persisted and not self.closing and self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._tick())

    def opened(self, replica: Replica) -> None:
        """The node opened `replica`: save its live state from now on, if its spec persists."""
        if not persists(replica.spec) or self.closing:
            return
        persister = self.persisters.get(replica.id)
        if persister is None or persister.ending or persister.done:
            persister = self._add(replica.spec, replica.id)
        persister.attach(replica)

    def closed(self, replica: Replica, release: asyncio.Task[None]) -> None:
        """The node let go of `replica` (its hold ends with `release`): hand over or watch."""
        persister = self.persisters.get(replica.id)
        if persister is not None and persister.replica is replica:
            persister.detach(release)

    def watch(self, spec: type[Spec], id: StateId) -> None:
        """The node started a live state without holding it: save it while nobody holds it."""
        if persists(spec) and not self.closing and id not in self.persisters:
            self._add(spec, id).wake.set()

    def stopped(self, id: StateId) -> None:
        """This node stopped the live state: have its watcher, if any, look now."""
        persister = self.persisters.get(id)
        if persister is not None and persister.replica is None:
            self._spawn(persister.renew())

    def begin_close(self) -> None:
        """The node shuts down: letting go of a replica now ends with a final save if last."""
        self.closing = True

    async def aclose(self) -> None:
        """Finish every persister (final saves included), within SHUTDOWN_GRACE seconds."""
        self.closing = True
        for persister in list(self.persisters.values()):
            if persister.replica is None and persister.releasing is None:
                persister.ending = True  # a watcher: nobody will save it after this node
                persister.hurry()
        tasks = [p.task for p in self.persisters.values() if p.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE)
            for task in pending:
                self.log.warning("%s: its last save did not finish in time", task.get_name())
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for task in [*self._tasks, *([self._ticker] if self._ticker else [])]:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def forget(self, persister: Persister) -> None:
        """`persister` is done; a replica opened meanwhile gets a persister of its own."""
        if self.persisters.get(persister.id) is persister:
            del self.persisters[persister.id]
        replica = persister.replica
        if replica is not None and not replica.closed and not self.closing:
            self.opened(replica)

    def _add(self, spec: type[Spec], id: StateId) -> Persister:
        persister = self.persisters[id] = Persister(self, spec, id)
        persister.task = asyncio.get_running_loop().create_task(persister.run(), name=str(id))
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._tick())
        return persister

    async def _tick(self) -> None:
        """Renew every claim five times per lease, as the heartbeat renews holds, and take up
        live states whose saver died."""
        loop = asyncio.get_running_loop()
        due = loop.time()
        try:
            while self.persisters or (persisted and not self.closing):
                # A fixed cadence, not a pause between rounds: a claim given up is taken
                # within one renewal however long the rounds' round trips take.
                due = max(due + self.backend.save_lease() / 5, loop.time())
                await asyncio.sleep(due - loop.time())
                await asyncio.gather(*(p.renew() for p in list(self.persisters.values())))
                if persisted and not self.closing:
                    await self._adopt()
        finally:
            self._ticker = None

    async def _adopt(self) -> None:
        """Watch the live states whose claim lapsed unreleased: their node died, maybe as the
        last one holding them, and nobody else saves them (or ends them with a final save)."""
        try:
            orphans = await self.backend.orphans(ORPHANS)
        except Exception as error:
            self.log.debug("could not look for live states whose saver died (%s)", error)
            return
        for id in orphans:
            spec = persisted.get(id.spec)
            if spec is not None and id not in self.persisters:
                self.log.info("%s: its saver's claim lapsed; taking the saving over", id)
                self._add(spec, id)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class Persister:
    """One node's saver of one live state: from its replica, or (with none) as a watcher.

    Its task `run` does every save, one at a time: debounced ones while the node
    holds the claim, the hand-over when the node lets go of the replica, and the
    final one when the live state ends.
    """

    def __init__(self, persistence: Persistence, spec: type[Spec], id: StateId) -> None:
        self.persistence = persistence
        self.backend = persistence.backend
        self.log = persistence.log
        self.spec = spec
        self.id = id
        self.interval = float(spec.persist_interval)
        # A failing save waits the interval, then twice that, and so on up to MAX_BACKOFF.
        self.backoff = Backoff.exponential(self.interval, MAX_BACKOFF)
        self.replica: Replica | None = None
        self.kept: Kept | None = None  # the state to save when there is no replica
        self.releasing: asyncio.Task[None] | None = None  # set when the replica was let go
        self.held = False  # whether this node holds the claim, as last renewed
        self.until = 0.0  # loop time this node's claim surely lasts until
        self.saved: tuple[str, int] | None = None  # the `mark` this node saved last
        # Where the state last changed (epoch, version): presence changes raise the version
        # but leave the state as it was, so they need no save.
        self.mark: tuple[str, int] | None = None
        self.failures = 0  # failed saves in a row
        self.last = float("-inf")  # loop time the last save began
        self.wake = asyncio.Event()
        # Set when waiting out the debounce must stop: the replica was let go (hand over
        # now), or the live state ended (save it finally now).
        self.urgent = asyncio.Event()
        self.ending = False  # the live state ended (or nobody will save it after this node)
        self.done = False
        self.task: asyncio.Task[None] | None = None

    def attach(self, replica: Replica) -> None:
        """Save from `replica` (its every applied change calls `changed`)."""
        self.replica = replica
        self.releasing = None
        self.urgent.clear()
        self.mark = (replica.epoch, replica.version)
        replica.on_applied = self.changed
        self.wake.set()

    def detach(self, release: asyncio.Task[None]) -> None:
        """The replica was let go: keep its last state, and decide who saves from now on."""
        replica = self.replica
        if replica is None:
            return
        replica.on_applied = None
        self.kept = Kept(FrozenDict(replica.state), replica.epoch, replica.version)
        self.replica = None
        self.releasing = release
        self.hurry()

    def changed(self, change: Change) -> None:
        """The replica applied a change: save it within `persist_interval` if this node saves."""
        if change.kind == "presence" or change.kind == "persist_failed":
            return  # the state is as it was
        replica = self.replica
        if replica is not None:
            self.mark = (replica.epoch, change.version)
        if self.held:
            self.wake.set()

    def hurry(self) -> None:
        """Stop waiting out the debounce: the replica was let go, or the live state ended."""
        self.urgent.set()
        self.wake.set()

    async def run(self) -> None:
        """Claim, then save whenever woken, until the live state ends here."""
        try:
            await self.renew()
            while not self.done:
                await self.wake.wait()
                if self.ending:
                    await self._end()
                    break
                if self.releasing is not None:
                    await self._leave()
                    continue
                # Debounce: changes during the wait are saved together, by the next save,
                # which starts `interval` after the last one began, or at once if that has
                # passed (a change during a save waits for that save's end, no longer).
                delay = self.last + self.interval - asyncio.get_running_loop().time()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await self.urgent.wait()
                if self.ending or self.releasing is not None or self.done:
                    continue
                self.wake.clear()
                if self._may_save():
                    await self._save(final=False)
        except Exception:
            self.log.exception("%s: its persister failed; it is no longer saved here", self.id)
        finally:
            self.done = True
            self.persistence.forget(self)

    async def renew(self) -> None:
        """Claim or renew the right to save; as a watcher, follow the live state."""
        if self.done or self.ending:
            return
        loop = asyncio.get_running_loop()
        began = loop.time()
        lease = self.backend.save_lease()
        try:
            held, epoch, version, holders = await self.backend.claim_save(
                self.id, self.persistence.node, lease
            )
        except Exception as error:
            self.log.debug("%s: could not renew its claim to save (%s)", self.id, error)
            return
        if epoch is None:
            if self.replica is None and self.releasing is None:
                self.held = held  # the claim for the last save, if this node has it
                self.ending = True  # the TTL ran out, or it was stopped: the final save
                self.hurry()
            return  # with a replica, its `stopped` or its resync tells what happened
        if held and not self.held:
            # What the previous holder saved, and when, is unknown: save at once.
            self.saved = None
            self.last = float("-inf")
        self.held = held
        self.until = began + lease if held else 0.0
        if self.replica is None and self.releasing is None:
            await self._follow(held, epoch, version, holders)
        elif held and self._unsaved():
            self.wake.set()

    # Internals.

    async def _follow(self, held: bool, epoch: str, version: int, holders: int) -> None:
        """As a watcher: step back when a node holds the live state, else keep up with it."""
        if not held or holders > 0:
            # A node holds it (its persister takes over), or another node watches it.
            self.done = True
            self.hurry()
            if held:
                await self._release()
            return
        kept = self.kept
        if kept is not None and kept.epoch != epoch:
            self.ending = True  # the lifetime it kept ended and another began
            self.urgent.set()
        elif kept is None or kept.version != version:
            snapshot = await self.backend.read(self.id)  # a public write moved it
            if snapshot is None:
                self.ending = kept is not None
                self.done = kept is None
                self.urgent.set()
            else:
                self.kept = Kept(FrozenDict(snapshot.state), snapshot.epoch, snapshot.version)
                self.mark = (snapshot.epoch, snapshot.version)
        self.wake.set()

    async def _leave(self) -> None:
        """After the node let go of the replica: hand over, watch, or save for the last time."""
        self.wake.clear()
        self.urgent.clear()
        release, self.releasing = self.releasing, None
        if release is not None:
            await asyncio.wait([release])  # the node's hold ends first, so holders are right
        if self.replica is not None:
            return  # attached again meanwhile
        kept = self.kept
        try:
            held, epoch, version, holders = await self.backend.claim_save(
                self.id, self.persistence.node, self.backend.save_lease()
            )
        except Exception as error:
            self.log.warning("%s: could not claim its last save (%s)", self.id, error)
            if self.held and self.replica is None:
                await self._save(final=False)
            self.done = True
            return
        if self.replica is not None:
            return
        if kept is None or epoch != kept.epoch:
            # It ended (stopped) while attached here: the node given the claim saves it last
            # (the one that held it, else the first to ask).
            if held and epoch is None:
                self.held = True
                await self._save(final=True)
            await self._release()
            self.done = True
            return
        self.held = held
        if not held or holders > 0:
            # Another node saves it, or will claim it within its next renewal.
            if held:
                await self._release()
            self.done = True
            return
        if self.persistence.closing:
            await self._save(final=True)  # the last node holding it shuts down
            await self._release()
            self.done = True
            return
        # The last holder let go: watch it through its TTL countdown, for the final save.
        if version != kept.version:
            await self._follow(held, epoch, version, holders)
        await self._save(final=False)

    async def _end(self) -> None:
        """The live state ended with no node holding it: save its last state, finally."""
        self.wake.clear()
        if self.held and self.kept is not None:
            await self._save(final=True)
        await self._release()
        self.done = True

    async def _release(self) -> None:
        self.held = False
        try:
            await self.backend.release_save(self.id, self.persistence.node)
        except Exception as error:
            self.log.debug("%s: could not release its claim to save (%s)", self.id, error)

    def _may_save(self) -> bool:
        return self.held and asyncio.get_running_loop().time() < self.until

    def _source(self) -> Kept | None:
        """What to save: the replica's state (None while it resyncs), or the kept one."""
        replica = self.replica
        if replica is None:
            return self.kept
        if replica.buffer is not None:
            return None  # loading a snapshot: its reset wakes this persister again
        return Kept(FrozenDict(replica.state), replica.epoch, replica.version)

    def _unsaved(self) -> bool:
        return self.mark is not None and self.mark != self.saved

    async def _save(self, *, final: bool) -> None:
        """Call on_persist with the latest state; retry failures with backoff.

        A debounced save gives up when this node no longer holds the claim (the
        next holder saves); a final one retries until it succeeds (or the node's
        shutdown grace ends).
        """
        loop = asyncio.get_running_loop()
        while True:
            source = self._source()
            if source is None:
                return
            mark = self.mark
            if not final and mark == self.saved:
                return
            if not final and not self._may_save():
                return
            self.last = loop.time()
            try:
                result = self.spec().on_persist(self.id.key, source.state, source.version, final)
                if inspect.isawaitable(result):
                    await result
            except Exception as error:
                self.failures += 1
                wait = delay(self.backoff, self.failures)
                self.log.warning(
                    "%s: on_persist failed at version %d (%d in a row: %s: %s); retrying in %.2fs",
                    self.id, source.version, self.failures, type(error).__name__, error, wait,
                )  # fmt: skip
                if self.failures == self.spec.max_persist_failures:
                    await self._tell(error)
                await asyncio.sleep(wait)
                continue
            if self.failures:
                self.log.info(
                    "%s: saved again at version %d after %d failures",
                    self.id, source.version, self.failures,
                )  # fmt: skip
            self.failures = 0
            self.saved = mark
            return

    async def _tell(self, error: Exception) -> None:
        """Tell every client, on every node, that saves keep failing (`persist_failed`)."""
        replica = self.replica
        if replica is None or replica.closed:
            return
        saved = self.saved[1] if self.saved and self.saved[0] == replica.epoch else None
        value = FrozenDict(
            failures=self.failures,
            error=f"{type(error).__name__}: {error}"[:500],
            saved_version=saved,
        )
        try:
            await self.backend.announce(self.id, "persist_failed", value)
        except LiveStateError as failure:
            # This node's clients at least hear of it.
            self.log.warning("%s: could not tell other nodes (%s)", self.id, failure)
            replica.notice("persist_failed", value)
