"""The write API is offered on six surfaces; they must agree: same operations, same
parameters, same defaults (a surface only adds what locates the live state, or drops what
it knows already)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from livestate import Client, LiveState, Node, sync

pyview = pytest.importorskip("livestate.pyview")

OPERATIONS = ("put", "delete", "reset", "append", "increment", "update", "call")
PYVIEW_NAMES = {"put": "live_assign", "call": "live_call", "reset": "live_reset"}

# What each surface adds in front (it locates the live state) and what it leaves out.
SURFACES: dict[str, tuple[Callable[[str], Any], tuple[str, ...], frozenset[str]]] = {
    "LiveState": (lambda op: getattr(LiveState, op), ("key",), frozenset({"role"})),
    "Client": (lambda op: getattr(Client, op), ("self",), frozenset({"role", "caller"})),
    "SyncNode": (
        lambda op: getattr(sync.SyncNode, op),
        ("self", "spec", "key"),
        frozenset({"role"}),
    ),
    "sync": (lambda op: getattr(sync, op), ("spec", "key"), frozenset({"role"})),
    "pyview": (
        lambda op: getattr(pyview, PYVIEW_NAMES.get(op, f"live_{op}")),
        ("socket",),
        frozenset({"role", "caller"}),
    ),
}


def parameters(function: Callable[..., Any], skip: int) -> list[tuple[str, object, object]]:
    """(name, kind, default) of each parameter after the first `skip`."""
    return [
        (p.name, p.kind, p.default)
        for p in list(inspect.signature(function).parameters.values())[skip:]
    ]


def reference(op: str, leave_out: frozenset[str]) -> list[tuple[str, object, object]]:
    """Node's parameters for `op`, after (spec, key), minus what a surface leaves out."""
    return [p for p in parameters(getattr(Node, op), 3) if p[0] not in leave_out]


@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("op", OPERATIONS)
def test_each_surface_offers_each_write_with_the_same_parameters(surface: str, op: str) -> None:
    """Every write is on every surface, with Node's parameters (names, kinds, defaults)."""
    find, front, leave_out = SURFACES[surface]
    function = find(op)
    names = [p.name for p in inspect.signature(function).parameters.values()]
    assert tuple(names[: len(front)]) == front or (surface == "LiveState" and names[0] == "key")
    skip = len(front) if surface != "LiveState" else 1
    mine = [p for p in parameters(function, skip) if p[0] != "as_"]
    assert mine == reference(op, leave_out), f"{surface}.{op} differs from Node.{op}"


def test_the_reference_itself_has_what_the_surfaces_share() -> None:
    """The comparison is not empty-handed: Node's writes name their arguments, caller and id."""
    append = ["prop", "item", "max_len", "role", "caller", "write_id"]
    assert [p[0] for p in reference("append", frozenset())] == append
    call = ["action", "args", "caller", "write_id"]
    assert [p[0] for p in reference("call", frozenset({"role"}))] == call
