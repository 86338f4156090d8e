"""Presence: who is attached to a live state, as identities with a small JSON meta each.

A client that calls `track` shows itself in the live state's presence under a
ref of its own (`<node id>:<n>`), with an identity (several clients, say the
tabs of one user, may share one) and a meta. Showing and hiding are writes like
any other (`join` and `leave` ops), ordered and versioned with the state, so
every replica's roster equals the backend's at the same version and resyncs
with it. The backend drops the presences of a node whose hold on the live
state ended (it died, so its lease lapsed) in one `leave`; a node that finds
one of its clients missing (after such a sweep, or a new lifetime) shows it
again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import MappingProxyType
from typing import cast

from ._changes import Op, StateId
from ._exceptions import InvalidValueError
from ._values import JSON, FrozenDict, FrozenList, encode, freeze, size

MAX_PRESENCE_BYTES = 2048
"""The most bytes one presence (its identity and meta, as JSON) may take."""

MAX_IDENTITY_LENGTH = 256
"""The most characters an identity may have."""

Entry = tuple[str, JSON]
"""One presence: its identity and its meta."""

Present = tuple[str, JSON, int]
"""One presence as stored: its identity, its meta and the version its client joined at."""

_refs = itertools.count(1)


def new_ref(node: str) -> str:
    """A ref no other client shows under: the node's id and a number unique in this process."""
    return f"{node}:{next(_refs)}"


def node_of(ref: str) -> str:
    """The node whose client shows under `ref`."""
    return ref.partition(":")[0]


def check_entry(identity: object, meta: object, id: StateId) -> Entry:
    """Validate and freeze a presence, or raise InvalidValueError saying what to change."""
    if type(identity) is not str or not 1 <= len(identity) <= MAX_IDENTITY_LENGTH:
        raise InvalidValueError(
            f"Cannot track a presence in {id}: the identity must be a str of 1 to "
            f"{MAX_IDENTITY_LENGTH} characters (a user id or name), not {identity!r:.80}."
        )
    freeze(identity, 1, f"a presence in {id}", "identity")  # refuses a lone surrogate
    frozen = freeze(meta, 8, f"presence {identity!r} in {id}", "meta")
    nbytes = size(encode(FrozenList((identity, frozen))))
    if nbytes > MAX_PRESENCE_BYTES:
        raise InvalidValueError(
            f"Cannot track presence {identity!r:.80} in {id}: its identity and meta take "
            f"{nbytes:,} bytes of JSON, over the limit of {MAX_PRESENCE_BYTES:,}; keep a meta to "
            "small facts (status, typing, a cursor) and put the rest in the state."
        )
    return identity, frozen


def join_op(ref: str, entry: Entry) -> Op:
    """The op that shows `entry` under `ref` (or changes its meta)."""
    value = FrozenList(entry)
    text = encode(value)
    return Op("join", ref, value, text, size(text))


def leave_op(refs: Iterable[str]) -> Op:
    """The op that hides the presences shown under `refs`."""
    value = FrozenList(refs)
    text = encode(value)
    return Op("leave", None, value, text, size(text))


