"""Values are JSON, bounded in size, and rejected whole, before anything is written."""

from __future__ import annotations

import copy
import enum
import math
import pickle
from typing import Any

import pytest

import livestate
from livestate import (
    FrozenDict,
    FrozenList,
    InvalidValueError,
    Limits,
    LiveState,
    StateTooLargeError,
)


class ValuesDoc(LiveState):
    limits = Limits(max_depth=8, max_value_bytes=1000, max_state_bytes=3000)


class Color(enum.IntEnum):
    RED = 1


BAD_VALUES: list[tuple[Any, str]] = [
    ({1, 2}, r"the value is of type set, which is not JSON"),
    (b"bytes", r"is of type bytes"),
    (object(), r"is of type object"),
    (float("nan"), r"is nan, and JSON has no NaN"),
    (float("inf"), r"is inf"),
    (2**53, r"outside ±\(2\*\*53 - 1\)"),
    (-(2**60), r"outside"),
    ({1: "a"}, r"has the key 1 of type int; JSON object keys are strings"),
    ({"a": [1, {"b": {3}}]}, r"the value at \['a'\]\[1\]\['b'\] is of type set"),
    ([[[[[[[[[[1]]]]]]]]]], r"nests too deeply"),
    ("caf\udce9", r"the value 'caf\\udce9' has a lone surrogate, which UTF-8"),
    ({"k\ud800": 1}, r"has the key 'k\\ud800' with a lone surrogate"),
]


@pytest.mark.parametrize(("value", "message"), BAD_VALUES)
async def test_bad_values_are_rejected_naming_key_and_property(
    node: livestate.Node, value: Any, message: str
) -> None:
    """A value that is not JSON raises InvalidValueError naming state, property and path."""
    await ValuesDoc.start("k")
    for write in (ValuesDoc.put("k", "field", value), ValuesDoc.append("k", "field", value)):
        with pytest.raises(InvalidValueError, match=message) as caught:
            await write
        assert "Cannot write 'field' of ValuesDoc 'k'" in str(caught.value)
    assert await ValuesDoc.get("k") == {}


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (5, "must be a str, not int 5; pass str"),
        (None, "must be a str, not NoneType"),
        ("", "1 to 16,384 bytes long"),
        ("x" * 20_000, "1 to 16,384 bytes long"),
        ("room\ud800", "has a lone surrogate, which UTF-8"),
    ],
)
async def test_bad_keys_are_rejected(node: livestate.Node, key: Any, message: str) -> None:
    """A key that is not a non-empty str of bounded size raises InvalidValueError."""
    with pytest.raises(InvalidValueError, match=message):
        await ValuesDoc.attach(key)
    with pytest.raises(InvalidValueError, match=message):
        await ValuesDoc.start(key)


@pytest.mark.parametrize(
    ("prop", "message"),
    [
        (3, "are str, not int 3"),
        ("", "1 to 1,024 bytes"),
        ("p" * 2000, "1 to 1,024 bytes"),
        ("p\udfff", "has a lone surrogate"),
    ],
)
async def test_bad_property_names_are_rejected(
    node: livestate.Node, prop: Any, message: str
) -> None:
    """A property name that is not a non-empty str of bounded size raises InvalidValueError."""
    await ValuesDoc.start("k")
    with pytest.raises(InvalidValueError, match=message):
        await ValuesDoc.put("k", prop, 1)


async def test_bad_arguments_are_rejected(node: livestate.Node) -> None:
    """max_len, increment amounts and max_pending are checked with a clear message."""
    await ValuesDoc.start("k")
    with pytest.raises(InvalidValueError, match="max_len must be an int ≥ 1"):
        await ValuesDoc.append("k", "log", 1, max_len=0)
    with pytest.raises(InvalidValueError, match="the amount must be a number"):
        await ValuesDoc.increment("k", "n", "1")  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError, match="max_pending must be an int ≥ 1"):
        await ValuesDoc.attach("k", max_pending=0)
    assert await ValuesDoc.get("k") == {}


