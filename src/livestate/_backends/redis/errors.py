"""The one place where the Redis server's error replies become livestate errors.

Every error reply a user could see passes through `translate`, which picks the
class (transient ones are BackendUnavailableError, which livestate retries
within its timeout) and writes a sentence that names the server, what was
being done and what to do about it.
"""

from __future__ import annotations

from ..._exceptions import BackendError, BackendUnavailableError

TRANSIENT = frozenset(
    ("BUSY", "LOADING", "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN", "UNBLOCKED")
)
"""Error codes that pass: retried within the call's timeout."""

RECONNECT = frozenset(("READONLY", "MASTERDOWN", "LOADING", "UNBLOCKED"))
"""Error codes after which the connection is dropped, so the next one finds the new primary
(a managed endpoint's name that moved after a failover is resolved again)."""

_AUTH = ("NOAUTH", "WRONGPASS")


def reason(error: BaseException) -> str:
    """What went wrong, for a message: the error's own text, or what it means when it has
    none (a timeout's is empty)."""
    if isinstance(error, TimeoutError) and not str(error):
        return "no answer in time"
    return str(error) or type(error).__name__


def code(error: Exception) -> str:
    """The error code an error reply starts with (BUSY, OOM, …), or '' if none."""
    head = str(error).split(" ", 1)[0]
    return head if head.isupper() else ""


def translate(error: Exception, server: object, what: str) -> BackendError:
    """The livestate error for the error reply `error` of `server`, while trying to `what`.

    `what` reads after "could not": "write 'x' of Chat 'lobby'".
    """
    text = str(error)
    kind = code(error)
    at = f"The Redis server at {server}"
    if kind == "BUSY":
        return BackendUnavailableError(
            f"{at} is busy running a long script or function (BUSY), so livestate could not "
            f"{what} within its timeout; nothing was written. Retry; SLOWLOG GET on the server "
            "shows the slow script."
        )
    if kind == "LOADING":
        return BackendUnavailableError(
            f"{at} is loading its data set into memory (LOADING), so livestate could not {what} "
            "within its timeout; nothing was written. Retry once it has loaded."
        )
    if kind in ("READONLY", "MASTERDOWN", "UNBLOCKED"):
        return BackendUnavailableError(
            f"{at} is a replica, not the primary ({kind}), so livestate could not {what}; "
            "nothing was written. livestate reconnects to follow a failover; point "
            "LIVESTATE_URL at the primary (or its failover endpoint) if this lasts."
        )
    if kind in ("TRYAGAIN", "CLUSTERDOWN"):
        return BackendUnavailableError(
            f"{at} answered {kind}: its cluster is moving or missing slots, so livestate could "
            f"not {what} within its timeout; nothing was written. Retry."
        )
    if kind == "OOM":
        return BackendError(
            f"{at} is out of memory (OOM: used_memory is over maxmemory), so livestate could "
            f"not {what}; nothing was written. Free memory on the server or raise its "
            "maxmemory; attached clients stay attached meanwhile."
        )
    if kind == "NOPERM":
        return BackendError(
            f"The Redis user of LIVESTATE_URL may not do what livestate needs to {what} "
            f"({text}); grant it the commands, keys and channels listed under 'Least "
            "privilege' in livestate's docs/redis.md."
        )
    if kind in _AUTH or "invalid username-password" in text or "invalid password" in text:
        return BackendError(
            f"{at} refused livestate's login ({text}); check the username and password in "
            "LIVESTATE_URL."
        )
    if kind == "WRONGTYPE":
        return BackendError(
            f"{at} found a key of the wrong type, so livestate could not {what} (WRONGTYPE): "
            "something other than livestate wrote to its keys (ls:{...}); stop the live state "
            "to clear them."
        )
    return BackendError(f"{at} refused when livestate tried to {what}: {text}")
