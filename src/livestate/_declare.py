"""What a state spec declares, as the engine reads it: below the node, which never imports
the `LiveState` facade (_spec.py) that sits above it.

`Spec` holds the declarations (TTL, ACL, limits) and the hooks (on_mount,
on_persist); `LiveState` adds the class-level server API on top.
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, Final, Literal

from ._acl import ACL
from ._actions import Action
from ._exceptions import InvalidValueError
from ._quota import check_limit
from ._rules import Caller, Write
from ._schema import Schema
from ._values import Limits


class Default(Enum):
    """The type of DEFAULT."""

    DEFAULT = "DEFAULT"


DEFAULT: Final = Default.DEFAULT
"""Marks an argument as not given (None has a meaning of its own, such as 'no TTL')."""


@dataclass(frozen=True, slots=True)
class Mount:
    """What on_mount may return instead of a plain dict: the state, and a per-key ACL or TTL.

    `acl` and `ttl` left out take the spec's class-level values; `ttl=None` keeps
    the live state until it is stopped.
    """

    state: Mapping[str, Any] = field(default_factory=dict)
    acl: Mapping[str, Any] | None = None
    ttl: float | Literal[Default.DEFAULT] | None = DEFAULT


_names: dict[str, str] = {}
"""Spec name -> the module that defines it, to catch two specs sharing a name."""

persisted: dict[str, type[Spec]] = {}
"""Spec name -> the spec, for the specs that override on_persist: any node may have to save
a live state of one of them whose saver died (see _persist.py)."""


class Spec:
    """What a state spec declares: the base of `LiveState`, which users subclass.

    Class attributes: `ttl` (seconds a live state lives on after its last client
    detaches, None for ever; default 60), `acl` (default all permissions to group
    and public), `limits` (sizes, see Limits) and `name` (how nodes name this
    spec to each other: the class name unless set; two specs may not share one),
    `max_live_states` (how many of its live states one node may run; default None,
    bounded only by the node's own limit).
    Override `on_mount(key)` to give each key its initial state, and `on_persist`
    to save it (tuned by `persist_interval` and `max_persist_failures`).

    What writes must satisfy, beyond the ACL (docs/rules.md): `schema` maps
    property names or patterns (`"card:*"`) to types, checked on every write;
    `allow(key, caller, write)` decides per caller and write; methods decorated
    with `@action` are server-side mutations that clients call by name.
    """

    name: ClassVar[str]
    schema: ClassVar[Mapping[str, Any] | None] = None
    ttl: ClassVar[float | None] = 60.0
    acl: ClassVar[Mapping[str, Any]] = {"group": "all", "public": "all"}
    limits: ClassVar[Limits] = Limits()
    persist_interval: ClassVar[float] = 1.0
    max_persist_failures: ClassVar[int] = 5
    max_live_states: ClassVar[int | None] = None
    _schema: ClassVar[Schema | None] = None
    _actions: ClassVar[Mapping[str, Action]] = {}
    _rule: ClassVar[Spec | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = cls.__name__
        if not isinstance(cls.name, str) or not cls.name:
            raise InvalidValueError(f"{cls.__qualname__}.name must be a non-empty str.")
        # Specs are told apart by module, so redefining one (a reload, a test) is fine.
        where = cls.__module__
        if _names.setdefault(cls.name, where) != where:
            # Two specs with one name would silently share every live state.
            raise InvalidValueError(
                f"Two state specs are named {cls.name!r}, in {_names[cls.name]} and in {where}; "
                "give one of them its own `name = '...'`."
            )
        ACL.parse(cls.acl, cls.__qualname__)
        check_ttl(cls.ttl, f"{cls.__qualname__}.ttl")
        if not isinstance(cls.limits, Limits):
            raise InvalidValueError(
                f"{cls.__qualname__}.limits must be a livestate.Limits, such as "
                "Limits(max_value_bytes=65536)."
            )
        check_persistence(cls)
        check_limit(cls.max_live_states, f"{cls.__qualname__}.max_live_states")
        if persists(cls):
            persisted[cls.name] = cls
        # Compiled once here: every write of every live state of the spec uses them.
        cls._schema = (
            None if cls.schema is None else Schema(cls.schema, f"{cls.__qualname__}.schema")
        )
        actions: dict[str, Action] = {}
        for klass in reversed(cls.__mro__):
            actions.update((n, v) for n, v in vars(klass).items() if isinstance(v, Action))
        for declared in actions.values():
            if declared.struct is None:
                declared.bind(cls)
        cls._actions = actions
        cls._rule = cls() if cls.allow is not Spec.allow else None

    def on_mount(self, key: str) -> dict[str, Any] | Mount | Any:
        """The initial state of the live state for `key` (a dict or a Mount); may be async.

        Runs once each time the live state starts, and again on every reset.
        The default is an empty state.
        """
        return {}

    def allow(self, key: str, caller: Caller | None, write: Write) -> bool | str | Any:
        """Whether `caller` may make `write` to the live state for `key`; may be async.

        Return True to allow, False or a reason (a str, which the error carries)
        to refuse with PermissionDeniedError. `caller` is None for trusted server
        code, else its role and the identity its integration established. It runs
        for every write op (put, delete, append, increment, reset, stop) that the
        ACL allowed, on the node that takes it, but not for an action's writes.
        Reading `write.state` makes the write conditional on that version, and the
        rule runs again if another write came first: give it no side effects. The
        default allows everything.
        """
        return True

    def on_persist(self, key: str, state: Mapping[str, Any], version: int, final: bool) -> Any:
        """Save `state` at `version` for `key` where it outlives the live state; may be async.

        Override it to persist a spec (see docs/persistence.md); a spec that does
        not is never saved and costs nothing. One node at a time calls it, at most
        once per `persist_interval` after changes, off the write path, and once
        more with `final=True` when the live state ends. It may be called again
        with a version already saved, or (after a takeover) an older one: store
        only a version above the one you have. Exceptions are retried with backoff.
        """
        return None


def schema_of(spec: type[Spec]) -> Schema | None:
    """The spec's compiled schema, or None if it declares none."""
    return spec._schema


def actions_of(spec: type[Spec]) -> Mapping[str, Action]:
    """The spec's actions by name."""
    return spec._actions


def rule_of(spec: type[Spec]) -> Spec | None:
    """The spec instance whose `allow` decides its writes, or None if it keeps the default."""
    return spec._rule


def check_ttl(ttl: object, where: str) -> float | None:
    """Return `ttl` if it is None or finite seconds ≥ 0, else raise InvalidValueError."""
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 <= ttl < float("inf"):
        raise InvalidValueError(
            f"{where} must be a number of seconds ≥ 0, or None to keep the live state until "
            f"stopped; got {ttl!r}."
        )
    return float(ttl)


def persists(spec: type[Spec]) -> bool:
    """Whether `spec` overrides on_persist, so its live states are saved."""
    return spec.on_persist is not Spec.on_persist


def check_persistence(spec: type[Spec]) -> None:
    """Raise InvalidValueError unless the spec's persistence settings are usable."""
    interval = spec.persist_interval
    if (
        isinstance(interval, bool)
        or not isinstance(interval, int | float)
        or not 0 < interval < float("inf")
    ):
        raise InvalidValueError(
            f"{spec.__qualname__}.persist_interval must be a number of seconds > 0 (how often "
            f"on_persist may run after changes); got {interval!r}."
        )
    failures = spec.max_persist_failures
    if type(failures) is not int or failures < 1:
        raise InvalidValueError(
            f"{spec.__qualname__}.max_persist_failures must be an int ≥ 1 (failed saves in a "
            f"row before the clients are told); got {failures!r}."
        )


def declaration(spec: type[Spec]) -> str:
    """What a spec declares at class level (ACL, TTL, limits), as short, stable JSON.

    Stored with each live state it starts, so a node whose spec of the same name
    declares otherwise (another release, mid-deploy) can say so.
    """
    acl = ACL.parse(spec.acl, spec.__qualname__)
    limits = spec.limits
    # Interned: every live state of the spec keeps one copy, not one each.
    return sys.intern(
        json.dumps(
            {
                "acl": {"group": acl.group, "public": acl.public},
                "ttl": spec.ttl,
                "limits": [limits.max_depth, limits.max_value_bytes, limits.max_state_bytes],
            },
            separators=(",", ":"),
        )
    )


async def run_on_mount(spec: type[Spec], key: str) -> Any:
    """Call the spec's on_mount for `key`, awaiting it if it is async."""
    result = spec().on_mount(key)
    if inspect.isawaitable(result):
        result = await result
    return result
