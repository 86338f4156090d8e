"""The Redis/Valkey backend (`RedisBackend`, in backend.py), and the parts it is built of.

backend.py     RedisBackend: the Backend contract on a Redis deployment
urls.py        LIVESTATE_URL's redis://, redis+cluster:// and redis+sentinel:// forms
connect.py     which transport a URL gets (a redis:// server may be a cluster node)
transport.py   the Transport interface the backend talks to, and its Events
standalone.py  transports to one primary: a server, or the one the Sentinels name
cluster.py     the transport to a cluster
dispatch.py    every command sent: scripts by SHA, retries, WAIT, error translation
scripts.py     the Lua scripts (lua/): sources, the keys each declares, arguments
batch.py       an action's ops as one call of lua/batch.lua
coalesce.py    a live state's writes of a loop turn or made meanwhile in one call (two in flight)
replies.py     script replies read back into snapshots and errors
starting.py    opening a live state: the start lock, on_mount run once
channels.py    each live state's channel: messages to its listeners, resyncs
checks.py      the server's data layout and eviction policy
survey.py      what `livestate inspect` sees: live states and nodes
claims.py      which node saves each live state (on_persist)
codec.py       key names and the message format
errors.py      the server's error replies as livestate errors
resp.py, link.py, subscriber.py   connections: RESP over asyncio, pub/sub
fence.py       a dropped connection ended on the server before its successor writes
sentinel.py    a primary that follows Sentinel (or a managed endpoint's name)
topology.py, shards.py, slots.py  routing by slot over a cluster, sharded pub/sub
"""

from __future__ import annotations

from .backend import RedisBackend

__all__ = ["RedisBackend"]
