"""Presence on a Valkey Cluster: joins and leaves on every shard reach the other node."""

from __future__ import annotations

from typing import Any

from livestate import LiveState, Node
from livestate._backends.redis.slots import key_slot
from livestate.testing import ClusterProcess

from ...support import eventually


class Gathering(LiveState):
    ttl = 30.0

    def on_mount(self, key: str) -> dict[str, Any]:
        return {}


async def test_presence_works_on_every_shard(cluster: ClusterProcess) -> None:
    """Six live states over the three primaries: a join on one node is listed by the
    other's client and by the server API, and a detach takes it away."""
    keys = [f"meet-{n}" for n in range(6)]
    assert len({cluster.owner(key_slot(f"ls:{{Gathering:{key}}}:m")) for key in keys}) == 3
    url = f"{cluster.url}?lease=1"
    async with Node(url) as a, Node(url) as b:
        watchers = [await a.attach(Gathering, key) for key in keys]
        guests = [await b.attach(Gathering, key) for key in keys]
        for n, guest in enumerate(guests):
            await guest.track(f"guest-{n}", {"n": n})
        await eventually(
            lambda: all(w.presence == {f"guest-{n}": [{"n": n}]} for n, w in enumerate(watchers))
        )
        assert [await a.presence(Gathering, key) for key in keys] == [
            {f"guest-{n}": [{"n": n}]} for n in range(6)
        ]
        for guest in guests:
            await guest.detach()
        await eventually(lambda: not any(w.presence for w in watchers))
