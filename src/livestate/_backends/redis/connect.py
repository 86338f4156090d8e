"""Which transport a LIVESTATE_URL gets, started: the one place that tells deployments apart.

A `redis+cluster://` URL gets a ClusterTransport, a `redis+sentinel://` URL a
SentinelTransport, and a `redis://` URL a StandaloneTransport, unless its server
says it is a cluster node (it answers CLUSTER MYID): any node of a cluster will do
as the only address, and routing by slot starts from there.
"""

from __future__ import annotations

from ..._exceptions import BackendUnavailableError, InvalidValueError
from .cluster import ClusterTransport
from .errors import reason
from .resp import Endpoint, NotRedisError, ReplyError
from .standalone import SentinelTransport, StandaloneTransport
from .topology import cluster_enabled
from .transport import Events, Log, Transport
from .urls import ClusterSeeds, Target


async def open_transport(
    target: Target,
    timeout: float,  # noqa: ASYNC109 - the bound of each call the transport makes, kept
    heartbeat: float,
    events: Events,
    log: Log,
) -> Transport:
    """The transport to what `target` names, started (ready for calls; not listening yet).

    Raises BackendUnavailableError if it cannot be reached in time, BackendError if it
    refuses the login, and InvalidValueError if a redis:// URL names a database other
    than 0 on a cluster node.
    """
    if isinstance(target, Endpoint) and await _is_cluster_node(target, timeout):
        target = ClusterSeeds((target,))
    transport: Transport
    if isinstance(target, ClusterSeeds):
        transport = ClusterTransport(target, timeout, events, log)
    elif isinstance(target, Endpoint):
        transport = StandaloneTransport(target, timeout, heartbeat, events, log)
    else:
        transport = SentinelTransport(target, timeout, heartbeat, events, log)
    try:
        await transport.start()
    except BaseException:
        await transport.aclose()
        raise
    return transport


# One bound for the connect and the reply, as cluster_enabled's.
async def _is_cluster_node(endpoint: Endpoint, timeout: float) -> bool:  # noqa: ASYNC109
    """Whether the server a redis:// URL names is a cluster node (then its /db must be 0)."""
    try:
        clustered = await cluster_enabled(endpoint, timeout)
    except NotRedisError as error:
        raise BackendUnavailableError(f"The server at {endpoint} {error}.") from None
    except TimeoutError:
        raise BackendUnavailableError(
            f"The Redis server at {endpoint} did not answer within {timeout:g} s; check that "
            "it runs and is reachable at that address, then retry."
        ) from None
    except OSError as error:
        raise BackendUnavailableError(
            f"The Redis server at {endpoint} could not be reached ({reason(error)}); check "
            "that it runs and is reachable, then retry."
        ) from None
    except ReplyError:
        return False  # CLUSTER refused (ACL, a managed service): not a cluster to us
    if clustered and endpoint.db:
        raise InvalidValueError(
            f"LIVESTATE_URL names database {endpoint.db}, but {endpoint} is a cluster "
            "node and a cluster has only database 0: leave the /db out."
        )
    return clustered
