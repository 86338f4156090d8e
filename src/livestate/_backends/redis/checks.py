"""What the Redis backend checks of a server before and while it uses it: that the data
is in this release's layout, and that the server will not evict live state keys.
"""

from __future__ import annotations

from .dispatch import Dispatcher
from .replies import layout_error
from .resp import ReplyError
from .scripts import LAYOUT
from .transport import Log


async def check_layout(dispatcher: Dispatcher) -> None:
    """Claim the server for this release's layout (`ls:layout`), unless another has it.

    Raises BackendError if the server holds another release's layout, and
    BackendUnavailableError if it does not answer in time.
    """
    doing = "check its data layout"
    layout = dispatcher.names.key("layout")
    await dispatcher.call(layout, "SET", layout, LAYOUT, "NX", doing=doing)
    found = await dispatcher.call(layout, "GET", layout, doing=doing)
    if found != str(LAYOUT):
        raise layout_error(None, found, dispatcher.transport.server)


class EvictionPolicy:
    """The server's maxmemory-policy as last read: warned about when it may evict keys."""

    def __init__(self) -> None:
        self.policy: str | None = None  # "unreadable" once CONFIG was refused

    async def check(
        self,
        dispatcher: Dispatcher,
        log: Log,
    ) -> None:
        """Read the policy again; warn when it changed to one that may evict.

        Raises BackendUnavailableError if the server does not answer in time.
        """
        if self.policy == "unreadable":
            return
        server = dispatcher.transport.server
        try:
            # Sent as it is: a refusal is an answer here, not an error.
            reply = await dispatcher.transport.call(
                dispatcher.names.key("layout"), "CONFIG", "GET", "maxmemory-policy"
            )
        except ReplyError:
            self.policy = "unreadable"
            log.info(
                "livestate could not read maxmemory-policy on %s (CONFIG is refused, as on "
                "many managed services); make sure it is noeviction.",
                server,
            )
            return
        policy = reply[1] if len(reply) > 1 else "noeviction"
        if policy != self.policy and policy != "noeviction":
            log.warning(
                "The Redis server at %s has maxmemory-policy %s, so it may evict live state "
                "keys under memory pressure, and clients would see their live state restart; "
                "set maxmemory-policy noeviction (or give it enough memory).",
                server,
                policy,
            )
        self.policy = policy
