"""Write rules: who is writing (`Caller`) and what (`Write`), as a spec's `allow` sees them.

The ACL says which kind of caller may write; `allow` says what a particular
caller may write: "only the author may edit or delete this card". It runs on
the node that takes the write, before the backend sees it, for every write op
from every path. A rule that reads `write.state` makes the write conditional
on the version it read, so a write that raced ahead (the card changed hands)
makes the rule run again on the newer state instead of slipping through.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ._acl import Role
from ._exceptions import InvalidValueError, PermissionDeniedError

WriteKind = Literal["put", "delete", "append", "increment", "reset", "stop"]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who makes a write or calls an action, as the integration established it.

    `role` is `"group"` (through an attached client) or `"public"` (any other
    call); `identity` is who the user is, from the integration's trusted
    source: the WebSocket endpoint's `identify(connection)`, PyView's
    `live_state(..., identity=...)`, or the server code that acts for a user.
    None means an anonymous caller. Trusted server code passes no Caller at all,
    and rules and actions then see None. Raises InvalidValueError for a role other
    than group or public, or an identity that is not a str of 1 to 256 characters.
    """

    role: Role
    identity: str | None = None

    def __post_init__(self) -> None:
        if self.role not in ("group", "public"):
            raise InvalidValueError(f"A Caller's role is 'group' or 'public', not {self.role!r}.")
        identity = self.identity
        if identity is not None and (type(identity) is not str or not 0 < len(identity) <= 256):
            raise InvalidValueError(
                f"A Caller's identity is a str of 1 to 256 characters or None, not {identity!r}."
            )

    def __str__(self) -> str:
        who = "an anonymous caller" if self.identity is None else repr(self.identity)
        return f"{who} ({self.role})"


class NeedState(Exception):
    """Raised when a rule reads a Write's state before the node loaded it: load, run again."""


UNLOADED: Any = object()
"""A Write's state before the node loaded it."""


class Write:
    """One write as a spec's `allow` sees it.

    `kind` is put, delete, append, increment, reset or stop; `prop` the property
    (None for reset and stop); `value` the new value (put), the item (append),
    the amount (increment) or the whole new state (reset), None otherwise.
    `state` is the live state as it is now (read-only): reading it makes the
    write conditional on that version, so `allow` runs again if another write
    comes first. `allow` may therefore run more than once: give it no side effects.
    """

    __slots__ = ("_state", "kind", "prop", "read", "value")

    def __init__(
        self, kind: WriteKind, prop: str | None, value: Any, state: Mapping[str, Any] = UNLOADED
    ) -> None:
        self.kind = kind
        self.prop = prop
        self.value = value
        self._state = state
        self.read = False  # whether `allow` looked at the state

    def __repr__(self) -> str:
        return f"<Write {self.kind} {self.prop!r}>"

    @property
    def state(self) -> Mapping[str, Any]:
        """The live state now, read-only; reading it makes the write conditional on it."""
        if self._state is UNLOADED:
            raise NeedState
        self.read = True
        return self._state


def refused(
    answer: object, caller: Caller | None, what: str, subject: str
) -> PermissionDeniedError:
    """The error for a write that `allow` refused (`answer` False or its reason)."""
    who = "Trusted server code" if caller is None else f"The caller {caller}"
    reason = answer if isinstance(answer, str) and answer else "the spec's allow refused it"
    return PermissionDeniedError(f"{who} may not {what} {subject}: {reason}.")
