"""The least-privilege Redis ACL of docs/redis.md, exactly as written there, is enough."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import redis

from livestate import Change, LiveState, Node
from livestate.testing import ServerProcess

from ..support import eventually

DOCS = Path(__file__).resolve().parents[2] / "docs" / "redis.md"


class Least(LiveState):
    ttl = 5.0

    def on_mount(self, key: str) -> dict[str, Any]:
        return {"n": 0, "log": []}


def documented_acl() -> list[str]:
    """The ACL SETUSER command of docs/redis.md, split into words."""
    found: list[str] = re.findall(r"```acl\n(ACL SETUSER .*)\n```", DOCS.read_text())
    assert len(found) == 1, "docs/redis.md has one ACL SETUSER block"
    return found[0].split()


async def test_a_user_with_exactly_the_documented_acl_runs_a_node(
    server: ServerProcess,
) -> None:
    """Start, attach, every kind of write, presence, a second node, stop and a survey work."""
    words = documented_acl()
    assert words[:3] == ["ACL", "SETUSER", "livestate"]
    with redis.Redis.from_url(server.url) as admin:
        admin.execute_command(*words)
        admin.execute_command("ACL", "SETUSER", "livestate", ">secret")
        admin.execute_command("ACL", "SETUSER", "default", "off")  # nobody else gets in
    url = f"redis://livestate:secret@127.0.0.1:{server.port}/0?lease=0.5"
    async with Node(url) as a, Node(url) as b:
        changes: list[Change] = []
        client = await a.attach(Least, "k", on_change=changes.append)
        await b.put(Least, "k", "x", {"y": [1, 2]})
        await b.append(Least, "k", "log", "hi", max_len=5)
        await b.increment(Least, "k", "n", 2)
        await b.update(Least, "k", "n", lambda n: n * 10)
        await b.delete(Least, "k", "x")
        await b.reset(Least, "k")
        await eventually(lambda: client.state == {"n": 0, "log": []} and len(changes) == 6)
        other = await b.attach(Least, "k")
        await other.track("ann", {"typing": True})  # presence: join, listing, then a sweep
        assert await a.presence(Least, "k") == {"ann": [{"typing": True}]}
        await other.detach()
        await eventually(lambda: not client.presence)
        survey = await a.survey()
        assert [(s.spec, s.key) for s in survey.states] == [("Least", "k")]
        await b.stop(Least, "k")
        await eventually(lambda: not client.attached)
