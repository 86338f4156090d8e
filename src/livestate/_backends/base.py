"""The contract every backend keeps; the node above it is the same for all of them.

A backend only stores, orders and publishes. Validation, the ACL's parsing,
replicas and fan-out live in the node, once for every backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NamedTuple

from .._acl import ACL, Role
from .._changes import Op, StateId
from .._exceptions import NotFoundError
from .._values import JSON, Limits


@dataclass(slots=True)
class Snapshot:
    """A live state at one version: its state (read together with the version), ACL and TTL.

    `state` is a fresh dict that the caller owns; its values are frozen.
    """

    state: dict[str, JSON]
    version: int
    epoch: str
    acl: ACL
    ttl: float | None


class Mounted(NamedTuple):
    """What on_mount produced, validated and frozen, ready to store."""

    state: dict[str, JSON]
    acl: ACL
    ttl: float | None
    limits: Limits


class Message(NamedTuple):
    """What a backend publishes for each write: `op` None means the live state was stopped."""

    epoch: str
    version: int
    op: Op | None


MountFunction = Callable[[], Awaitable[Mounted]]
Handler = Callable[[Message], None]


class Backend(ABC):
    """Stores live states, applies ops atomically in version order, publishes them.

    Each live state is identified by a StateId. Its `epoch` changes every time it
    is started, so a replica never mixes two lifetimes. A backend may be shared by
    several nodes (each with its own `node` id); TTL counting is by node.
    """

    async def start(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Connect; called once by the node before first use."""

    async def aclose(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Release connections and timers; the backend is unusable afterwards."""

    @abstractmethod
    async def open(self, id: StateId, mount: MountFunction, node: str, *, hold: bool) -> Snapshot:
        """Start the live state if absent and return its snapshot.

        `mount` runs at most once per start across every node that races to open
        the same live state; the others get the winner's state. With `hold`, `node`
        holds the live state (idempotent), cancelling any TTL countdown atomically
        with the start. Without `hold`, a live state this call started begins its
        TTL countdown at once. Raises whatever `mount` raises, leaving nothing behind.
        """

    @abstractmethod
    async def release(self, id: StateId, node: str) -> None:
        """`node` no longer holds the live state; the last release starts the TTL countdown."""

    @abstractmethod
    async def read(self, id: StateId, prop: str | None = None) -> Snapshot | None:
        """The live state's snapshot (only `prop`, if given and present), or None if not running."""

    @abstractmethod
    async def apply(self, id: StateId, op: Op, role: Role) -> tuple[int, JSON]:
        """Apply `op` atomically for a caller of `role` and publish it.

        Returns the new version and, for `increment`, the new value (else anything).
        Before it returns, handlers subscribed through this backend object have
        received the message (read your writes). Raises NotFoundError,
        PermissionDeniedError (checked against the ACL stored with the live
        state), PropertyNotFoundError, InvalidValueError, StateTooLargeError or
        ConflictError (when `op.expect` is not the current version), having
        written nothing.
        """

    @abstractmethod
    async def stop(self, id: StateId, role: Role) -> None:
        """End the live state now, removing all of it, and publish that it stopped.

        Raises NotFoundError if it is not running, PermissionDeniedError unless
        `role` holds `delete`.
        """

    @abstractmethod
    async def subscribe(self, id: StateId, handler: Handler) -> None:
        """Call `handler` with every message of the live state, in version order, from now on."""

    @abstractmethod
    async def unsubscribe(self, id: StateId, handler: Handler) -> None:
        """Stop calling `handler` for the live state."""


class ConflictError(Exception):
    """A conditional write found another version than it expected; read again and retry."""


def not_running(id: StateId) -> NotFoundError:
    """The error for a call on a live state that is not running."""
    spec, key = id
    return NotFoundError(
        f"{id} is not running; start it with {spec}.start({key[:200]!r}) or attach a client first."
    )
