"""Opening a live state on Redis: attach to it, or start it, with on_mount run once.

open.lua attaches to a running live state, or takes the start lock (`:o`) when
there is none; the node that holds the lock runs on_mount, renewing the lock
every third of `LOCK` meanwhile, and writes the state with init.lua. Others wait
for that state rather than run on_mount twice; if the lock lapses and another node
starts the live state first, the late one takes theirs.
"""

from __future__ import annotations

import asyncio
import secrets

from ..._changes import StateId
from ..._exceptions import LiveStateError
from ..._retry import Backoff, delay
from ..base import MountFunction, Snapshot
from .codec import encode_state, ttl_args
from .dispatch import Dispatcher
from .replies import layout_error, snapshot
from .scripts import Keys, declared
from .transport import Log

LOCK = 3.0
"""Seconds the start lock lasts; renewed every third of that while on_mount runs."""

WAITING = Backoff.exponential(0.002, 0.05)
"""How long to wait before each new look at a live state another node is starting."""


async def open_state(
    dispatcher: Dispatcher,
    id: StateId,
    mount: MountFunction,
    node: str,
    hold: bool,
    lease: float,
    log: Log,
) -> Snapshot:
    """The live state `id` as it is, started with `mount` if it is not running; with
    `hold`, `node` holds it for `lease` seconds (the heartbeat renews that).

    Raises what `mount` raises, BackendError for data of another release's layout,
    and BackendUnavailableError if the server does not answer in time.
    """
    keys = declared(dispatcher.names.state(id), "open")
    hold_flag = "1" if hold else "0"
    token = secrets.token_hex(8)
    waits = 0
    while True:
        reply = await dispatcher.run(
            "open", id, keys, node, hold_flag, int(lease * 1000), token, int(LOCK * 1000)
        )
        status = reply[0]
        if status == "ok":
            return snapshot(reply)
        if status == "layout":
            raise layout_error(id, reply[1], dispatcher.transport.server)
        if status == "wait":
            # Another node runs on_mount: wait for its state rather than run it twice.
            waits += 1
            await asyncio.sleep(delay(WAITING, waits))
            continue
        started = await _mount(dispatcher, id, keys, mount, node, hold_flag, token, lease, log)
        if started is not None:
            return started


async def _mount(
    dispatcher: Dispatcher,
    id: StateId,
    keys: Keys,
    mount: MountFunction,
    node: str,
    hold: str,
    token: str,
    lease: float,
    log: Log,
) -> Snapshot | None:
    """Run on_mount while holding the start lock and store it; None if another won."""
    run = dispatcher.run
    renew = asyncio.get_running_loop().create_task(_renew_lock(dispatcher, id, token, log))
    try:
        mounted = await mount()
    except BaseException:
        renew.cancel()
        try:
            await run("lock", id, declared(dispatcher.names.state(id), "lock"), "unlock", token, 0)
        except Exception:
            pass  # the lock expires on its own within LOCK seconds
        raise
    renew.cancel()
    epoch = secrets.token_hex(8)
    total, state = encode_state(mounted.state, dispatcher.names.state(id))
    limits = mounted.limits
    reply = await run(
        "init", id, keys, node, hold, int(lease * 1000), token, epoch,
        mounted.acl.group, mounted.acl.public, *ttl_args(mounted.ttl),
        limits.max_value_bytes, limits.max_state_bytes, total, mounted.declared, *state,
    )  # fmt: skip
    if reply[0] != "ok":
        return None  # our lock ran out and another node started it: use theirs
    return Snapshot(
        dict(mounted.state), int(reply[1]), epoch, mounted.acl, mounted.ttl, mounted.declared
    )


async def _renew_lock(
    dispatcher: Dispatcher,
    id: StateId,
    token: str,
    log: Log,
) -> None:
    keys = declared(dispatcher.names.state(id), "lock")
    while True:
        await asyncio.sleep(LOCK / 3)
        try:
            await dispatcher.run("lock", id, keys, "extend", token, int(LOCK * 1000))
        except LiveStateError as error:
            log.debug("%s: could not renew its start lock (%s)", id, error)
