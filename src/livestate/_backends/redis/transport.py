"""The one interface between the Redis backend and a deployment: a `Transport`.

The backend sends commands and subscribes channels through a transport and
knows nothing of the deployment behind it. Three implement it:

- `standalone.StandaloneTransport`: one server at a fixed address, over
  `resp.Pipe` (which also follows a managed service's endpoint: a reply that
  says the node is no longer the primary drops the connection, so the next one
  resolves the name again), and one pub/sub connection (`subscriber.Subscriber`).
- `standalone.SentinelTransport`: the same to the primary the Sentinels name
  now, over `sentinel.PrimaryPipe`; both connections leave a primary as soon as
  the Sentinels announce another.
- `cluster.ClusterTransport`: a Redis Cluster through `topology.Router`, by the
  slot of each command's key, with a sharded pub/sub connection per shard.

`connect.open_transport` picks one for a URL (a redis:// server that answers
CLUSTER MYID is a cluster). What arrives on the pub/sub side is told to the
`Events` the backend gave it.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

Log = logging.Logger | logging.LoggerAdapter[logging.Logger]
"""Where a transport logs: the backend's log (a node's adapter names the node)."""


@dataclass(frozen=True)
class Events:
    """What a transport tells the backend about its subscriptions, as they happen.

    `message(channel, data)`: a message on a subscribed channel. `confirmed(channel)`:
    the server confirmed a new subscription; messages published from now on arrive.
    `resync(channel)`: the channel's messages may have been missed (it is subscribed
    again after a lost connection, a moved slot or a failover, or could not be
    subscribed), so read its state again; a renewed subscription is told by this alone.
    `reconnected()`: a lost pub/sub connection was opened again.
    """

    message: Callable[[str, str], None]
    confirmed: Callable[[str], None]
    resync: Callable[[str], None]
    reconnected: Callable[[], None]


class Transport(ABC):
    """Commands and subscriptions to one deployment: a server, a Sentinel service or a
    cluster. `server` names it in messages ("The Redis server at {server} …")."""

    server: str

    @abstractmethod
    async def start(self) -> None:
        """Get ready for calls (a cluster reads its slot map).

        Raises BackendUnavailableError if the deployment cannot be reached in time.
        """

    @abstractmethod
    def listen(self) -> None:
        """Open the pub/sub side (in the background; it reconnects until `aclose`)."""

    @abstractmethod
    async def aclose(self) -> None:
        """Close every connection; later calls raise RuntimeError."""

    @abstractmethod
    def call(self, key: str | int, *command: Any) -> Awaitable[Any]:
        """Send `command` to the primary that holds `key` (a key, or a cluster slot);
        await its reply.

        Raises BackendUnavailableError if no primary took it within the timeout, or
        if the connection dropped after it left (it may have run); ReplyError for an
        error reply; RuntimeError once closed.
        """

    @abstractmethod
    async def call_and_wait(
        self, key: str | int, command: tuple[Any, ...], replicas: int, milliseconds: int
    ) -> tuple[Any, int]:
        """`call(key, *command)`, then WAIT `replicas` `milliseconds` on the connection it
        ran on; the reply, and how many replicas confirmed they have it (0 when the
        confirmation cannot count: the reply was an error, or the connection changed).

        Raises as `call` does.
        """

    @abstractmethod
    async def load_script(self, source: str) -> str:
        """Load a Lua script on every primary (and on any that later lacks it); its SHA1.

        Raises as `call` does.
        """

    @abstractmethod
    def primaries(self) -> list[str | int]:
        """One route to each primary, to pass to `call`: to SCAN every key."""

    @abstractmethod
    def subscribe(self, channel: str) -> None:
        """Subscribe `channel` (in the background): `Events.confirmed` follows once the
        server confirms it, `Events.resync` if that fails or is lost."""

    @abstractmethod
    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving `channel`'s messages."""

    @abstractmethod
    def subscribed(self, channel: str) -> bool:
        """Whether the server confirmed `channel`'s subscription, and has kept it since."""
