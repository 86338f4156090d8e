"""An action's ops as one call of lua/batch.lua: what each op does to the keys, worked out here.

The node ran the action against the state at the version the batch expects, so
the ops are evaluated here against that same state, in order, with the function
every replica uses (`_changes.evaluate`); the script then only checks the
version, the keys and the sizes, and writes. Each op still travels between
nodes as itself (an append as its item), in a message of its own at its own
version.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..._changes import Op, StateId, commit, evaluate
from ..._values import JSON, FrozenList, encode, size
from .codec import escape, message_head


def plan(
    id: StateId, prefix: str, ops: Sequence[Op], state: Mapping[str, JSON], first_key: int
) -> tuple[list[str], list[Any]]:
    """The list keys the batch touches (to declare after the usual ones, the first at KEYS
    index `first_key`) and its ARGV from 8 on, for `ops` applied to `state` in order."""
    current = dict(state)
    lists: dict[str, int] = {}  # list key -> its KEYS index
    args: list[Any] = [len(ops)]
    sent = time.time_ns() // 1000
    for op in ops:
        prop: str = op.prop  # type: ignore[assignment]  # an action writes properties only
        was_list = type(current.get(prop)) is FrozenList
        kind, value = evaluate(current, op, id)
        head = message_head(op.kind, prop, op.max_len)
        body = f"{head}\n{sent}\n{op.encoded}"
        is_list = kind != "deleted" and type(value) is FrozenList
        index = 0
        if was_list or is_list:
            key = f"{prefix}:l:{escape(prop)}"
            index = lists.setdefault(key, first_key + len(lists))
        weight = size(prop)
        if kind == "deleted":
            args += [body, "d", prop, "", index]
        elif op.kind == "append" and was_list:
            dropped = len(current[prop]) + 1 - len(value)
            args += [body, "a", prop, weight + size(encode(value)), index, dropped, op.encoded]
        elif is_list:
            args += [body, "l", prop, weight + size(encode(value)), index, len(value)]
            args += [encode(item) for item in value]
        else:
            text = op.encoded if op.kind == "put" else encode(value)
            args += [body, "v", prop, weight + size(text), index, text]
        commit(current, op, kind, value)
    return list(lists), args
