"""What writing a backend takes: the `Backend` contract and the types it speaks in.

A backend stores live states, applies each write atomically at the next version
and publishes it; the node above does everything else, the same for every
backend. Subclass `Backend` (its abstract methods name what each must do and
raise), and run it through `livestate.testing.check_backend` to see that it
keeps the contract livestate's own backends keep. `MemoryBackend` is the
simplest complete one to read.
"""

from __future__ import annotations

from ._backends.base import (
    WRITE_ID_SECONDS,
    Applied,
    Backend,
    Census,
    ConflictError,
    Event,
    Listener,
    Message,
    Mounted,
    MountFunction,
    NodeReport,
    Snapshot,
    StateReport,
    Survey,
    first_version,
    not_running,
    started_anew,
)
from ._backends.memory import MemoryBackend
from ._changes import Op, OpKind, StateId, evaluate

__all__ = [
    "WRITE_ID_SECONDS",
    "Applied",
    "Backend",
    "Census",
    "ConflictError",
    "Event",
    "Listener",
    "MemoryBackend",
    "Message",
    "MountFunction",
    "Mounted",
    "NodeReport",
    "Op",
    "OpKind",
    "Snapshot",
    "StateId",
    "StateReport",
    "Survey",
    "evaluate",
    "first_version",
    "not_running",
    "started_anew",
]
