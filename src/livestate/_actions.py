"""Actions: server-defined mutations of a live state, called by name from any client.

    class Board(LiveState):
        acl = {"group": ["read"], "public": ["read"]}   # browsers write only through actions

        @action
        def vote(self, ctx: ActionContext, card: str) -> int:
            if f"card:{card}" not in ctx.state:
                raise InvalidValueError(f"There is no card {card!r}.")
            ctx.increment(f"votes:{card}")
            return ctx.state[f"votes:{card}"]

An action runs on the node that receives the call, with the caller the
integration established (never one the browser claims); its arguments are
checked against its signature; its writes are recorded on `ctx` and applied
together, atomically, when it returns, and its return value (JSON) is the
reply. An action that raises writes nothing. One that read `ctx.state` commits
only if the live state is still at the version it read, else it runs again on
the newer state (as `update` does), so it may run more than once: give it no
side effects but its writes. Its writes are the spec's own: the ACL and `allow`
do not apply to them (the action is the rule), the schema does.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any

from ._changes import Op, StateId, commit, evaluate
from ._exceptions import InvalidValueError
from ._rules import Caller
from ._schema import load_msgspec
from ._values import JSON, FrozenDict

OpMaker = Callable[[str, str, Any, "int | None"], Op]
"""What the node hands a context to make a checked op: (kind, prop, value, max_len) -> Op."""


class ActionContext:
    """What an action works with: its live state, its caller, and the writes it records.

    `key` and `caller` (None for trusted server code) say where and for whom it runs;
    `state` is the live state (read-only) with the action's own writes applied
    so far, at `version` before them. `put`, `delete`, `append` and `increment`
    record writes, each checked at once (InvalidValueError, StateTooLargeError,
    PropertyNotFoundError, raised where the action wrote it); they are applied
    together when the action returns.
    """

    __slots__ = ("_base", "_make", "_state", "caller", "id", "key", "ops", "read", "version")

    def __init__(
        self,
        id: StateId,
        caller: Caller | None,
        state: Mapping[str, JSON],
        version: int,
        make: OpMaker,
    ) -> None:
        self.id = id
        self.key = id.key
        self.caller = caller
        self.version = version
        self._base = state
        self._state: dict[str, JSON] | None = None  # a copy, made at the first write
        self._make = make
        self.ops: list[Op] = []
        self.read = False  # whether the action looked at the state

    @property
    def state(self) -> Mapping[str, JSON]:
        """The live state, with this action's writes so far; reading it makes the commit
        conditional on `version`."""
        self.read = True
        return FrozenDict(self._state) if self._state is not None else self._base

    def put(self, prop: str, value: Any) -> None:
        """Record setting `prop` to `value`; see LiveState.put."""
        self._record(self._make("put", prop, value, None))

    def delete(self, prop: str) -> None:
        """Record removing `prop`; PropertyNotFoundError if it is absent."""
        self._record(self._make("delete", prop, None, None))

    def append(self, prop: str, item: Any, *, max_len: int | None = None) -> None:
        """Record appending `item` to the list `prop`; see LiveState.append."""
        self._record(self._make("append", prop, item, max_len))

    def increment(self, prop: str, by: int | float = 1) -> None:
        """Record adding `by` to the number `prop` (read `state` for the result)."""
        self._record(self._make("increment", prop, by, None))

    def _record(self, op: Op) -> None:
        if self._state is None:
            self._state = dict(self._base)
        kind, value = evaluate(self._state, op, self.id)  # raises, with nothing recorded
        commit(self._state, op, kind, value)
        self.ops.append(op)


class Action:
    """An action of a spec: its function and the check of its arguments (see `action`)."""

    __slots__ = ("function", "name", "parameters", "struct")

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function
        self.name = function.__name__
        self.struct: Any = None  # the arguments' msgspec Struct, made by `bind`
        self.parameters: tuple[str, ...] = ()

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        # On an instance, the plain function (callable in tests); on the class, this action.
        return self if instance is None else self.function.__get__(instance, owner)

    def bind(self, spec: type) -> None:
        """Build the check of this action's arguments from its signature (at class creation).

        Raises InvalidValueError for a signature that is not (self, ctx, keyword args...).
        """
        msgspec = load_msgspec()
        where = f"{spec.__qualname__}.{self.name}"
        signature = inspect.signature(self.function)
        parameters = list(signature.parameters.values())
        if len(parameters) < 2 or any(
            p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY) for p in parameters
        ):
            raise InvalidValueError(
                f"The action {where} must take (self, ctx, ...) and named arguments, "
                f"such as `def vote(self, ctx, card: str)`; got {signature}."
            )
        hints = typing.get_type_hints(self.function, include_extras=True)
        fields: list[Any] = []
        for parameter in parameters[2:]:
            kind = hints.get(parameter.name, Any)
            if parameter.default is inspect.Parameter.empty:
                fields.append((parameter.name, kind))
            else:
                fields.append((parameter.name, kind, parameter.default))
        try:
            self.struct = msgspec.defstruct(
                f"{spec.__name__}_{self.name}", fields, kw_only=True, forbid_unknown_fields=True
            )
            msgspec.json.Decoder(self.struct)
        except (TypeError, ValueError) as error:
            raise InvalidValueError(
                f"The arguments of the action {where} cannot be checked ({error}); annotate "
                "them with types msgspec understands (builtins, Annotated, Literal, TypedDict)."
            ) from None
        self.parameters = tuple(parameter.name for parameter in parameters[2:])

    def arguments(self, args: object, subject: object) -> dict[str, Any]:
        """`args` (a mapping of argument names to values) checked against the signature.

        Raises InvalidValueError naming the action and the argument.
        """
        msgspec = load_msgspec()
        if args is None:
            args = {}
        if not isinstance(args, Mapping) or not all(type(name) is str for name in args):
            raise InvalidValueError(
                f"The arguments of the action {self.name!r} of {subject} are a mapping of "
                f"argument names to values, not {type(args).__name__}."
            )
        try:
            checked = msgspec.convert(dict(args), self.struct, strict=True)
        except msgspec.ValidationError as error:
            raise InvalidValueError(
                f"Cannot call the action {self.name!r} of {subject}: {error}; its arguments are "
                f"({', '.join(self.parameters)})."
            ) from None
        return {name: getattr(checked, name) for name in self.parameters}


def action(function: Callable[..., Any]) -> Any:
    """Make a method of a state spec an action: `@action def vote(self, ctx, card: str)`.

    The method takes the spec instance, an `ActionContext` and named arguments
    (checked against their annotations when called); it may be async. Call it
    with `Spec.call(key, "vote", {"card": "c1"})`, `client.call(...)`, the JS
    client's `live.call(...)`, PyView's `live_call(...)` or `sync.call(...)`.
    Raises InvalidValueError if it is not a function.
    """
    if not callable(function):
        raise InvalidValueError(f"@action decorates a method of a state spec, not {function!r}.")
    return Action(function)
