"""What a template sees: `live_assigns`, the live states bound to a socket as attributes.

`expose` puts it (and `live_presence`) into a socket's context once; both read the
socket's bindings at each render, so they always show the current state, the
client's while attached and a snapshot before (the first HTTP render) or after.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import fields, is_dataclass
from typing import TYPE_CHECKING, Any, Final

from .._values import EMPTY, JSON
from ._presence import LivePresence, Presence

if TYPE_CHECKING:
    from ._bindings import LiveSocket, SocketBindings

__all__ = ["ASSIGN_NAME", "PRESENCE_NAME", "LiveAssigns", "expose"]

ASSIGN_NAME: Final = "live_assigns"
PRESENCE_NAME: Final = "live_presence"


class LiveAssigns:
    """What a template sees as `live_assigns`: the live state's properties as attributes.

    `live_assigns.messages` (or `live_assigns["messages"]`) is the current value,
    read-only. It has no public methods, so a property named `items` or `get`
    still reads as the property in a template. A property that is absent is
    `Undefined` in a template (renders as nothing) and raises AttributeError or
    KeyError in Python; `"typing" in live_assigns` tests for one. A live state
    bound with `as_="lobby"` is `live_assigns.lobby`, itself a LiveAssigns (a
    name hides a default property of the same name). `LiveAssigns()` is empty,
    a default for a dataclass context's `live_assigns` field.
    """

    __slots__ = ("_named", "_state")

    def __init__(self, state: Mapping[str, JSON] = EMPTY) -> None:
        object.__setattr__(self, "_state", state)
        object.__setattr__(self, "_named", EMPTY)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)  # keep copy, pickle and friends from seeing state
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"The live state has no property {name!r}; test with "
                f"'{name}' in live_assigns, or use getattr(live_assigns, {name!r}, None)."
            ) from None

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(
            "live_assigns is read-only; write with live_assign(socket, prop, value)."
        )

    def __getitem__(self, name: str) -> Any:
        named: Mapping[str, LiveAssigns] = self._named
        if name in named:
            return named[name]
        return self._state[name]

    def __contains__(self, name: object) -> bool:
        return name in self._named or name in self._state

    def __iter__(self) -> Iterator[str]:
        yield from self._named
        yield from (name for name in self._state if name not in self._named)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LiveAssigns):
            return {n: self[n] for n in self} == {n: other[n] for n in other}
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"LiveAssigns({ {n: self[n] for n in self}!r})"

    # dataclasses.asdict deep-copies a dataclass context for the HTTP render. The
    # state is immutable, so sharing it is a faithful copy, and it keeps deepcopy
    # away from the client behind it.
    def __copy__(self) -> LiveAssigns:
        return self

    def __deepcopy__(self, memo: object) -> LiveAssigns:
        return self


def expose(socket: LiveSocket, bindings: SocketBindings) -> LiveAssigns:
    """Put `live_assigns` into the socket's context: a live view of its bindings' states."""
    assigns = BoundAssigns(bindings)
    presence = bound_presence(bindings, None)
    context = socket.context
    if isinstance(context, dict):
        context[ASSIGN_NAME] = assigns
        context[PRESENCE_NAME] = presence
    else:
        setattr(context, ASSIGN_NAME, assigns)
        if not is_dataclass(context) or PRESENCE_NAME in {f.name for f in fields(context)}:
            setattr(context, PRESENCE_NAME, presence)
    return assigns


def bound_presence(bindings: SocketBindings, name: str | None) -> LivePresence:
    """A LivePresence that reads the presence of the binding `name` (None: the default)."""

    def read() -> Presence:
        binding = bindings.by_name.get(name)
        return binding.presence if binding is not None else EMPTY

    def named() -> Mapping[str, LivePresence]:
        if name is not None:
            return EMPTY
        return {n: bound_presence(bindings, n) for n in bindings.by_name if n is not None}

    return LivePresence(read, named)


class BoundAssigns(LiveAssigns):
    """LiveAssigns that follow a socket's bindings: each client's current state, or snapshot."""

    __slots__ = ()

    def __init__(self, bindings: SocketBindings) -> None:
        object.__setattr__(self, "_state", BindingState(bindings, None))
        object.__setattr__(self, "_named", NamedAssigns(bindings))


class BindingState(Mapping[str, JSON]):
    """A Mapping that reads whatever state one binding shows now (it changes on attach)."""

    __slots__ = ("_bindings", "_name")

    def __init__(self, bindings: SocketBindings, name: str | None) -> None:
        self._bindings = bindings
        self._name = name

    def _state(self) -> Mapping[str, JSON]:
        binding = self._bindings.by_name.get(self._name)
        return binding.state if binding is not None else EMPTY

    def __getitem__(self, name: str) -> JSON:
        return self._state()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._state())

    def __len__(self) -> int:
        return len(self._state())


class NamedAssigns(Mapping[str, LiveAssigns]):
    """The named bindings of a socket, each as a LiveAssigns of its own."""

    __slots__ = ("_bindings",)

    def __init__(self, bindings: SocketBindings) -> None:
        self._bindings = bindings

    def __getitem__(self, name: str) -> LiveAssigns:
        if name not in self:
            raise KeyError(name)
        return LiveAssigns(BindingState(self._bindings, name))

    def __contains__(self, name: object) -> bool:
        # Asked on every property read of live_assigns: no LiveAssigns made to say no.
        return isinstance(name, str) and name in self._bindings.by_name

    def __iter__(self) -> Iterator[str]:
        return (name for name in self._bindings.by_name if name is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)
