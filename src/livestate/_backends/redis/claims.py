"""Persistence claims on Redis: which node saves each live state (`on_persist`).

The claim is the key `ls:{<spec>:<key>}:save`, taken, renewed and let go by
lua/save.lua beside the live state's other keys. `ls:saving` lists the claims,
scored by when each lapses (ms), so that a node finds the live states nobody
saves any more (`orphans`: their saver died, or let go and nobody claimed them).
It is one key for all live states, not under a hash tag, so it is kept by
separate commands beside the script; an entry goes when a claim finds it ended.
"""

from __future__ import annotations

import time

from ..._changes import StateId
from .dispatch import Dispatcher
from .scripts import declared


async def claim(
    dispatcher: Dispatcher, id: StateId, node: str, lease: float
) -> tuple[bool, str | None, int, int]:
    """Claim (or renew) the saving of `id` for `node`, for `lease` seconds: whether it
    holds the claim, and the live state's epoch, version and holders (None, 0, 0 when
    the live state has ended).

    Raises BackendUnavailableError or BackendError if the server does not take it.
    """
    prefix = dispatcher.names.state(id)
    saving = dispatcher.names.key("saving")
    keys = (*declared(prefix, ""), f"{prefix}:save")
    reply = await dispatcher.run("save", id, keys, "claim", node, max(1, int(lease * 1000)))
    if reply[0] != "ok":
        await dispatcher.call(saving, "ZREM", saving, prefix, doing=f"forget the claim on {id}")
        return reply[1] == 1, None, 0, 0
    held = reply[1] == 1
    if held:
        lapses = int((time.time() + lease) * 1000)
        await dispatcher.call(
            saving, "ZADD", saving, lapses, prefix, doing=f"list the claim on {id}"
        )
    return held, reply[2], int(reply[3]), int(reply[4])


async def release(dispatcher: Dispatcher, id: StateId, node: str) -> None:
    """Let go of `node`'s claim on `id`.

    Raises BackendUnavailableError or BackendError if the server does not take it.
    """
    prefix = dispatcher.names.state(id)
    keys = (*declared(prefix, ""), f"{prefix}:save")
    # Its entry in `ls:saving` stays: if no node claims the live state within a lease,
    # one takes it up as an orphan; one that finds it ended removes the entry.
    await dispatcher.run("save", id, keys, "release", node, 0)


async def orphans(dispatcher: Dispatcher, limit: int) -> list[StateId]:
    """Up to `limit` live states whose claim lapsed.

    Raises BackendUnavailableError or BackendError if the server does not answer.
    """
    now = int(time.time() * 1000)
    saving = dispatcher.names.key("saving")
    found = await dispatcher.call(
        saving, "ZRANGE", saving, "-inf", now, "BYSCORE", "LIMIT", 0, limit,
        doing="list the live states nobody saves",
    )  # fmt: skip
    return [StateId(*dispatcher.names.parse(prefix)) for prefix in found]
