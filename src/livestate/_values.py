"""JSON values: validation, freezing, encoding and size limits.

Every value that enters livestate is checked and frozen once, at the edge, so
everything handed out afterwards (client state, `get`, `Change.value`) can be
shared by every client without copying and without one client changing what
another sees.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, NoReturn, cast

from ._exceptions import InvalidValueError, StateTooLargeError

MAX_SAFE_INTEGER = 2**53 - 1
"""The largest integer a browser's JavaScript holds exactly."""

MAX_KEY_BYTES = 16 * 1024
MAX_PROPERTY_BYTES = 1024

JSON = Any
"""A frozen JSON value: FrozenDict, FrozenList, str, int, float, bool or None."""


def _read_only(self: object, *args: object, **kwargs: object) -> NoReturn:
    """Raises TypeError: livestate values are read-only."""
    kind = "dict" if isinstance(self, dict) else "list"
    raise TypeError(
        f"livestate values are read-only, so that no client changes what another sees; "
        f"copy it with {kind}(value), change the copy and write it back with put() or update()."
    )


class FrozenDict(dict[str, Any]):
    """A read-only dict: it reads like any dict, and every mutating method raises TypeError."""

    __slots__ = ()
    __setitem__ = __delitem__ = __ior__ = _read_only
    clear = pop = popitem = setdefault = update = _read_only

    def __copy__(self) -> FrozenDict:
        return self

    def __deepcopy__(self, memo: object) -> FrozenDict:
        return self

    def __reduce__(self) -> tuple[type[FrozenDict], tuple[dict[str, Any]]]:
        return FrozenDict, (dict(self),)


class FrozenList(list[Any]):
    """A read-only list: it reads like any list, and every mutating method raises TypeError."""

    __slots__ = ()
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _read_only
    append = clear = extend = insert = pop = remove = reverse = sort = _read_only

    def __copy__(self) -> FrozenList:
        return self

    def __deepcopy__(self, memo: object) -> FrozenList:
        return self

    def __reduce__(self) -> tuple[type[FrozenList], tuple[list[Any]]]:
        return FrozenList, (list(self),)


EMPTY = FrozenDict()


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits of one kind of live state, checked before anything is written.

    `max_depth` bounds nesting, `max_value_bytes` the JSON size of one property's
    value, `max_state_bytes` the JSON size of all properties (names included).
    """

    max_depth: int = 64
    max_value_bytes: int = 1024 * 1024
    max_state_bytes: int = 16 * 1024 * 1024


class _Invalid(Exception):
    """Raised inside `freeze` with the path to the bad part; turned into InvalidValueError."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.path: list[str | int] = []


def freeze(value: object, max_depth: int, subject: object, prop: str | None) -> JSON:
    """Check that `value` is JSON and return it frozen (dicts and lists made read-only).

    A tuple becomes a list. A FrozenDict or FrozenList is checked like any dict or
    list (anyone can build one), and copied.
    Raises InvalidValueError naming the live state (`subject`), the property and the
    path to the offending part.
    """
    try:
        return _freeze(value, max_depth)
    except _Invalid as error:
        at = "".join(f"[{part!r}]" for part in reversed(error.path))
        where = f" at {at}" if at else ""
        raise InvalidValueError(
            f"Cannot write {_what(subject, prop)}: the value{where} {error.reason}."
        ) from None


def prepare(value: object, limits: Limits, subject: object, prop: str) -> tuple[JSON, str, int]:
    """A property's value checked (JSON, depth, size), frozen and encoded once: the value,
    its JSON text and the text's UTF-8 size. Raises as `freeze` and `check_size` do.

    A short ASCII string or a safe integer, most writes, takes the shortest way there.
    """
    kind = type(value)
    if kind is int and -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:  # type: ignore[operator]
        text = str(value)  # an int, not a subclass: its digits
        return value, text, len(text)
    if kind is str and value.isascii():  # type: ignore[attr-defined]
        text = _encode_string(value)  # type: ignore[arg-type]
        nbytes = len(text)
        if nbytes > limits.max_value_bytes:
            check_size(nbytes, limits.max_value_bytes, subject, prop)
        return value, text, nbytes
    frozen = freeze(value, limits.max_depth, subject, prop)
    text = encode(frozen)
    nbytes = size(text)
    check_size(nbytes, limits.max_value_bytes, subject, prop)
    return frozen, text, nbytes


def _what(subject: object, prop: str | None) -> str:
    return f"{subject}" if prop is None else f"{prop[:200]!r} of {subject}"