class Roster:
    """Who is present in one live state, the same on every replica at the same version.

    `entries` maps each ref to its identity, meta and the version it joined at.
    `view` is a read-only Mapping of identity -> FrozenList of its metas, both in
    join order (an identity where its earliest present client joined): an order
    every node computes alike, from a snapshot or change by change. It is what
    `Client.presence` hands out.
    """

    __slots__ = ("by_identity", "entries", "lists", "view")

    def __init__(self) -> None:
        self.entries: dict[str, Present] = {}
        self.by_identity: dict[str, dict[str, JSON]] = {}  # ref -> meta, in join order
        self.lists: dict[str, FrozenList] = {}
        self.view: Mapping[str, FrozenList] = MappingProxyType(self.lists)

    def __len__(self) -> int:
        return len(self.entries)

    def load(self, entries: Mapping[str, Present]) -> None:
        """Replace everything with `entries` (ref -> present), in place: views stay valid."""
        self.entries.clear()
        self.by_identity.clear()
        self.lists.clear()
        for ref, present in sorted(entries.items(), key=lambda item: item[1][2]):
            self.entries[ref] = present
            self.by_identity.setdefault(present[0], {})[ref] = present[1]
        for identity in self.by_identity:
            self._list(identity)

    def apply(self, op: Op, version: int) -> FrozenDict:
        """Apply a `join` or `leave` made at `version`; return the change's value:
        identity -> its metas now (empty when it left)."""
        touched: dict[str, None] = {}
        reorder = False
        if op.kind == "join":
            ref = cast(str, op.prop)
            identity, meta = op.value
            old = self.entries.get(ref)
            if old is not None and old[0] != identity:
                # Trackers give another identity a new ref; a ref joined again under another
                # identity anyway keeps its place, as on Redis.
                reorder = True
                del self.by_identity[old[0]][ref]
                if not self.by_identity[old[0]]:
                    del self.by_identity[old[0]]
                touched[old[0]] = None
            self.entries[ref] = (identity, meta, version if old is None else old[2])
            self.by_identity.setdefault(identity, {})[ref] = meta
            touched[identity] = None
        else:
            for ref in op.value:
                gone = self.entries.pop(ref, None)
                if gone is not None:
                    refs = self.by_identity[gone[0]]
                    reorder = reorder or (next(iter(refs)) == ref and len(refs) > 1)
                    del refs[ref]
                    if not refs:
                        del self.by_identity[gone[0]]
                    touched[gone[0]] = None
        diff = FrozenDict({identity: self._list(identity) for identity in touched})
        if reorder:
            # An identity's earliest client left while others stay: it moves to its next.
            order = sorted(self.lists, key=lambda name: self._joined(name))
            lists = {name: self.lists[name] for name in order}
            self.lists.clear()
            self.lists.update(lists)
        return diff

    def removes(self, op: Op) -> list[str]:
        """The refs that `op` (a `leave`) takes away, of those present now."""
        return [ref for ref in op.value if ref in self.entries]

    def shows(self, ref: str, entry: Entry) -> bool:
        """Whether `ref` is present with exactly `entry`."""
        present = self.entries.get(ref)
        return present is not None and present[:2] == entry

    def metas(self) -> FrozenDict:
        """Every identity present, with its metas: a frozen copy of `view`."""
        return FrozenDict(self.lists)

    def _joined(self, identity: str) -> int:
        return self.entries[next(iter(self.by_identity[identity]))][2]

    def _list(self, identity: str) -> FrozenList:
        refs = self.by_identity.get(identity)
        if not refs:
            self.lists.pop(identity, None)
            return FrozenList()
        metas = self.lists[identity] = FrozenList(refs.values())
        return metas


Send = Callable[[Op], Awaitable[object]]


class Tracker:
    """One client's presence: what it wants shown, written with at most one write in flight.

    `show` calls made while a write is in flight wait for it, then the latest
    of them is written once: a burst of meta updates (typing) costs two writes.
    A ref keeps the identity it first joined with; another identity takes a new ref.
    """

    __slots__ = ("calls", "flight", "identity", "node", "ref", "send", "shown", "wanted")

    def __init__(self, node: str, send: Send) -> None:
        self.node = node
        self.ref = new_ref(node)
        self.send = send
        self.wanted: Entry | None = None
        # What the backend shows under `ref`, as far as this node knows; UNKNOWN after a
        # write that failed (it may have been applied or not).
        self.shown: Entry | object | None = None
        self.identity: str | None = None  # the identity `ref` was sent with, if any
        self.flight: asyncio.Future[None] | None = None
        self.calls = 0  # `show` calls under way

    @property
    def busy(self) -> bool:
        """Whether a `show` call or a write is under way."""
        return self.calls > 0 or self.flight is not None

    async def show(self, entry: Entry | None) -> None:
        """Show `entry` (None: hide it); returns once the backend has it (or a later one).

        Raises what the write raises; the next call (or `refresh`) writes again.
        """
        self.calls += 1
        try:
            self.wanted = entry
            if entry is None:
                # A write in flight (even one whose caller was cancelled) may still land:
                # hide what it shows, not only what was shown before it.
                while self.flight is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(self.flight)
                if self.wanted is not None:
                    return  # shown again meanwhile: that call does the writing
            while self.shown != self.wanted:
                if self.flight is None:
                    self.flight = asyncio.ensure_future(self._write(self.wanted))
                await asyncio.shield(self.flight)
        finally:
            self.calls -= 1

    async def refresh(self) -> None:
        """Write what is wanted again: the backend was found not to show it."""
        self.shown = UNKNOWN
        await self.show(self.wanted)

    async def _write(self, entry: Entry | None) -> None:
        try:
            if entry is not None and self.identity is not None and self.identity != entry[0]:
                # Another identity: leave as the old one and join anew, at the end of the order.
                await self.send(leave_op((self.ref,)))
                self.ref = new_ref(self.node)
                self.identity = None
                self.shown = None
            if entry is None:
                if self.shown is not None:
                    await self.send(leave_op((self.ref,)))
                self.identity = None
            else:
                self.identity = entry[0]
                await self.send(join_op(self.ref, entry))
            self.shown = entry
        except BaseException:
            self.shown = UNKNOWN
            raise
        finally:
            self.flight = None


UNKNOWN = object()
"""What a tracker knows the backend shows after a write that failed: nothing sure."""
