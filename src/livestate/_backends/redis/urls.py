"""LIVESTATE_URL for the Redis backend: one parser for its three forms.

    redis://[[user]:password@]host[:port][/db][?query]
        one server; also rediss:// (TLS), unix:///path[?db=n], valkey:// and valkeys://
    redis+cluster://[[user]:password@]host[:port][,host[:port]…][?query]
        a cluster, by any of its nodes (the seeds); a cluster has only database 0
    redis+sentinel://[[user]:password@]host[:port][,host[:port]…]/SERVICE[/db][?query]
        the primary the Sentinels name for SERVICE; a Sentinel's port defaults to 26379

(rediss+cluster:// and rediss+sentinel:// for TLS, and the valkey spellings of
each.) Any of them takes `?prefix=name`, the namespace of the deployment's keys
and channels (`names` gives it with the database). `parse` reads any of them;
`parse_url`, `parse_cluster_url` and `parse_sentinel_url` read one each. What
the forms share is read by one piece of code: the login in front (percent-
decoded; the query's username and password win over it), the query (livestate's
own settings, numbers, and the connection parameters), each address and its
port, the TLS context of a TLS scheme (one per URL, shared by every node it
names), and the wording of every error, an InvalidValueError that names the
part.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from ..._exceptions import InvalidValueError
from .codec import Names
from .resp import Endpoint

_FORMS = {
    "redis": "server", "valkey": "server", "rediss": "server", "valkeys": "server",
    "unix": "server",
    "redis+cluster": "cluster", "valkey+cluster": "cluster",
    "rediss+cluster": "cluster", "valkeys+cluster": "cluster",
    "redis+sentinel": "sentinel", "valkey+sentinel": "sentinel",
    "rediss+sentinel": "sentinel", "valkeys+sentinel": "sentinel",
}  # fmt: skip
_TLS_SCHEMES = ("rediss", "valkeys")
_USE = {
    "server": "is not a Redis URL: use redis://, rediss:// or unix://",
    "cluster": "is not a cluster URL: use redis+cluster://host:port,… or rediss+cluster:// for TLS",
    "sentinel": "is not a Sentinel URL: use redis+sentinel://host:port,…/SERVICE, or "
    "rediss+sentinel:// for TLS",
}
_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
_TLS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname")
_PARAMETERS = ("db", "username", "password", "client_name", "prefix", *_TLS)
_SENTINEL_LOGIN = ("sentinel_username", "sentinel_password")


@dataclass(frozen=True)
class ClusterSeeds:
    """A cluster, by the nodes a URL names to read its slot map from (any node will do)."""

    seeds: tuple[Endpoint, ...]

    def __str__(self) -> str:
        return f"the cluster of {', '.join(map(str, self.seeds))}"


@dataclass(frozen=True)
class SentinelService:
    """A service that Sentinels watch: where they are, its name, and how to log in to its
    data nodes (`primary` has their login, database and TLS; its host and port are
    placeholders)."""

    sentinels: tuple[Endpoint, ...]
    name: str
    primary: Endpoint

    def __str__(self) -> str:
        return f"the primary of {self.name!r} (Sentinels {', '.join(map(str, self.sentinels))})"


Target = Endpoint | ClusterSeeds | SentinelService
"""What a URL names: one server, a cluster, or a service the Sentinels watch."""


PREFIX_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
"""What a `?prefix=` may hold: nothing that a hash tag, a key's `:` or a SCAN pattern reads."""


def names(url: str, target: Target) -> Names:
    """Where the deployment of `url` (which `parse` took, naming `target`) keeps its keys
    and channels: `?prefix=` (default `ls`) and the database.

    Raises InvalidValueError for a prefix that is not 1 to 64 of [A-Za-z0-9_.-].
    """
    query = parse_qsl(urlsplit(url).query, keep_blank_values=True)
    given = [value for name, value in query if name == "prefix"]
    prefix = given[-1] if given else "ls"
    if not 0 < len(prefix) <= 64 or not set(prefix) <= PREFIX_CHARACTERS:
        raise InvalidValueError(
            f"The prefix in LIVESTATE_URL must be 1 to 64 letters, digits, '_', '.' or '-' "
            f"(it names the deployment's keys, as prefix:{{spec:key}}:...), not {prefix!r}."
        )
    if isinstance(target, Endpoint):
        db = target.db
    elif isinstance(target, SentinelService):
        db = target.primary.db
    else:
        db = 0  # a cluster has only database 0
    return Names(prefix, db)


