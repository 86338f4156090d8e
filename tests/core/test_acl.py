"""The ACL: group (attached clients) versus public callers, on every operation."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import livestate
from livestate import InvalidValueError, LiveState, Mount, PermissionDeniedError

PERMISSIONS = ["read", "write", "delete", "reset"]
Call = Callable[[type[LiveState], Any], Awaitable[Any]]

# Each operation, once through a client (group) and once through the class (public).
GROUP_CALLS: dict[str, Call] = {
    "write": lambda spec, client: client.put("x", 2),
    "delete": lambda spec, client: client.delete("x"),
    "reset": lambda spec, client: client.reset(),
}
PUBLIC_CALLS: dict[str, Call] = {
    "read": lambda spec, client: spec.get("k"),
    "write": lambda spec, client: spec.put("k", "x", 2),
    "delete": lambda spec, client: spec.delete("k", "x"),
    "reset": lambda spec, client: spec.reset("k"),
}


def make_spec(group: list[str], public: list[str]) -> type[LiveState]:
    class ACLGuarded(LiveState):
        acl = {"group": group, "public": public}

        def on_mount(self, key: str) -> dict[str, Any]:
            return {"x": 1}

    return ACLGuarded


@pytest.mark.parametrize("granted", PERMISSIONS)
@pytest.mark.parametrize("attempted", ["write", "delete", "reset"])
async def test_public_callers_get_only_what_the_acl_grants(
    node: livestate.Node, granted: str, attempted: str
) -> None:
    """A public call succeeds only with its permission; a denied one changes nothing."""
    spec = make_spec(group=["read"], public=[granted])
    await spec.start("k")
    before = await node.get(spec, "k", role="group")
    call = PUBLIC_CALLS[attempted](spec, None)
    if granted == attempted:
        await call
    else:
        verb = {"write": "write 'x' of", "delete": "delete 'x' of", "reset": "reset"}
        with pytest.raises(PermissionDeniedError) as caught:
            await call
        # The same sentence on every backend, word for word.
        assert str(caught.value) == (
            f"A public caller may not {verb[attempted]} ACLGuarded 'k': the ACL does not grant "
            f"'{attempted}' to 'public'; attach a client to make the call as a group member, "
            "or grant it in the ACL."
        )
        assert await node.get(spec, "k", role="group") == before


@pytest.mark.parametrize("granted", PERMISSIONS)
async def test_public_read_needs_read(node: livestate.Node, granted: str) -> None:
    """get by a public caller needs `read`, and the error says how to get it."""
    spec = make_spec(group=["read"], public=[granted])
    await spec.start("k")
    if granted == "read":
        assert await spec.get("k") == {"x": 1}
    else:
        with pytest.raises(PermissionDeniedError, match=r"attach a client .* or grant it"):
            await spec.get("k")


@pytest.mark.parametrize("granted", ["write", "delete", "reset"])
@pytest.mark.parametrize("attempted", ["write", "delete", "reset"])
async def test_group_members_get_only_what_the_acl_grants(
    node: livestate.Node, granted: str, attempted: str
) -> None:
    """A call through a client succeeds only with the group's permission."""
    spec = make_spec(group=["read", granted], public=[])
    async with await spec.attach("k") as client:
        first = client.version
        call = GROUP_CALLS[attempted](spec, client)
        if granted == attempted:
            await call
        else:
            with pytest.raises(
                PermissionDeniedError, match=r"An attached client \(group\) may not"
            ):
                await call
            assert client.version == first and dict(client.state) == {"x": 1}


async def test_update_needs_read_and_write(node: livestate.Node) -> None:
    """update reads the value, so a group with only write may not update."""
    spec = make_spec(group=["read", "write"], public=["write"])
    async with await spec.attach("k") as client:
        assert await client.update("x", lambda v: v + 1) == 2
    with pytest.raises(PermissionDeniedError):
        await spec.update("k", "x", lambda v: v + 1)


async def test_attach_needs_group_read(node: livestate.Node) -> None:
    """A group without read may not attach, and nothing is left holding the live state."""
    spec = make_spec(group=["write"], public=["read"])
    with pytest.raises(PermissionDeniedError, match="may not attach to"):
        await spec.attach("k")
    assert node._replicas == {}


async def test_stop_needs_delete(node: livestate.Node) -> None:
    """A public caller without delete may not stop a live state."""
    spec = make_spec(group=["read"], public=["read", "write", "reset"])
    await spec.start("k")
    with pytest.raises(PermissionDeniedError, match="may not stop"):
        await spec.stop("k")
    assert await spec.get("k") == {"x": 1}


async def test_all_grants_every_permission(node: livestate.Node) -> None:
    """'all' is read, write, delete and reset."""

    class ACLOpen(LiveState):
        acl = {"group": "all", "public": "all"}

    await ACLOpen.start("k")
    await ACLOpen.put("k", "x", 1)
    await ACLOpen.delete("k", "x")
    await ACLOpen.reset("k")
    assert await ACLOpen.get("k") == {}
    await ACLOpen.stop("k")


async def test_per_key_acl_from_mount_is_enforced_by_every_node(
    make_node: Callable[[], Awaitable[livestate.Node]],
) -> None:
    """An ACL that on_mount returns for one key holds on every node, for that key only."""

    class ACLRooms(LiveState):
        def on_mount(self, key: str) -> Mount:
            if key == "announcements":
                return Mount(state={}, acl={"group": ["read"], "public": ["read"]})
            return Mount(state={})

    a, b = await make_node(), await make_node()
    await a.start(ACLRooms, "announcements")
    await a.start(ACLRooms, "chat")
    await b.put(ACLRooms, "chat", "x", 1)
    client = await b.attach(ACLRooms, "announcements")
    for call in (b.put(ACLRooms, "announcements", "x", 1), client.put("x", 1), client.reset()):
        with pytest.raises(PermissionDeniedError):
            await call
    await client.detach()


@pytest.mark.parametrize(
    ("acl", "message"),
    [
        ({"group": "all"}, "exactly the keys 'group' and 'public'"),
        ("all", "must be a dict"),
        ({"group": "all", "public": "some"}, "use 'all' or a list"),
        ({"group": ["read", "fly"], "public": []}, "unknown permission 'fly'"),
    ],
)
def test_a_bad_acl_is_rejected_when_the_spec_is_defined(acl: Any, message: str) -> None:
    """A malformed ACL fails at class definition with a valid example in the message."""
    with pytest.raises(InvalidValueError, match=message) as caught:
        type("Bad", (LiveState,), {"acl": acl})
    assert "{'group': 'all', 'public': ['read']}" in str(caught.value)


async def test_a_bad_acl_from_on_mount_is_rejected_at_mount(node: livestate.Node) -> None:
    """A malformed per-key ACL fails the attach, naming the live state."""

    class ACLBadMount(LiveState):
        def on_mount(self, key: str) -> Mount:
            return Mount(state={}, acl={"group": "everything", "public": []})

    with pytest.raises(InvalidValueError, match="The ACL of ACLBadMount 'k'"):
        await ACLBadMount.attach("k")