def _freeze(value: object, depth: int) -> JSON:
    kind = type(value)
    if kind is str:
        text = cast(str, value)
        if text.isascii() or _is_text(text):
            return text
        raise _Invalid(f"{text[:40]!r} has {_SURROGATE}")
    if kind is bool or value is None:
        return value
    if kind is int:
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:  # type: ignore[operator]
            return value
        big = cast(int, value)
        # str() of a huge int raises ValueError (Python's digit limit), so say its size instead.
        number = str(big) if abs(big) < 10**60 else f"of {big.bit_length()} bits"
        raise _Invalid(
            f"is the integer {number}, outside ±(2**53 - 1), the range a browser holds exactly; "
            "store it as a string"
        )
    if kind is float:
        if math.isfinite(value):  # type: ignore[arg-type]
            return value
        raise _Invalid(f"is {value!r}, and JSON has no NaN or infinity; store None or a string")
    if depth <= 0:
        raise _Invalid("nests too deeply; flatten it or raise Limits.max_depth")
    if isinstance(value, dict):
        frozen: dict[str, Any] = {}
        for key, item in value.items():
            if type(key) is not str:
                raise _Invalid(
                    f"has the key {key!r} of type {type(key).__name__}; "
                    "JSON object keys are strings"
                )
            if not (key.isascii() or _is_text(key)):
                raise _Invalid(f"has the key {key[:40]!r} with {_SURROGATE}")
            try:
                frozen[key] = _freeze(item, depth - 1)
            except _Invalid as error:
                error.path.append(key)
                raise
        return FrozenDict(frozen)
    if isinstance(value, list | tuple):
        items = []
        for index, item in enumerate(value):
            try:
                items.append(_freeze(item, depth - 1))
            except _Invalid as error:
                error.path.append(index)
                raise
        return FrozenList(items)
    # Subclasses such as IntEnum or StrEnum are stored as their plain JSON value.
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return _freeze(int(value), depth)
    if isinstance(value, float):
        return _freeze(float(value), depth)
    if isinstance(value, str):
        return _freeze(str.__str__(value), depth)
    raise _Invalid(
        f"is of type {kind.__name__}, which is not JSON; "
        "use a dict, list, str, int, float, bool or None"
    )


_encode = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, check_circular=False, separators=(",", ":")
).encode
_encode_string = json.encoder.encode_basestring  # the C function the encoder uses


def encode(value: JSON) -> str:
    """Compact JSON text of a frozen value (the form stored and sent between nodes).

    Scalars, most writes, skip the encoder's machinery: the same text, in a few
    hundred nanoseconds less.
    """
    kind = type(value)
    if kind is int:
        return int.__repr__(value)
    if kind is str:
        return _encode_string(value)
    if kind is float:
        return float.__repr__(value)  # finite: freeze refused the rest
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    return _encode(value)


_SURROGATE = (
    "a lone surrogate, which UTF-8 (and so JSON) cannot carry; "
    "decode the bytes it came from with errors='replace'"
)


def _is_text(text: str) -> bool:
    """Whether `text` can be written as UTF-8 (it has no lone surrogate)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def size(text: str) -> int:
    """The UTF-8 byte length of JSON text."""
    return len(text) if text.isascii() else len(text.encode())


def check_size(
    nbytes: int, limit: int, subject: object, prop: str | None, whole: bool = False
) -> None:
    """Raise StateTooLargeError, naming the live state and property, if `nbytes` is over `limit`."""
    if nbytes > limit:
        what = _what(subject, prop)
        scope = "the whole state" if whole else "the value"
        setting = "max_state_bytes" if whole else "max_value_bytes"
        raise StateTooLargeError(
            f"Cannot write {what}: {scope} would take {nbytes:,} bytes of JSON, over the limit of "
            f"{limit:,}; store less (append with max_len keeps lists bounded) or raise "
            f"Limits.{setting} on the spec."
        )


def check_key(key: object, spec: str) -> str:
    """Return `key` if it is a valid live state key, else raise InvalidValueError."""
    if type(key) is not str:
        raise InvalidValueError(
            f"The key of a {spec} live state must be a str, not {type(key).__name__} {key!r}; "
            f"pass str(key)."
        )
    if not (key.isascii() or _is_text(key)):
        raise InvalidValueError(f"The key {key[:200]!r} of a {spec} live state has {_SURROGATE}.")
    if not key or size(key) > MAX_KEY_BYTES:
        raise InvalidValueError(
            f"The key of a {spec} live state must be 1 to {MAX_KEY_BYTES:,} bytes long; "
            f"got {size(key):,}."
        )
    return key


def check_property(prop: object, subject: object) -> str:
    """Return `prop` if it is a valid property name, else raise InvalidValueError."""
    if type(prop) is str and prop.isascii() and 0 < len(prop) <= MAX_PROPERTY_BYTES:
        return prop  # the common case, in one line
    if type(prop) is not str:
        raise InvalidValueError(
            f"Property names of {subject} are str, not {type(prop).__name__} {prop!r}; "
            "pass str(prop)."
        )
    if not (prop.isascii() or _is_text(prop)):
        raise InvalidValueError(f"The property name {prop[:40]!r} of {subject} has {_SURROGATE}.")
    if not prop or size(prop) > MAX_PROPERTY_BYTES:
        raise InvalidValueError(
            f"Property names of {subject} must be 1 to {MAX_PROPERTY_BYTES:,} bytes long; "
            f"got {size(prop):,} for {prop[:40]!r}."
        )
    return prop
