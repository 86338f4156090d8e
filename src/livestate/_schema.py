"""Schemas: the declared shape of a spec's state, checked on every write before the backend.

A spec's `schema` maps property names, or patterns where `*` stands for any
text (`"card:*"`), to types that msgspec understands: `int`, `str`,
`Annotated[int, msgspec.Meta(ge=0)]`, `Literal[...]`, unions, `list[T]`,
`TypedDict`, dataclasses and `msgspec.Struct` (with `forbid_unknown_fields=True`
to refuse extra keys). A property the schema does not name is refused.

The check runs on the JSON text that livestate encodes once per write anyway,
through a msgspec decoder compiled once per declared type, so it costs a
fraction of a microsecond per value (docs/decisions.md has the figures). An
append checks the item against the list's item type and keeps the list within
the type's `max_length`; an increment checks the amount's type here and the
result's bounds atomically where the sum is made (the backend's script).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from ._exceptions import InvalidValueError
from ._extras import require

Bounds = tuple[float | None, bool, float | None, bool]
"""Numeric bounds of an increment's result: (low, low is strict, high, high is strict)."""

NO_BOUNDS: Bounds = (None, False, None, False)

MATCHED = 4096
"""How many property names matched by a pattern a schema remembers."""


def load_msgspec() -> Any:
    """Import msgspec, or raise an ImportError that says how to install it."""
    return require("msgspec", "A state spec's schema", "schema")


@dataclass(frozen=True, slots=True, eq=False)
class Rule:
    """The schema's rule for one property (or pattern): its type, compiled for checks."""

    declared: str
    type: Any
    decoder: Any
    item_decoder: Any  # the list item's decoder, for append; None if not a list type
    max_items: int | None  # the list type's max_length, if any
    number: str | None  # "int" or "float" if an increment may apply, else None
    bounds: Bounds

    def describe(self) -> str:
        """How an error names this rule: `'card:*' (Card)`."""
        return f"{self.declared!r} ({_type_name(self.type)})"


class Schema:
    """A compiled schema: the rule for each property name, exact names before patterns.

    Raises InvalidValueError, naming `where` and the entry, for a declaration that
    is not a mapping of names to types msgspec can check.
    """

    __slots__ = ("exact", "matched", "patterns")

    def __init__(self, declared: object, where: str) -> None:
        if not isinstance(declared, Mapping) or not declared:
            raise InvalidValueError(
                f"{where} must map property names (or patterns such as 'card:*') to types, "
                f"such as {{'title': str, 'card:*': Card}}; got {declared!r}."
            )
        msgspec = load_msgspec()
        self.exact: dict[str, Rule] = {}
        self.patterns: list[tuple[re.Pattern[str], Rule]] = []
        # Names a pattern matched, so a hot property is matched once; bounded, since names
        # come from callers.
        self.matched: dict[str, Rule] = {}
        for name, kind in declared.items():
            if not isinstance(name, str) or not name:
                raise InvalidValueError(f"{where} has a property name {name!r}; use a str.")
            rule = _compile(msgspec, name, kind, where)
            if "*" in name:
                regex = ".*".join(re.escape(part) for part in name.split("*"))
                self.patterns.append((re.compile(regex, re.DOTALL), rule))
            else:
                self.exact[name] = rule

    def rule(self, prop: str, subject: object) -> Rule:
        """The rule for `prop`; InvalidValueError, naming the live state, if none applies."""
        rule = self.exact.get(prop) or self.matched.get(prop)
        if rule is not None:
            return rule
        for pattern, rule in self.patterns:
            if pattern.fullmatch(prop):
                if len(self.matched) >= MATCHED:
                    self.matched.clear()
                self.matched[prop] = rule
                return rule
        names = [*self.exact, *(rule.declared for _, rule in self.patterns)]
        raise InvalidValueError(
            f"Cannot write {prop[:200]!r} of {subject}: its schema declares no such property "
            f"(it declares {', '.join(map(repr, names))}); add it, or a pattern such as "
            f"'{prop[:20]}*', to the spec's schema."
        )

    def check(self, prop: str, encoded: str, subject: object) -> None:
        """Check a property's whole value (its JSON text); InvalidValueError if it does not fit."""
        rule = self.rule(prop, subject)
        try:
            rule.decoder.decode(encoded)
        except load_msgspec().ValidationError as error:  # (evaluated only on an error)
            raise _unfit(rule, error, prop, subject, "the value") from None

    def check_item(self, prop: str, encoded: str, subject: object) -> int | None:
        """Check an appended item; return the list's `max_length` (None: unbounded)."""
        rule = self.rule(prop, subject)
        if rule.item_decoder is None:
            raise InvalidValueError(
                f"Cannot append to {prop[:200]!r} of {subject}: its schema declares it "
                f"{rule.describe()}, not a list; put a value of that type instead."
            )
        try:
            rule.item_decoder.decode(encoded)
        except load_msgspec().ValidationError as error:
            raise _unfit(rule, error, prop, subject, "the item") from None
        return rule.max_items

    def check_amount(self, prop: str, amount: int | float, subject: object) -> Bounds:
        """Check an increment's amount; return the bounds its result must keep."""
        rule = self.rule(prop, subject)
        if rule.number is None or (rule.number == "int" and type(amount) is not int):
            expected = "a number" if rule.number is None else "an int"
            raise InvalidValueError(
                f"Cannot increment {prop[:200]!r} of {subject} by {amount!r}: its schema "
                f"declares it {rule.describe()}, which {expected} added to it would not fit."
            )
        return rule.bounds


