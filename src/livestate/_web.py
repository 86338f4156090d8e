"""What both web integrations (livestate.asgi and livestate.pyview) decide the same way.

Browsers send cookies with a cross-site WebSocket handshake, so a page on
another site could drive a user's sockets: a handshake's `Origin` must be the
app's own host or one the app lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ._exceptions import InvalidValueError


class OriginRule:
    """Which origins a WebSocket handshake may come from.

    A handshake passes if it has no `Origin` (not a browser), if its `Origin`
    has the same host and port as its `Host` header (the app's own host, also
    behind a proxy that keeps `Host`), or if it is listed: `"https://app.example.com"`,
    or `"*"` for any origin at all. Raises InvalidValueError for an entry that is
    neither `"*"` nor `scheme://host[:port]`.
    """

    __slots__ = ("any", "listed")

    def __init__(self, allowed: Iterable[str] | str = ()) -> None:
        entries = (allowed,) if isinstance(allowed, str) else tuple(allowed)
        for entry in entries:
            scheme, separator, rest = str(entry).partition("://")
            if entry != "*" and not (separator and scheme and rest and "/" not in rest.rstrip("/")):
                raise InvalidValueError(
                    f"An allowed origin is '*' or scheme://host[:port], such as "
                    f"'https://app.example.com', with no path; got {entry!r}."
                )
        self.any = "*" in entries
        self.listed = frozenset(entry.rstrip("/").lower() for entry in entries if entry != "*")

    def allows(self, origin: str, host: str) -> bool:
        """Whether a handshake with this `Origin` and `Host` (either may be empty) passes."""
        origin = origin.rstrip("/").lower()
        if not origin or self.any or origin in self.listed:
            return True
        scheme, _, rest = origin.partition("://")
        return bool(host) and scheme in ("http", "https") and rest == host.lower()

    def allows_headers(self, headers: Mapping[str, str]) -> bool:
        """`allows` for decoded headers with lower-case names."""
        return self.allows(headers.get("origin", ""), headers.get("host", ""))

    def allows_scope(self, scope: Mapping[str, Any]) -> bool:
        """`allows` for an ASGI scope's raw headers."""
        origin = host = b""
        for name, value in scope.get("headers", ()):
            lowered = name.lower()
            if lowered == b"origin":
                origin = value
            elif lowered == b"host":
                host = value
        return self.allows(origin.decode("latin-1"), host.decode("latin-1"))
