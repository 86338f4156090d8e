"""The receiving side of the Redis backend: each live state's channel and its listeners.

A live state's channel (`ls:{<spec>:<key>}:c`) is subscribed while it has local
listeners (its replicas on this node). What the transport hears comes here
(`events()`): each message is decoded and handed to the listeners, a notice is
passed on, and when messages may have been missed the listeners resync.
Ordering what arrives is the replicas' job (_replica.py), not this module's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..._changes import StateId
from ..._values import JSON
from ..base import Backend, Listener, Message, published
from .codec import Names, decode, decode_op
from .transport import Events


@dataclass(slots=True, eq=False)
class Subscription:
    """The local listeners of one live state's channel."""

    name: str
    listeners: list[Listener] = field(default_factory=list)
    recheck: bool = False  # a snapshot was read before the server confirmed: resync then


class Channels:
    """The subscriptions of one backend, by live state and by channel name; logs and
    counts through `backend`'s log and metrics."""

    def __init__(self, backend: Backend, names: Names) -> None:
        self._backend = backend
        self._names = names
        self._by_id: dict[StateId, Subscription] = {}
        self._by_name: dict[str, Subscription] = {}

    def events(self) -> Events:
        """What a transport calls as things arrive."""
        return Events(self.received, self.confirmed, self.resynced, self.reconnected)

    def get(self, id: StateId) -> Subscription | None:
        """The subscription of live state `id`, if it has local listeners."""
        return self._by_id.get(id)

    def add(self, id: StateId, listener: Listener) -> Subscription | None:
        """Add a listener of `id`; the new Subscription if it is the first one, else None."""
        subscription = self._by_id.get(id)
        created = subscription is None
        if subscription is None:
            name = self._names.channel(self._names.state(id))
            subscription = self._by_id[id] = self._by_name[name] = Subscription(name)
        subscription.listeners.append(listener)
        return subscription if created else None

    def remove(self, id: StateId, listener: Listener) -> Subscription | None:
        """Remove a listener of `id`; its Subscription if that was the last one, else None."""
        subscription = self._by_id.get(id)
        if subscription is None:
            return None
        if listener in subscription.listeners:
            subscription.listeners.remove(listener)
        if subscription.listeners:
            return None
        del self._by_id[id]
        self._by_name.pop(subscription.name, None)
        return subscription

    def clear(self) -> None:
        """Forget every subscription (the backend is closing)."""
        self._by_id.clear()
        self._by_name.clear()

    def received(self, channel: str, data: Any) -> None:
        """One published message: hand it to the listeners of its live state."""
        subscription = self._by_name.get(channel)
        if subscription is None:
            return
        listeners = subscription.listeners
        try:
            parts = data.split("\n", 4)
            epoch = parts[0]
            version = int(parts[1])
            if len(parts) == 5 and parts[2][:1] == "[":
                # A write: epoch, version, its head (a JSON array), the writer's clock, value.
                if len(listeners) == 1:  # the usual case: one replica per live state
                    wanted = listeners[0].wants(epoch, version)
                else:
                    wanted = any(each.wants(epoch, version) for each in listeners)
                if not wanted:
                    return  # seen already (this node's own write, applied when it returned)
                op = decode_op(parts[2], parts[4])
                message = published(epoch, version, op, int(parts[3]) / 1e6)
            elif parts[2] == "many":
                for message in _writes(listeners, epoch, version, data):
                    self.deliver(subscription, message)
                return
            elif parts[2] == "notice":
                kind, text = parts[3:]
                self._notice(subscription, kind, decode(text))
                return
            elif len(parts) == 3 and parts[2] == "stop":
                message = Message(epoch, version, "stopped")
            elif len(parts) == 3 and parts[2] == "start":
                message = Message(epoch, version, "started")
            else:
                raise ValueError(parts[2])
        except Exception:
            # From a newer release, or damaged: this live state alone loads a snapshot.
            self._backend.log.warning(
                "%s: a message livestate cannot read (%.80r); resyncing", channel, data
            )
            self.resync(subscription, "unreadable")
            return
        self.deliver(subscription, message)

    def deliver(self, subscription: Subscription, message: Message) -> None:
        """Hand `message` to each listener of `subscription`."""
        # A copy: a listener may unsubscribe (a client detaching on `stopped`) while we loop.
        listeners = subscription.listeners
        for listener in (listeners[0],) if len(listeners) == 1 else tuple(listeners):
            try:
                listener.receive(message)
            except Exception:
                self._backend.log.exception("%s: a replica raised on a message", subscription.name)

    def _notice(self, subscription: Subscription, kind: str, value: JSON) -> None:
        for listener in tuple(subscription.listeners):
            try:
                listener.notice(kind, value)
            except Exception:
                self._backend.log.exception("%s: a replica raised on a notice", subscription.name)

    def resync(self, subscription: Subscription, cause: str) -> None:
        """Have every listener of `subscription` load its live state again."""
        subscription.recheck = False
        for listener in tuple(subscription.listeners):
            listener.resync(cause)

    def confirmed(self, channel: str) -> None:
        """The server confirmed a subscription: resync if a snapshot was read before."""
        subscription = self._by_name.get(channel)
        if subscription is not None and subscription.recheck:
            self.resync(subscription, "reconnect")

    def resynced(self, channel: str) -> None:
        """Messages of `channel` may have been missed: its listeners resync."""
        subscription = self._by_name.get(channel)
        if subscription is not None:
            self.resync(subscription, "reconnect")

    def reconnected(self) -> None:
        """The pub/sub connection was opened again."""
        if self._backend.metrics is not None:
            self._backend.metrics.reconnected()


def _writes(listeners: list[Listener], epoch: str, first: int, data: str) -> list[Message]:
    """The writes of one message of several (lua/write.lua's `announce`): `epoch \n first
    \n many`, then head, clock and value of each, at versions first, first + 1, ... Those
    every listener has seen already (this node's own, applied as they arrived or returned)
    are skipped undecoded. Raises ValueError if the message is not whole."""
    lines = data.split("\n")
    count, rest = divmod(len(lines) - 3, 3)
    if rest or count < 2:
        raise ValueError("many")
    if not any(each.wants(epoch, first + count - 1) for each in listeners):
        return []
    skip = 0
    while not any(each.wants(epoch, first + skip) for each in listeners):
        skip += 1
    return [
        published(epoch, first + n, decode_op(lines[at], lines[at + 2]), int(lines[at + 1]) / 1e6)
        for n, at in ((n, 3 + 3 * n) for n in range(skip, count))
    ]