async def test_operations_on_the_wrong_type_change_nothing(node: livestate.Node) -> None:
    """Appending to a non-list or incrementing a non-number raises and changes nothing."""
    await ValuesDoc.start("k")
    await ValuesDoc.put("k", "name", "ann")
    with pytest.raises(InvalidValueError, match="it holds a string, not a list"):
        await ValuesDoc.append("k", "name", "x")
    with pytest.raises(InvalidValueError, match="it holds a string, not a number"):
        await ValuesDoc.increment("k", "name")
    await ValuesDoc.put("k", "big", 2**53 - 1)
    with pytest.raises(InvalidValueError, match="outside"):
        await ValuesDoc.increment("k", "big")
    assert await ValuesDoc.get("k") == {"name": "ann", "big": 2**53 - 1}


async def test_size_limits(node: livestate.Node) -> None:
    """A value or state over its limit raises StateTooLargeError and is not written."""
    await ValuesDoc.start("k")
    with pytest.raises(StateTooLargeError, match=r"'v' of ValuesDoc 'k'.*1,002 bytes.*1,000"):
        await ValuesDoc.put("k", "v", "x" * 1000)
    await ValuesDoc.put("k", "a", "x" * 800)
    await ValuesDoc.put("k", "b", "x" * 800)
    await ValuesDoc.put("k", "c", "x" * 800)
    with pytest.raises(StateTooLargeError, match=r"the whole state.*max_state_bytes"):
        await ValuesDoc.put("k", "d", "x" * 900)
    for n in range(300):
        await ValuesDoc.append("k", "log", n, max_len=100)
    with pytest.raises(StateTooLargeError, match="the whole state"):
        await ValuesDoc.append("k", "log", "y" * 200)
    assert set(await ValuesDoc.get("k")) == {"a", "b", "c", "log"}
    assert (await ValuesDoc.get("k", "log"))[-1] == 299


async def test_size_limit_counts_an_appended_list(node: livestate.Node) -> None:
    """Appending to a list that would outgrow max_value_bytes is refused."""
    await ValuesDoc.start("k")
    for _ in range(9):
        await ValuesDoc.append("k", "log", "x" * 98)
    with pytest.raises(StateTooLargeError, match="'log' of ValuesDoc 'k'"):
        await ValuesDoc.append("k", "log", "x" * 98)
    assert len(await ValuesDoc.get("k", "log")) == 9


async def test_on_mount_results_are_checked(node: livestate.Node) -> None:
    """on_mount must return a dict or a Mount of JSON values within the limits."""

    class ValuesWrong(LiveState):
        def on_mount(self, key: str) -> Any:
            return {"list": [1, 2], "bad": {1, 2}} if key == "set" else ["not", "a", "dict"]

    with pytest.raises(InvalidValueError, match=r"on_mount\('k'\) returned list"):
        await ValuesWrong.attach("k")
    with pytest.raises(InvalidValueError, match="'bad' of ValuesWrong 'set'"):
        await ValuesWrong.attach("set")


def test_subclasses_of_json_types_are_stored_as_plain_values() -> None:
    """IntEnum and friends become their plain JSON value."""
    frozen = livestate._values.freeze({"c": Color.RED}, 8, "x", None)
    assert type(frozen["c"]) is int and frozen == {"c": 1}


def test_frozen_values_copy_and_pickle() -> None:
    """Frozen values survive copy, deepcopy and pickle, and stay equal to plain ones."""
    value = livestate._values.freeze({"a": [1, {"b": 2.5}]}, 8, "x", None)
    assert isinstance(value, FrozenDict) and isinstance(value["a"], FrozenList)
    assert copy.copy(value) is value and copy.deepcopy(value) is value
    assert pickle.loads(pickle.dumps(value)) == {"a": [1, {"b": 2.5}]}
    assert dict(value) == {"a": [1, {"b": 2.5}]} and list(value["a"]) == [1, {"b": 2.5}]
    assert math.isclose(value["a"][1]["b"], 2.5)
