"""Two clients and a public caller share one live state in one process (memory://).

python examples/quickstart.py
"""

from __future__ import annotations

import asyncio
from typing import Any

from livestate import Change, LiveState


class ChatRoom(LiveState):
    """A chat room: a bounded list of messages; anyone may read, only members may write."""

    ttl = 5.0
    acl = {"group": "all", "public": ["read"]}

    async def on_mount(self, room_id: str) -> dict[str, Any]:
        return {"messages": [], "topic": f"Welcome to {room_id}"}


def printer(name: str) -> Any:
    def on_change(change: Change) -> None:
        print(f"  {name} sees v{change.version} {change.kind} {change.prop}: {change.value}")

    return on_change


async def main() -> None:
    ann = await ChatRoom.attach("lobby", on_change=printer("ann"))
    bob = await ChatRoom.attach("lobby", on_change=printer("bob"))
    print(f"ann attached at v{ann.version}: {dict(ann.state)}")

    await ann.append("messages", {"from": "ann", "text": "hi bob"}, max_len=100)
    await bob.append("messages", {"from": "bob", "text": "hi ann"}, max_len=100)
    await bob.put("typing", ["bob"])
    await bob.delete("typing")

    # A public caller (an HTTP handler, a worker) may read, but the ACL keeps it from writing.
    print("public read:", await ChatRoom.get("lobby", "messages"))
    try:
        await ChatRoom.put("lobby", "topic", "hacked")
    except PermissionError as error:
        print("public write refused:", error)

    await ann.reset()
    await ann.detach()
    await bob.detach()
    print("both left; the room ends 5 s after the last one (ttl = 5.0)")


if __name__ == "__main__":
    asyncio.run(main())
