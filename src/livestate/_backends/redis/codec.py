"""How the Redis backend names a live state's keys, and writes and reads its messages.

Key names: every key of one live state starts with `ls:{<spec>:<key>}`, both
percent-escaped, so it shares one hash tag (one cluster slot) and nothing in a
key can reach another live state or act as a pattern. `ls` is the deployment's
namespace (`?prefix=`), and a channel names the database too, since pub/sub
spans a server's databases (`Names`). Messages: `head \n sent
\n value` after the script's `epoch \n version`, the head a small JSON array
(kind, property, max_len; a reset adds its ACL and TTL), the value JSON that
Python wrote, decoded here into frozen values. A call that applied several
writes publishes them in one message, `epoch \n first \n many` and then each
write's three lines (channels.py reads it).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, unquote

from ..._acl import ACL
from ..._changes import Op, StateId
from ..._values import JSON, FrozenDict, FrozenList, encode, size

_CACHED = 256
"""Keys and property names up to this many characters are cached; longer ones (up to
16 KB) are computed each time, so hostile keys cannot grow the caches' memory."""


@dataclass(frozen=True)
class Names:
    """Where one deployment's keys and channels are on a server: under its namespace
    (`?prefix=`, default `ls`), and, for channels, on its database (pub/sub reaches every
    database of a server, so two deployments on /0 and /1 would hear each other)."""

    prefix: str = "ls"
    db: int = 0

    def state(self, id: StateId) -> str:
        """The start of every key name of a live state: `<prefix>:{<spec>:<key>}`."""
        if len(id.key) <= _CACHED:
            return _cached_prefix(self.prefix, id)
        return f"{self.prefix}:{{{escape(id.spec)}:{escape(id.key)}}}"

    def channel(self, state: str) -> str:
        """The channel of the live state whose keys start with `state`."""
        return f"{state}:c" if not self.db else f"{state}:c@{self.db}"

    def key(self, name: str) -> str:
        """A key of the deployment, not of one live state (`layout`, `saving`, `node:<id>`)."""
        return f"{self.prefix}:{name}"

    def parse(self, state: str) -> tuple[str, str]:
        """The spec and key of a live state from the start of its key names."""
        inner = state[len(self.prefix) + 2 : -1]
        spec, _, key = inner.partition(":")
        return unquote(spec, errors="surrogatepass"), unquote(key, errors="surrogatepass")


@functools.lru_cache(maxsize=1024)  # the same live states are written again and again
def _cached_prefix(prefix: str, id: StateId) -> str:
    return f"{prefix}:{{{escape(id.spec)}:{escape(id.key)}}}"


def escape(text: str) -> str:
    """Percent-escape every byte but [A-Za-z0-9_.~-], so no `{`, `}`, `:` or `*` is left."""
    if len(text) <= _CACHED:
        return _cached_escape(text)
    return quote(text, safe="", errors="surrogatepass")


@functools.lru_cache(maxsize=4096)  # the same property names come back write after write
def _cached_escape(text: str) -> str:
    return quote(text, safe="", errors="surrogatepass")


def ttl_args(ttl: float | None) -> tuple[int, str]:
    """The TTL in whole milliseconds (-1 for none) and as Python writes it."""
    if ttl is None:
        return -1, ""
    return round(ttl * 1000), repr(ttl)


def acl_and_ttl(op: Op) -> list[Any]:
    """What a reset's message head adds: its group and public masks and its TTL."""
    if op.kind != "reset":
        return []
    acl = op.acl or ACL()
    return [acl.group, acl.public, op.ttl]


def encode_state(
    state: Iterable[tuple[str, JSON]] | dict[str, JSON], prefix: str
) -> tuple[int, list[Any]]:
    """A whole state as write_state reads it, and its size as MemoryBackend counts it."""
    items = state.items() if isinstance(state, dict) else state
    args: list[Any] = [0]
    total = 0
    count = 0
    for prop, value in items:
        count += 1
        if type(value) is FrozenList:
            texts = [encode(item) for item in value]
            nbytes = 2 + sum(size(text) for text in texts) + max(0, len(texts) - 1)
            weight = size(prop) + nbytes
            args += [prop, weight, "l", f"{prefix}:l:{escape(prop)}", len(texts), *texts]
        else:
            text = encode(value)
            weight = size(prop) + size(text)
            args += [prop, weight, "v", text]
        total += weight
    args[0] = count
    return total, args


@functools.lru_cache(maxsize=4096)
def message_head(kind: str, prop: str | None, max_len: int | None) -> str:
    """The head of a message: what it does to which property (reset adds its ACL and TTL)."""
    return encode([kind, prop, max_len])


@functools.lru_cache(maxsize=4096)  # a live state's writes mostly repeat the same few
def _parse_head(text: str) -> list[Any]:
    head: list[Any] = json.loads(text)
    return head


def decode_op(head_text: str, value_text: str) -> Op:
    """The op of a published write, from its head and value as the message carries them."""
    if len(value_text) <= SHORT and len(head_text) <= _CACHED:
        return _decode_short_op(head_text, value_text)
    return _decode_op(head_text, value_text)


def _decode_op(head_text: str, value_text: str) -> Op:
    # Heads naming long properties are parsed each time, so they cannot grow the cache.
    head = _parse_head(head_text) if len(head_text) <= _CACHED else json.loads(head_text)
    kind: Literal["put", "delete", "reset", "append", "increment"] = head[0]
    if kind == "reset":
        return Op(kind, None, decode(value_text), acl=ACL(head[3], head[4]), ttl=head[5])
    made: Op = _new(Op, (kind, head[1], decode(value_text), "null", 0, head[2], *_OP_REST))
    return made


_FIRST = Op("put", "p", "v", "e", 1, 2)
if _FIRST != Op(kind="put", prop="p", value="v", encoded="e", size=1, max_len=2):
    raise RuntimeError("codec.decode_op builds an Op from its field order: update it.")
_OP_REST = tuple(_FIRST[6:])  # the defaults of every field after max_len
_new: Any = tuple.__new__


def _frozen_list(items: list[Any]) -> FrozenList:
    return FrozenList([_frozen_list(item) if type(item) is list else item for item in items])


def _frozen_object(pairs: list[tuple[str, Any]]) -> FrozenDict:
    frozen = FrozenDict(pairs)
    for key, value in pairs:
        if type(value) is list:
            dict.__setitem__(frozen, key, _frozen_list(value))
    return frozen


_decoder = json.JSONDecoder(object_pairs_hook=_frozen_object)


def decode(text: str) -> JSON:
    """Decode JSON text that livestate wrote, into frozen values as every value handed out is.

    Objects are frozen by the decoder as it builds them, so only lists need a second look.
    """
    value = _decoder.raw_decode(text)[0]
    return _frozen_list(value) if type(value) is list else value


SHORT = 32
"""Writes whose value is published as up to this many characters (a count, a flag, a short
string) are decoded once and the op shared, frozen as it is: the same few recur write after
write (an increment by 1, a flag set). Only with a head of up to _CACHED characters, so a
long property name cannot grow the cache's memory."""


@functools.lru_cache(maxsize=4096)
def _decode_short_op(head_text: str, value_text: str) -> Op:
    return _decode_op(head_text, value_text)
