"""Every command the Redis backend sends: its scripts by SHA, retried within the timeout,
and the boundary where the server's error replies become livestate errors.

A script call (`Dispatcher.run`) retries failures that pass (busy, loading, a
failover, a reconnect, a cluster moving slots) until the backend's `timeout` is
spent, loads the scripts again once if the server lost them (NOSCRIPT), and for
a write with `?replicas=` waits (WAIT) until that many replicas have it. A plain
command (`Dispatcher.call`) is sent once. Either way a ReplyError never leaves
here: `errors.translate` turns it into a LiveStateError that says what to do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from ..._changes import Op, StateId, describe
from ..._exceptions import BackendUnavailableError, LiveStateError
from ..._retry import Backoff, delay
from .codec import Names
from .errors import TRANSIENT, code, translate
from .resp import ReplyError
from .scripts import CACHED_KEYS, SCRIPTS, Keys, command_cached, command_now
from .transport import Transport

RETRYING = Backoff((0.01, 0.02, 0.05, 0.1, 0.2))
"""How long to wait before each retry of a call that failed in passing (busy, loading,
reconnecting)."""

WAIT_SHARE = 0.8
"""The part of a call's time left that WAIT may hold its connection for: WAIT blocks the
pipelined connection while it waits, and a connection whose oldest call waited the whole
timeout is dropped as stalled, so WAIT ends well before that."""


class Dispatcher:
    """Runs the backend's scripts and commands on `transport`.

    `sources` are the scripts by name (`scripts.load_sources`); `timeout` bounds each
    call, retries included; a write is acknowledged once `replicas` replicas have it;
    `failed(kind)` is told of each failure (an error code, or 'unavailable'); `names`
    says where the deployment's keys and channels are.
    """

    def __init__(
        self,
        transport: Transport,
        sources: Mapping[str, str],
        timeout: float,
        replicas: int,
        failed: Callable[[str], None],
        names: Names,
    ) -> None:
        self.transport = transport
        self.names = names  # the deployment's keys and channels on the server
        self._sources = sources
        self._timeout = timeout
        self._replicas = replicas
        self._failed = failed
        self._shas: dict[str, str] = {}

    async def load(self) -> None:
        """Load every script on every primary.

        Raises BackendUnavailableError or BackendError if that cannot be done.
        """
        transport = self.transport
        try:
            shas = await asyncio.gather(
                *(transport.load_script(self._sources[name]) for name in SCRIPTS)
            )
        except ReplyError as error:
            raise translate(error, transport.server, "load its scripts") from None
        self._shas = dict(zip(SCRIPTS, shas, strict=True))

    async def call(self, key: str | int, *command: Any, doing: str) -> Any:
        """Send one command to the primary of `key` and return its reply.

        Raises BackendUnavailableError if it did not take it in time, and the
        LiveStateError for an error reply (`doing` reads after "could not":
        "check its data layout").
        """
        try:
            return await self.transport.call(key, *command)
        except ReplyError as error:
            raise translate(error, self.transport.server, doing) from None

    async def run(
        self,
        script: str,
        id: StateId,
        keys: Keys,
        *args: Any,
        op: Op | None = None,
        write: bool = False,
        ids: tuple[int, ...] = (4,),
    ) -> Any:
        """Run one script by its SHA on `keys` (every one in the slot of the first).

        Failures that pass are retried until `timeout` is spent. For a `write`,
        args[4] is its id (ARGV[7]), or `ids` are where the ids of several writes
        are (lua/many.lua); a retry marks each with '+', and the script answers a
        retry of a write it already applied with the reply it gave then.
        Raises BackendUnavailableError when the time is spent, and the
        LiveStateError of any other error reply at once.
        """
        transport = self.transport
        replicas = self._replicas
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        attempt = 0
        reloaded = False
        failure: LiveStateError
        while True:
            try:
                sha = self._shas[script]
                if len(keys[0]) + len(keys[-1]) <= 2 * CACHED_KEYS:  # LK, if any, is last
                    command = command_cached(sha, keys, self.names) + args
                else:
                    command = command_now(sha, keys, self.names) + args
                if not write or not replicas:
                    return await transport.call(keys[0], *command)
                # Acknowledge only what a replica has too, so a failover cannot lose it.
                wait = max(1, int((deadline - loop.time()) * 1000 * WAIT_SHARE))
                reply, copies = await transport.call_and_wait(keys[0], command, replicas, wait)
                if type(reply) is not str or copies >= replicas:
                    return reply
                failure = BackendUnavailableError(
                    f"The Redis server at {transport.server} did not confirm that {replicas} "
                    f"replica(s) have the write to {_what(script, id, op)} within the "
                    "timeout; it may be lost if the primary fails. Retry, or lower ?replicas=."
                )
            except ReplyError as error:
                kind = code(error)
                if kind == "NOSCRIPT" and not reloaded:
                    # The server restarted, failed over, or SCRIPT FLUSH ran: load them again,
                    # once per call. A write's id stays as it was: the script never ran.
                    reloaded = True
                    await self.load()
                    continue
                failure = translate(error, transport.server, _what(script, id, op))
                self._failed(kind or "error")
                if kind not in TRANSIENT:
                    raise failure from None
            except BackendUnavailableError as error:
                self._failed("unavailable")
                failure = error
            attempt += 1
            pause = delay(RETRYING, attempt)
            if loop.time() + pause > deadline:
                raise failure from None
            if write and attempt == 1:
                # From now on, a retry (a caller's id is looked up from the start).
                marked = list(args)
                for at in ids:
                    if not marked[at].startswith("+"):
                        marked[at] = f"+{marked[at]}"
                args = tuple(marked)
            await asyncio.sleep(pause)


def _what(script: str, id: StateId, op: Op | None) -> str:
    """What a script does, for error messages: "write 'x' of Chat 'lobby'"."""
    if op is not None:
        return f"{describe(op)} {id}"
    verbs = {"open": "start or attach to", "init": "start", "read": "read", "stop": "stop"}
    return f"{verbs.get(script, 'keep its hold on')} {id}"
