"""The persistence tests' spec: a journal of items, saved through the chat example's store.

A `Recorder` wraps the store the way the tests need it: it notes every save
(when it began and ended, its version, whether final), counts saves that ran
at the same time (an overlap: two savers at once), and can fail or slow down
saves on purpose (JOURNAL_DELAY: seconds, in node processes). With JOURNAL_SAVES set (a
file), node processes append a line to it when a save begins ("began pid began
version") and when it has stored ("saved pid began ended version final"), so a
test can see which process saved when, whether two ever overlapped, and time a
kill against a save under way.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from chat.store import Store, open_store

from livestate import LiveState


class Save(NamedTuple):
    """One call of on_persist that returned."""

    key: str
    version: int
    final: bool
    items: int
    began: float
    ended: float


@dataclass
class Recorder:
    """The store of the journals of this process, with what the tests look at."""

    store: Store
    saves: list[Save] = field(default_factory=list)
    calls: int = 0  # on_persist calls, failed ones included
    active: int = 0
    overlaps: int = 0  # calls that began while another was running
    fail: int = 0  # how many of the next calls raise
    delay: float = float(os.environ.get("JOURNAL_DELAY", "0"))  # each call waits, then saves
    log: str | None = os.environ.get("JOURNAL_SAVES")

    async def save(
        self, spec: str, key: str, state: Mapping[str, Any], version: int, final: bool
    ) -> None:
        """What Journal.on_persist does: note, maybe fail or wait, then store."""
        began = time.time()
        if self.log:
            await asyncio.to_thread(_append, self.log, f"began {os.getpid()} {began} {version}\n")
        self.calls += 1
        self.active += 1
        if self.active > 1:
            self.overlaps += 1
        try:
            if self.fail:
                self.fail -= 1
                raise ConnectionError("the store is down (on purpose)")
            if self.delay:
                await asyncio.sleep(self.delay)
            await self.store.save(spec, key, version, state)
        finally:
            self.active -= 1
        ended = time.time()
        self.saves.append(Save(key, version, final, len(state.get("items", ())), began, ended))
        if self.log:
            line = f"saved {os.getpid()} {began} {ended} {version} {int(final)}\n"
            await asyncio.to_thread(_append, self.log, line)

    def saved(self, key: str) -> list[Save]:
        """The saves of `key`, in order."""
        return [save for save in self.saves if save.key == key]


def _append(path: str, line: str) -> None:
    with open(path, "a") as log:  # one short line: an append is atomic
        log.write(line)


_recorder: Recorder | None = None


def recorder() -> Recorder:
    """This process's recorder: the one `use_store` set, else one on JOURNAL_STORE."""
    global _recorder
    if _recorder is None:
        _recorder = Recorder(open_store(os.environ["JOURNAL_STORE"]))
    return _recorder


def use_store(url: str) -> Recorder:
    """Save journals to the store at `url` from now on, with a fresh recorder."""
    global _recorder
    _recorder = Recorder(open_store(url))
    return _recorder


class Journal(LiveState):
    """Items appended by writers; restored from the store when it starts again."""

    ttl = 0.5
    persist_interval = 0.1
    max_persist_failures = 3

    async def on_mount(self, key: str) -> dict[str, Any]:
        saved = await recorder().store.load(self.name, key)
        return {"items": saved[1]["items"] if saved else []}

    async def on_persist(
        self, key: str, state: Mapping[str, Any], version: int, final: bool
    ) -> None:
        await recorder().save(self.name, key, state, version, final)


class Diary(Journal):
    """A journal that lives 4 s after its last client: time for a dead saver's claim to
    lapse and for another node to take the saving up before it ends."""

    ttl = 4.0


class Relay(Journal):
    """A journal saved at most once a second: its debounce outlasts a renewal of a 1 s claim
    lease (a fifth of it), so a hand-over that waited for it would show."""

    persist_interval = 1.0


class Plain(LiveState):
    """The same journal without persistence, as the peer of the latency test."""

    ttl = 0.5

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"items": []}