def form(url: str) -> str:
    """Which form `url` has: 'server', 'cluster' or 'sentinel' ('' for none of them)."""
    return _FORMS.get(url.partition("://")[0].lower(), "")


def parse(url: str, settings: Mapping[str, float]) -> tuple[Target, dict[str, float]]:
    """What any of the three forms names, and the values of livestate's own `settings`
    in it (whose defaults `settings` gives).

    Raises InvalidValueError, naming the part, for a URL livestate cannot use.
    """
    kind = form(url)
    if kind == "cluster":
        seeds, values = parse_cluster_url(url, settings)
        return ClusterSeeds(seeds), values
    if kind == "sentinel":
        return parse_sentinel_url(url, settings)
    return parse_url(url, settings)


def parse_url(url: str, settings: Mapping[str, float]) -> tuple[Endpoint, dict[str, float]]:
    """The server a `redis://` URL names, and livestate's `settings` in it.

    Accepts redis://, rediss:// (TLS), unix:// and their valkey spellings, with
    `[[username]:password@]`, a `/db` path (`?db=` for unix://) and the query
    parameters db, username, password, client_name, ssl_ca_certs, ssl_certfile,
    ssl_keyfile, ssl_cert_reqs (none, optional, required) and ssl_check_hostname,
    plus the names in `settings` (numbers, whose defaults `settings` gives).
    Raises InvalidValueError for anything else.
    """
    parts = _Url(url, "server", settings)
    if parts.scheme == "unix":
        socket = unquote(parts.path)
        return parts.endpoint("127.0.0.1", 6379, parts.db(""), socket), parts.values
    host, port = parts.address(parts.addresses, 6379, "server")
    return parts.endpoint(host or "127.0.0.1", port, parts.db(parts.path.strip("/"))), parts.values


def parse_cluster_url(
    url: str, settings: Mapping[str, float]
) -> tuple[tuple[Endpoint, ...], dict[str, float]]:
    """The seeds a `redis+cluster://` URL names, and livestate's `settings` in it.

    The login and the query (a redis:// URL's parameters) apply to every seed. A
    cluster has only database 0. Raises InvalidValueError, naming the part, for
    anything else.
    """
    parts = _Url(url, "cluster", settings)
    path = parts.path.strip("/")
    if path not in ("", "0"):
        raise InvalidValueError(
            f"LIVESTATE_URL {url!r} names database {path!r}, but a cluster has only database 0: "
            "leave the path out."
        )
    db = parts.db("")
    seeds = tuple(parts.endpoint(host, port, db) for host, port in parts.addresses_list("seed"))
    return seeds, parts.values


def parse_sentinel_url(
    url: str, settings: Mapping[str, float]
) -> tuple[SentinelService, dict[str, float]]:
    """The service a `redis+sentinel://` URL names, and livestate's `settings` in it.

    The login in front is the data nodes'; the query parameters `sentinel_username`
    and `sentinel_password` are the Sentinels'; the other query parameters are a
    redis:// URL's (the TLS ones apply to the Sentinels too). Raises
    InvalidValueError, naming the part, for anything else.
    """
    parts = _Url(url, "sentinel", settings, _SENTINEL_LOGIN)
    path = [part for part in parts.path.split("/") if part]
    if not path or len(path) > 2:
        raise InvalidValueError(
            f"LIVESTATE_URL {url!r} must name the Sentinel service after the addresses, "
            "as redis+sentinel://host:port/SERVICE (optionally /SERVICE/db)."
        )
    primary = parts.endpoint("primary", 6379, parts.db(path[1] if len(path) > 1 else ""))
    # The Sentinels' own login: a username counts only beside a password, as in AUTH.
    password = parts.options.get("sentinel_password") or None
    username = (parts.options.get("sentinel_username") or None) if password else None
    sentinels = tuple(
        Endpoint(host, port, tls=parts.tls, username=username, password=password)
        for host, port in parts.addresses_list("Sentinel")
    )
    return SentinelService(sentinels, path[0], primary), parts.values


