"""Presence against a model: random joins, meta updates, identity changes and leaves on
two nodes; every client, and a fresh read, list the same presences in the same order."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import livestate
from livestate import Change, LiveState, MemoryBackend, Node

from ..support import MakeNode, eventually, in_order

IDENTITIES = st.sampled_from(["ann", "bob", "cy"])


class Modelled(LiveState):
    name = "PresenceModelled"
    ttl = None

    def on_mount(self, key: str) -> dict[str, Any]:
        return {}


def expected(shown: dict[int, tuple[str, Any, int]]) -> list[tuple[str, list[Any]]]:
    """The presence listing the model predicts: identities in the order their earliest
    present client joined, each with its metas in join order."""
    listing: dict[str, list[Any]] = {}
    for identity, meta, _ in sorted(shown.values(), key=lambda present: present[2]):
        listing.setdefault(identity, []).append(meta)
    return list(listing.items())


def listed(presence: Any) -> list[tuple[str, list[Any]]]:
    return [(identity, list(metas)) for identity, metas in presence.items()]


class PresenceMachine(RuleBasedStateMachine):
    """On memory:// (writes reach every replica before they return), after each step."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        backend = MemoryBackend()
        self.nodes = [Node(backend=backend), Node(backend=backend)]
        self.clients: list[livestate.Client] = []
        self.shown: dict[int, tuple[str, Any, int]] = {}  # client index -> identity, meta, seq
        self.joins = 0

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        for node in self.nodes:
            self.run(node.aclose())
        self.loop.close()

    @rule(node=st.integers(0, 1))
    def attach(self, node: int) -> None:
        self.clients.append(self.run(self.nodes[node].attach(Modelled, "room")))

    @precondition(lambda self: self.clients)
    @rule(data=st.data(), identity=IDENTITIES, meta=st.integers(0, 3))
    def track(self, data: st.DataObject, identity: str, meta: int) -> None:
        index = data.draw(st.integers(0, len(self.clients) - 1))
        client = self.clients[index]
        if not client.attached:
            return
        self.run(client.track(identity, meta))
        before = self.shown.get(index)
        if before is not None and before[0] == identity:
            self.shown[index] = (identity, meta, before[2])  # a meta update keeps its place
        else:
            self.joins += 1
            self.shown[index] = (identity, meta, self.joins)

    @precondition(lambda self: self.clients)
    @rule(data=st.data())
    def untrack(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(0, len(self.clients) - 1))
        if self.clients[index].attached:
            self.run(self.clients[index].untrack())
            self.shown.pop(index, None)

    @precondition(lambda self: self.clients)
    @rule(data=st.data())
    def detach(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(0, len(self.clients) - 1))
        self.run(self.clients[index].detach())
        self.shown.pop(index, None)

    @invariant()
    def every_client_and_a_fresh_read_list_the_model(self) -> None:
        want = expected(self.shown)
        for client in self.clients:
            if client.attached:
                assert listed(client.presence) == want
        if any(client.attached for client in self.clients):
            assert listed(self.run(self.nodes[1].presence(Modelled, "room"))) == want


PresenceMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
test_presence_matches_the_model = PresenceMachine.TestCase


@pytest.mark.parametrize("seed", [1, 2])
async def test_random_concurrent_presence_converges_in_one_order(
    seed: int, make_node: MakeNode, backend_name: str
) -> None:
    """Two nodes, eight clients, 150 random tracks, identity changes, untracks and
    re-attaches made concurrently: afterwards every client and a fresh read list the same
    presences in the same order, and each client's changes came in version order."""
    rng = random.Random(seed)
    nodes = [await make_node(), await make_node()]
    seen: list[list[Change]] = [[] for _ in range(8)]

    async def attach(n: int) -> livestate.Client:
        seen[n] = []
        return await nodes[n % 2].attach(Modelled, "many", on_change=seen[n].append)

    clients = [await attach(n) for n in range(8)]
    for _ in range(15):
        steps = []
        for _ in range(10):
            n = rng.randrange(len(clients))
            roll = rng.random()
            if roll < 0.7:
                steps.append(clients[n].track(rng.choice(["ann", "bob", "cy"]), rng.randrange(4)))
            elif roll < 0.85:
                steps.append(clients[n].untrack())
        await asyncio.gather(*steps)
        if rng.random() < 0.3:
            n = rng.randrange(len(clients))
            await clients[n].detach()
            assert in_order(seen[n])
            clients[n] = await attach(n)
    truth = listed(await nodes[0].presence(Modelled, "many"))
    await eventually(lambda: all(listed(client.presence) == truth for client in clients), 2.0)
    late = await nodes[1].attach(Modelled, "many")
    assert listed(late.presence) == truth
    assert all(in_order(changes) for changes in seen)
