"""A Hypothesis state machine: random clients and writes against a plain dict model."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import livestate
from livestate import LiveState, MemoryBackend, Node

KEYS = st.sampled_from(["a", "b", "c"])
PROPS = st.sampled_from(["x", "y", "list"])
SCALARS = st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=5)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)


class Modelled(LiveState):
    ttl = None

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"list": [], "key": key}


class LiveStateMachine(RuleBasedStateMachine):
    """After each step, every attached client's state and version equal the model's."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.node = Node(backend=MemoryBackend())
        self.model: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, int] = {}  # the version each key's clients must show
        self.clients: list[livestate.Client] = []

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        self.run(self.node.aclose())
        self.loop.close()

    def ensure(self, key: str) -> dict[str, Any]:
        """The model of `key`, starting the live state (and learning its first version)."""
        if key not in self.model:
            self.model[key] = {"list": [], "key": key}
            observer = self.run(self.node.attach(Modelled, key))
            self.versions[key] = observer.version
        return self.model[key]

    def write(self, key: str, call: Any, effect: Any) -> None:
        """Run a write the model says is valid: it must succeed and raise the version by one."""
        self.run(call)
        effect(self.model[key])
        self.versions[key] += 1

    @rule(key=KEYS)
    def attach(self, key: str) -> None:
        self.ensure(key)
        self.clients.append(self.run(self.node.attach(Modelled, key)))

    @precondition(lambda self: self.clients)
    @rule(index=st.integers(0, 100))
    def detach(self, index: int) -> None:
        self.run(self.clients.pop(index % len(self.clients)).detach())

    @rule(key=KEYS, prop=PROPS, value=VALUES)
    def put(self, key: str, prop: str, value: Any) -> None:
        self.ensure(key)
        self.write(
            key, self.node.put(Modelled, key, prop, value), lambda s: s.__setitem__(prop, value)
        )

    @rule(key=KEYS, prop=PROPS)
    def delete(self, key: str, prop: str) -> None:
        if prop not in self.ensure(key):
            return
        self.write(key, self.node.delete(Modelled, key, prop), lambda s: s.pop(prop))

    @rule(key=KEYS)
    def reset(self, key: str) -> None:
        def effect(state: dict[str, Any]) -> None:
            state.clear()
            state.update({"list": [], "key": key})

        self.ensure(key)
        self.write(key, self.node.reset(Modelled, key), effect)

    @rule(key=KEYS, prop=PROPS, item=SCALARS, max_len=st.none() | st.integers(1, 4))
    def append(self, key: str, prop: str, item: Any, max_len: int | None) -> None:
        def effect(state: dict[str, Any]) -> None:
            items = [*state.get(prop, []), item]
            state[prop] = items[-max_len:] if max_len else items

        if not isinstance(self.ensure(key).get(prop, []), list):
            return
        self.write(key, self.node.append(Modelled, key, prop, item, max_len=max_len), effect)

    @rule(key=KEYS, prop=PROPS, by=st.integers(-5, 5))
    def increment(self, key: str, prop: str, by: int) -> None:
        current = self.ensure(key).get(prop, 0)
        if type(current) is not int:
            return
        self.write(
            key,
            self.node.increment(Modelled, key, prop, by),
            lambda s: s.__setitem__(prop, current + by),
        )

    @invariant()
    def clients_match_the_model(self) -> None:
        for client in self.clients:
            assert dict(client.state) == self.model[client.key]
            assert client.version == self.versions[client.key]


LiveStateMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None
)
test_clients_follow_the_model = LiveStateMachine.TestCase