def out_of_bounds(bounds: Bounds, result: int | float) -> bool:
    """Whether an increment's `result` breaks `bounds`."""
    low, low_strict, high, high_strict = bounds
    if low is not None and (result <= low if low_strict else result < low):
        return True
    return high is not None and (result >= high if high_strict else result > high)


def out_of_range(prop: str, subject: object, result: object, bounds: Bounds) -> str:
    """The message for an increment whose result would break the schema's bounds."""
    low, low_strict, high, high_strict = bounds
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_strict else '≥'} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_strict else '≤'} {high:g}")
    return (
        f"Cannot increment {prop[:200]!r} of {subject}: the result {result} would break its "
        f"schema's bounds ({' and '.join(parts)}); nothing was written."
    )


def _unfit(
    rule: Rule, error: Exception, prop: str, subject: object, what: str
) -> InvalidValueError:
    return InvalidValueError(
        f"Cannot write {prop[:200]!r} of {subject}: {what} does not fit the schema's "
        f"{rule.describe()}: {error}; send a value of that type."
    )


def _compile(msgspec: Any, name: str, kind: object, where: str) -> Rule:
    try:
        decoder = msgspec.json.Decoder(kind)
        info = msgspec.inspect.type_info(kind)
    except (TypeError, ValueError) as error:
        raise InvalidValueError(
            f"{where}[{name!r}] is {kind!r}, which msgspec cannot check ({error}); use builtins, "
            "Annotated[..., msgspec.Meta(...)], Literal, TypedDict, dataclasses or msgspec.Struct."
        ) from None
    inspected = msgspec.inspect
    item_decoder = None
    max_items = None
    item = _list_item(kind)
    if item is not None:
        item_decoder = msgspec.json.Decoder(item)
        max_items = getattr(info, "max_length", None)
    number: str | None = None
    bounds = NO_BOUNDS
    members = info.types if isinstance(info, inspected.UnionType) else (info,)
    for member in members:
        if isinstance(member, inspected.IntType | inspected.FloatType):
            number = "int" if isinstance(member, inspected.IntType) else "float"
            low, low_strict = (member.gt, True) if member.gt is not None else (member.ge, False)
            high, high_strict = (member.lt, True) if member.lt is not None else (member.le, False)
            bounds = (low, low_strict, high, high_strict)
            break
    return Rule(name, kind, decoder, item_decoder, max_items, number, bounds)


def _list_item(kind: object) -> object | None:
    """The item type of a list type (`list[T]`, maybe Annotated), else None."""
    while get_origin(kind) is Annotated:
        kind = get_args(kind)[0]
    if get_origin(kind) is list:
        args = get_args(kind)
        return args[0] if args else Any
    return Any if kind is list else None


def _type_name(kind: object) -> str:
    """A declared type as an error names it: its shape without the Meta annotations
    (`list[str]`, `Card`, `int | None`), which the decoder's own message states where
    they matter."""
    while get_origin(kind) is Annotated:
        kind = get_args(kind)[0]
    origin, args = get_origin(kind), get_args(kind)
    if origin is Union or origin is UnionType:
        return " | ".join(_type_name(arg) for arg in args)
    if origin is Literal:
        return repr(kind).replace("typing.", "")
    if origin is not None and args:
        name = str(getattr(origin, "__name__", None) or repr(origin))
        return f"{name}[{', '.join(map(_type_name, args))}]"
    if kind is type(None):
        return "None"
    return str(getattr(kind, "__name__", None) or repr(kind).replace("typing.", ""))
