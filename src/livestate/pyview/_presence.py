"""What a PyView template sees as `live_presence`: who is in the view's live states.

`live_presence` is a read-only Mapping, identity -> read-only list of metas (one meta per
tracked client of that identity, in join order), of the socket's default live
state. A live state bound with `as_="lobby"` is `live_presence.lobby`, itself a
LivePresence. It reads the client's presence at each render, so it is always
current; the re-render after each presence change is `livestate.pyview`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from .._values import EMPTY, JSON

__all__ = ["LivePresence", "Presence"]

Presence = Mapping[str, Sequence[JSON]]
"""Who is in a live state: identity -> its metas, one per tracked client, in join order."""


def _nobody() -> Presence:
    return EMPTY


def _no_names() -> Mapping[str, LivePresence]:
    return EMPTY


class LivePresence(Mapping[str, Sequence[JSON]]):
    """Who is in a socket's live state, for templates: identity -> read-only list of metas.

    A Mapping (`{% for who, metas in live_presence.items() %}`, `live_presence|len`,
    `"ann" in live_presence`). In a template `live_presence.ann` reads an
    identity's metas too, unless a live state bound `as_="ann"` hides it:
    `live_presence.lobby` is the presence of the live state bound as `lobby`
    (Mapping methods such as `items` come first, so do not bind one as `items`).
    `LivePresence()` is empty, a default for a dataclass context's
    `live_presence` field. Raises KeyError for an identity that is not there.
    """

    __slots__ = ("_named", "_read")
    _read: Callable[[], Presence]
    _named: Callable[[], Mapping[str, LivePresence]]

    def __init__(
        self,
        read: Callable[[], Presence] = _nobody,
        named: Callable[[], Mapping[str, LivePresence]] = _no_names,
    ) -> None:
        object.__setattr__(self, "_read", read)
        object.__setattr__(self, "_named", named)

    def __getitem__(self, identity: str) -> Sequence[JSON]:
        return self._read()[identity]

    def __iter__(self) -> Iterator[str]:
        return iter(self._read())

    def __len__(self) -> int:
        return len(self._read())

    def __contains__(self, identity: object) -> bool:
        return identity in self._read()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)  # keep copy, pickle and friends from seeing it
        named = self._named()
        if name in named:
            return named[name]
        presence = self._read()
        if name in presence:
            return presence[name]
        raise AttributeError(
            f"Nobody is in this live state as {name!r}, and no live state is bound as "
            f"{name!r}; test with '{name}' in live_presence."
        )

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("live_presence is read-only; change it with live_track(socket, ...).")

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(self.items()) == dict(other.items())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"LivePresence({dict(self.items())!r})"

    # dataclasses.asdict deep-copies a dataclass context for the HTTP render: the
    # presence read is immutable, so sharing it is a faithful copy.
    def __copy__(self) -> LivePresence:
        return self

    def __deepcopy__(self, memo: object) -> LivePresence:
        return self