class _Url:
    """A URL of one form cut into the parts every form shares, with its query read:
    `options` (the connection parameters), `values` (livestate's `settings`) and `tls`."""

    def __init__(
        self, url: str, kind: str, settings: Mapping[str, float], extra: tuple[str, ...] = ()
    ) -> None:
        split = urlsplit(url)
        if _FORMS.get(split.scheme) != kind:
            raise InvalidValueError(f"LIVESTATE_URL {url!r} {_USE[kind]}.")
        self.url = url
        self.scheme = split.scheme.partition("+")[0]
        self.kind = kind
        login, _, self.addresses = split.netloc.rpartition("@")
        user, _, password = login.partition(":")
        self.username = unquote(user) if user else None
        self.password = unquote(password) if password else None
        self.path = split.path
        self.values = dict(settings)
        self.options: dict[str, str] = {}
        for name, value in parse_qsl(split.query):
            if name in self.values:
                try:
                    self.values[name] = float(value)
                except ValueError:
                    raise InvalidValueError(
                        f"The {name} in LIVESTATE_URL must be a number of seconds, not {value!r}."
                    ) from None
            elif name in _PARAMETERS or name in extra:
                self.options[name] = value
            else:
                known = ", ".join([*settings, *_PARAMETERS, *extra])
                raise InvalidValueError(
                    f"LIVESTATE_URL has the parameter {name!r}, which livestate does not know; "
                    f"use one of {known}."
                )
        # One context for every node of the URL: they share its CA and certificate.
        self.tls = _context(self.options) if self.scheme in _TLS_SCHEMES else None

    def endpoint(self, host: str, port: int, db: int, path: str | None = None) -> Endpoint:
        """A data node's endpoint with this URL's login, TLS and client name."""
        return Endpoint(
            host=host,
            port=port,
            path=path,
            tls=self.tls,
            username=self.options.get("username") or self.username,
            password=self.options.get("password") or self.password,
            db=db,
            client_name=self.options.get("client_name"),
        )

    def db(self, path: str) -> int:
        """The database: `?db=`, else the one `path` names, else 0."""
        text = self.options.get("db") or path or "0"
        if not text.isdigit():
            raise InvalidValueError(
                f"The database in LIVESTATE_URL must be a number, not {text!r}."
            )
        return int(text)

    def addresses_list(self, role: str) -> list[tuple[str, int]]:
        """Host and port of each address in the comma-separated list."""
        default = 26379 if self.kind == "sentinel" else 6379
        found = []
        for text in (part.strip() for part in self.addresses.split(",")):
            if not text:
                raise InvalidValueError(
                    f"LIVESTATE_URL {self.url!r} has an empty {role} address: list host:port "
                    "pairs separated by commas."
                )
            found.append(self.address(text, default, role))
        return found

    def address(self, text: str, default_port: int, role: str) -> tuple[str, int]:
        """Host and port of `host`, `host:port` or `[IPv6]:port` (the host lowercased)."""
        port: str | None
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else (rest or None)
        elif ":" in text:
            host, _, port = text.rpartition(":")
        else:
            host, port = text, None
        if port is None:
            return host.lower(), default_port
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise InvalidValueError(
                f"The {role} address {text!r} in LIVESTATE_URL {self.url!r} has the port "
                f"{port!r}; a port is a number from 1 to 65535."
            )
        return host.lower(), int(port)


def _context(query: dict[str, str]) -> ssl.SSLContext:
    reqs = query.get("ssl_cert_reqs", "required")
    if reqs not in _CERT_REQS:
        raise InvalidValueError(
            f"ssl_cert_reqs in LIVESTATE_URL must be none, optional or required, not {reqs!r}."
        )
    context = ssl.create_default_context(cafile=query.get("ssl_ca_certs"))
    context.check_hostname = reqs != "none" and query.get("ssl_check_hostname", "true") in (
        "true", "1", "yes",
    )  # fmt: skip
    context.verify_mode = _CERT_REQS[reqs]
    if "ssl_certfile" in query:
        context.load_cert_chain(query["ssl_certfile"], query.get("ssl_keyfile"))
    return context
