"""The errors livestate raises, all under one root.

    LiveStateError
    ├── NotFoundError                 the live state is not running
    │   └── StartedAnewError          it ended and started anew since the client attached
    ├── PropertyNotFoundError         the property is absent (also a KeyError)
    ├── PermissionDeniedError         the ACL forbids the call (also a PermissionError)
    ├── InvalidValueError             a value, key, ACL or argument is not valid (also a ValueError)
    ├── StateTooLargeError            a value or the whole state is over its size limit
    ├── QuotaExceededError            a node runs as many live states as it may
    └── BackendError                  the backend refused the call (login, ACL, memory, …)
        └── BackendUnavailableError   the backend did not answer in time, or is busy: retry

Every message is a full sentence that names the live state, the property where
there is one, and what to do next.
"""

from __future__ import annotations


class LiveStateError(Exception):
    """The root of every error that livestate raises."""


class NotFoundError(LiveStateError):
    """The live state is not running: start it, or attach a client, first."""


class StartedAnewError(NotFoundError):
    """The live state a client attached to ended and started anew before its write arrived.

    The write was not applied (it was made for the lifetime that ended); the client
    gets the new lifetime's whole state as a `reset` (or `stopped`). Look at it, then
    write again if the write still makes sense.
    """


class PropertyNotFoundError(LiveStateError, KeyError):
    """The live state is running but has no such property."""

    def __str__(self) -> str:
        # KeyError's own __str__ quotes its argument, which would mangle the sentence.
        return str(self.args[0]) if self.args else ""


class PermissionDeniedError(LiveStateError, PermissionError):
    """The live state's ACL does not grant this permission to this kind of caller."""


class InvalidValueError(LiveStateError, ValueError):
    """A value, key, property name, ACL or argument is not valid; nothing was written."""


class StateTooLargeError(LiveStateError):
    """A value, or the whole live state, would be over its size limit; nothing was written."""


class QuotaExceededError(LiveStateError):
    """A node already runs as many live states as its limit (or its spec's) allows; nothing
    was started. Detach or stop some, or raise the limit."""


class BackendError(LiveStateError):
    """The backend refused the call: a wrong login, a missing permission, no memory left.

    The message names the server and says what to change; nothing was written.
    """


class BackendUnavailableError(BackendError):
    """The backend did not answer in time, or was busy or loading: retry.

    livestate has already retried within its timeout. A write that raises this
    may or may not have happened; it never happens twice.
    """
