"""Persistence needs no more than the least-privilege Redis ACL of docs/redis.md."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import redis

from livestate import Node
from livestate.testing import ServerProcess

from ..support import eventually
from .journal import Journal, Recorder

DOCS = Path(__file__).resolve().parents[2] / "docs" / "redis.md"


async def test_a_user_with_exactly_the_documented_acl_saves(sqlite_saves: Recorder) -> None:
    """Claims, their renewal, the look for orphans and the final save all run as a user with
    exactly the documented ACL."""
    found = re.findall(r"```acl\n(ACL SETUSER .*)\n```", DOCS.read_text())
    assert len(found) == 1
    key = uuid.uuid4().hex[:12]
    with ServerProcess() as server:
        with redis.Redis.from_url(server.url) as admin:
            admin.execute_command(*found[0].split())
            admin.execute_command("ACL", "SETUSER", "livestate", ">secret")
            admin.execute_command("ACL", "SETUSER", "default", "off")
        url = f"redis://livestate:secret@127.0.0.1:{server.port}/0?lease=1"
        async with Node(url) as node:
            client = await node.attach(Journal, key)
            await client.append("items", 1)
            await eventually(lambda: bool(sqlite_saves.saved(key)), within=5)
            await client.append("items", 2)
            await client.detach()
            await eventually(lambda: any(s.final for s in sqlite_saves.saved(key)), within=10)
            assert sqlite_saves.saved(key)[-1].items == 2
            assert await node.backend.orphans(8) == []
