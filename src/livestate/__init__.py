"""livestate: shared live state for Python web apps, across a cluster of nodes.

Describe a kind of shared state with a `LiveState` subclass, attach clients to
a key with `Spec.attach(key)`, and read or write it from anywhere with the class
methods. Every write reaches every attached client, on every node, as an
ordered, versioned `Change`.
"""

from __future__ import annotations

from ._acl import ACL
from ._actions import ActionContext, action
from ._backends import Backend, MemoryBackend
from ._changes import Change
from ._client import Client, OnChange
from ._declare import Mount
from ._exceptions import (
    BackendError,
    BackendUnavailableError,
    InvalidValueError,
    LiveStateError,
    NotFoundError,
    PermissionDeniedError,
    PropertyNotFoundError,
    QuotaExceededError,
    StartedAnewError,
    StateTooLargeError,
)
from ._node import Node, current_node, lifespan, use
from ._rules import Caller, Write
from ._spec import LiveState
from ._values import FrozenDict, FrozenList, Limits

__version__ = "0.1.0"

__all__ = [
    "ACL",
    "ActionContext",
    "Backend",
    "BackendError",
    "BackendUnavailableError",
    "Caller",
    "Change",
    "Client",
    "FrozenDict",
    "FrozenList",
    "InvalidValueError",
    "Limits",
    "LiveState",
    "LiveStateError",
    "MemoryBackend",
    "Mount",
    "Node",
    "NotFoundError",
    "OnChange",
    "PermissionDeniedError",
    "PropertyNotFoundError",
    "QuotaExceededError",
    "StartedAnewError",
    "StateTooLargeError",
    "Write",
    "action",
    "current_node",
    "lifespan",
    "use",
]
