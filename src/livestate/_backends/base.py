"""The contract every backend keeps; the node above it is the same for all of them.

A backend stores, applies each write atomically at the next version, and
publishes it. Validation, the ACL's parsing and fan-out live in the node, and
ordering what arrives (and resyncing when something is missing) in each
replica, once for every backend.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

from .._acl import ACL, Role
from .._changes import Op, StateId, describe
from .._exceptions import NotFoundError, StartedAnewError
from .._values import JSON, Limits

if TYPE_CHECKING:
    from .._metrics import Metrics


@dataclass(slots=True)
class Snapshot:
    """A live state at one version: its state (read together with the version), ACL, TTL
    and presence (ref -> (identity, meta, the version it joined at), see _presence.py).

    `state` is a fresh dict that the caller owns; its values are frozen.
    """

    state: dict[str, JSON]
    version: int
    epoch: str
    acl: ACL
    ttl: float | None
    declared: str = ""  # what the spec that started it declared (see spec.declaration)
    presence: dict[str, tuple[str, JSON, int]] = field(default_factory=dict)


class Mounted(NamedTuple):
    """What on_mount produced, validated and frozen, ready to store, with the spec's
    class-level `declared` ACL, TTL and limits (see `spec.declaration`)."""

    state: dict[str, JSON]
    acl: ACL
    ttl: float | None
    limits: Limits
    declared: str = ""


Event = Literal["started", "stopped"]
"""A lifetime began (a new epoch, at `version`) or ended (after `version`)."""


class Message(NamedTuple):
    """What a backend publishes: a write's op at its new version, or a lifetime's start or end.

    `sent` is the writer's wall clock time (seconds), when known, for the metrics.
    """

    epoch: str
    version: int
    op: Op | Event
    sent: float = 0.0


class Applied(NamedTuple):
    """What a write did: the lifetime and version it made, its result (increment's sum), and
    whether it had been applied before (a repeat of a write id: nothing was written now)."""

    epoch: str
    version: int
    value: JSON
    repeated: bool = False


def published(epoch: str, version: int, op: Op, sent: float = 0.0) -> Message:
    """A Message for a write (written at `sent`, if known), made the fast way (one per
    write)."""
    made: Message = _new(Message, (epoch, version, op, sent))
    return made


def applied(epoch: str, version: int, value: JSON) -> Applied:
    """An Applied for a first write, made the fast way (one per write)."""
    made: Applied = _new(Applied, (epoch, version, value, False))
    return made


_new: Any = tuple.__new__


WRITE_ID_SECONDS = 10.0
"""How long, at least, a backend remembers a write id and the reply it got, so that a retry
with the same id (the library's, or the caller's `write_id`) applies once."""


class Listener(Protocol):
    """What a backend feeds for one live state: on a node, the replica of it.

    A backend only stores, orders and publishes; ordering what arrives, and
    loading a snapshot when something went missing, is the listener's job.
    """

    def wants(self, epoch: str, version: int) -> bool:
        """Whether a message at this position would be news (if not, it need not be decoded)."""

    def receive(self, message: Message) -> None:
        """One published message, as it arrived (maybe early, late or twice)."""

    def resync(self, cause: str = "reconnect") -> None:
        """Messages may have been missed (`cause`: a reconnect, an unreadable message):
        load a fresh snapshot."""

    def notice(self, kind: str, value: JSON) -> None:
        """A notice about the live state (`persist_failed`): not a write, no version."""

    def observe(self, epoch: str | None, version: int, present: int | None = None) -> None:
        """Where the server is now (epoch None: the live state is gone) and how many
        presences it lists (None: not known), as a heartbeat saw it."""


MountFunction = Callable[[], Awaitable[Mounted]]

Census = Callable[[], dict[StateId, int]]
"""What a node tells its backend: how many clients it has on each live state."""


@dataclass(slots=True)
class StateReport:
    """One live state as `survey` sees it.

    `expires_in` is the seconds until it ends if nobody renews it (None: never);
    `holders` maps each holding node to the seconds left on its lease (None: no
    lease, as on memory://); `clients` maps nodes to their clients of it;
    `present` is how many clients show in its presence.
    """

    spec: str
    key: str
    version: int
    epoch: str
    bytes: int
    ttl: float | None
    expires_in: float | None
    holders: dict[str, float | None]
    clients: dict[str, int]
    present: int = 0


@dataclass(slots=True)
class NodeReport:
    """One node as `survey` sees it: its lease (seconds left; None on memory://) and load."""

    id: str
    lease: float | None
    states: int
    clients: int


@dataclass(slots=True)
class Survey:
    """What a deployment holds now: its live states and its nodes, each sorted."""

    states: list[StateReport]
    nodes: list[NodeReport]


def first_version() -> int:
    """The version a live state starts at: the clock, in microseconds since 1970.

    A live state lost and started anew (say, after Redis restarted empty) so
    continues above every version its clients saw, whichever node starts it,
    and no version is used twice: that would take a write faster than a
    microsecond. It stays below 2**53 (what a browser holds exactly) until 2255.
    Redis scripts take the server's clock in the same way.
    """
    return time.time_ns() // 1000


class Backend(ABC):
    """Stores live states, applies ops atomically in version order, publishes them.

    Each live state is identified by a StateId. Its `epoch` changes every time it
    is started, so a replica never mixes two lifetimes. A backend may be shared by
    several nodes (each with its own `node` id); TTL counting is by node. A node
    that owns its backend sets `metrics` and `log` (else None, and livestate's logger).
    """

    metrics: Metrics | None = None
    log: logging.Logger | logging.LoggerAdapter[logging.Logger] = logging.getLogger("livestate")

    async def start(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Connect; called once by the node before first use."""

    async def aclose(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Release connections and timers; the backend is unusable afterwards."""

    def register(self, node: str, census: Census) -> None:  # noqa: B027 - optional
        """`node` uses this backend; `census()` says how many clients it has where."""

    def unregister(self, node: str) -> None:  # noqa: B027 - optional
        """`node` is gone."""

    def recount(self, node: str) -> None:  # noqa: B027 - optional
        """A client of `node` attached or detached: its census changed (a backend that
        announces it, for `survey`, should do so soon)."""

    async def survey(self, id: StateId | None = None) -> Survey:
        """Every live state (or only `id`) and every node, for `livestate inspect`.

        Raises NotImplementedError on a backend that cannot tell.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot be surveyed.")

    @abstractmethod
    async def open(self, id: StateId, mount: MountFunction, node: str, *, hold: bool) -> Snapshot:
        """Start the live state if absent and return its snapshot; a start publishes `started`.

        `mount` runs at most once per start across every node that races to open
        the same live state; the others get the winner's state. With `hold`, `node`
        holds the live state (idempotent), cancelling any TTL countdown atomically
        with the start. Without `hold`, a live state this call started begins its
        TTL countdown at once. Raises whatever `mount` raises, leaving nothing behind.
        """

    @abstractmethod
    async def release(self, id: StateId, node: str) -> None:
        """`node` no longer holds the live state; the last release starts the TTL countdown.

        The presences its clients showed there go, in one `leave`.
        """

    @abstractmethod
    async def read(
        self, id: StateId, prop: str | None = None, *, presence_only: bool = False
    ) -> Snapshot | None:
        """The live state's snapshot, or None if not running.

        Its state has only `prop`, if given (and present), or no property at all
        with `presence_only`; its presence is always whole.
        """

    @abstractmethod
    async def apply(self, id: StateId, op: Op, role: Role) -> Applied:
        """Apply `op` atomically for a caller of `role` and publish it, exactly once.

        Returns the lifetime and new version and, for `increment`, the new value.
        A `leave` whose refs are all gone already changes nothing and publishes
        nothing (its version is the current one).
        A backend that retries a call whose reply it lost makes sure the write
        still applies once; a write whose `op.write_id` it has seen within
        WRITE_ID_SECONDS answers the first one's Applied, `repeated`, writing nothing.
        Raises NotFoundError,
        PermissionDeniedError (checked against the ACL stored with the live
        state), PropertyNotFoundError, InvalidValueError, StateTooLargeError or
        ConflictError (when `op.expect` is not the current version), having
        written nothing.
        """

    @abstractmethod
    async def apply_many(
        self, id: StateId, ops: Sequence[Op], expect: int, state: Mapping[str, JSON]
    ) -> Applied:
        """Apply an action's `ops` in order, all or none, if the live state is at `expect`.

        Each op takes the next version and is published as `apply` publishes it;
        returns the lifetime and the last version. The ops are trusted (an action's:
        no ACL check) and were checked by the node against the state at `expect`.
        Raises ConflictError if the live state is not at `expect`, NotFoundError, or
        what an op raises (InvalidValueError, StateTooLargeError...), having written
        nothing. `state` is the live state at `expect`, which the node checked them against
        (a backend that does not keep the state at hand may plan the writes from it).
        """

    @abstractmethod
    async def stop(self, id: StateId, role: Role) -> None:
        """End the live state now, removing all of it, and publish that it stopped.

        Raises NotFoundError if it is not running, PermissionDeniedError unless
        `role` holds `delete`.
        """

    @abstractmethod
    async def announce(self, id: StateId, kind: str, value: JSON) -> None:
        """Hand a notice (a `kind` and a JSON `value`) to every listener of the live state,
        on every node: not a write, so it takes no version and is not ordered with them.

        Raises BackendUnavailableError or BackendError if it could not be sent.
        """

    @abstractmethod
    async def subscribe(self, id: StateId, listener: Listener) -> None:
        """Feed `listener` every message of the live state from now on, and resync signals."""

    @abstractmethod
    async def unsubscribe(self, id: StateId, listener: Listener) -> None:
        """Stop feeding `listener`."""

    # Persistence (see _persist.py): one node at a time saves a live state.

    async def claim_save(
        self, id: StateId, node: str, lease: float
    ) -> tuple[bool, str | None, int, int]:
        """Claim, or renew, `node`'s right to persist the live state for `lease` seconds.

        Another node's unexpired claim wins. Returns (whether `node` holds the claim
        now, the live state's epoch, its version, how many nodes hold the live
        state); the epoch is None when it is not running, and then the claim is
        kept for the last save: its holder's, else the first node's to ask.
        Raises NotImplementedError on a backend that cannot persist.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot persist live states.")

    async def release_save(self, id: StateId, node: str) -> None:
        """Give up `node`'s claim to persist the live state, if it holds it."""
        raise NotImplementedError(f"{type(self).__name__} cannot persist live states.")

    def save_lease(self) -> float:
        """Seconds a claim to persist lasts unless renewed (a dead saver's lapses then)."""
        return 5.0

    async def orphans(self, limit: int) -> list[StateId]:
        """Up to `limit` live states whose claim to persist lapsed unreleased (its node died).

        None by default: in one process no node dies alone.
        """
        return []


class ConflictError(Exception):
    """A conditional write found another version than it expected; read again and retry."""


def started_anew(id: StateId, op: Op) -> StartedAnewError:
    """The error for a client's write made for a lifetime of the live state that ended."""
    return StartedAnewError(
        f"Cannot {describe(op)} {id}: it ended and started anew since this client attached, "
        "so the write, made for the lifetime that ended, was not applied; the client gets the "
        "new state as a reset. Write again if it still makes sense."
    )


def not_running(id: StateId) -> NotFoundError:
    """The error for a call on a live state that is not running."""
    spec, key = id
    return NotFoundError(
        f"{id} is not running; start it with {spec}.start({key[:200]!r}) or attach a client first."
    )
