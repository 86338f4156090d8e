"""The WebSocket protocol's frames: decoding requests, encoding replies, and error codes.

Every frame is one JSON object in one text message; docs/protocol.md is the
reference. This module knows the wire format and nothing about sockets.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from .._changes import Change
from .._exceptions import (
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

PROTOCOL: Final = 1
"""The protocol version this endpoint speaks, sent in the `welcome` frame."""

BATCH_QUERY: Final = "batch"
"""The query parameter (`?batch=1`) by which a client asks for batched messages: each
message is then one frame, or a JSON array of the frames queued since the last one."""
BATCH_FRAMES: Final = 256
"""At most this many frames in one batched message."""
BATCH_CHARS: Final = 256 * 1024
"""A batch takes no more frames once it holds this many characters (a lone frame may be longer)."""

WRITES: Final = frozenset({"put", "delete", "append", "increment", "reset"})
PRESENCE: Final = frozenset({"track", "untrack"})
"""Requests that change the presence; they take a write's token too."""
TOKENS: Final = WRITES | PRESENCE | {"call"}
"""Requests that take a token of the socket's write rate: writes, presence and actions."""
REQUESTS: Final = TOKENS | {"attach", "detach", "get", "ping", "presence"}

ERROR_CODES: Final[tuple[tuple[type[LiveStateError], str], ...]] = (
    # Most specific first: PropertyNotFoundError is checked before anything it might share.
    (PropertyNotFoundError, "property_not_found"),
    (StartedAnewError, "started_anew"),
    (NotFoundError, "not_found"),
    (PermissionDeniedError, "permission_denied"),
    (StateTooLargeError, "state_too_large"),
    (QuotaExceededError, "quota_exceeded"),
    (InvalidValueError, "invalid_value"),
    (BackendUnavailableError, "backend_unavailable"),
)
"""The error code for each livestate error; any other LiveStateError is `error`."""

_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
encode = _encoder.encode


class FrameError(Exception):
    """A request the endpoint refuses before doing anything: `code`, a message, its ref."""

    def __init__(self, code: str, message: str, ref: object = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref


def decode(text: str) -> dict[str, Any]:
    """Parse one request frame; raise FrameError(`bad_frame`) unless it is a valid request."""
    try:
        frame = json.loads(text)
    except ValueError as error:
        raise FrameError(
            "bad_frame", f"The frame is not valid JSON ({error}); send one JSON object per message."
        ) from None
    if not isinstance(frame, dict):
        raise FrameError("bad_frame", f"A frame must be a JSON object, not {type(frame).__name__}.")
    ref = frame.get("ref")
    if ref is not None and not (
        (type(ref) is int and abs(ref) < 2**53) or (type(ref) is str and len(ref) <= 64)
    ):
        raise FrameError(
            "bad_frame", "A frame's ref must be an integer or a string of at most 64 characters."
        )
    kind = frame.get("type")
    if kind not in REQUESTS:
        raise FrameError(
            "unknown_type",
            f"Unknown frame type {str(kind)[:64]!r}; send one of {', '.join(sorted(REQUESTS))}.",
            ref,
        )
    return frame


def field(frame: Mapping[str, Any], name: str, kind: type, what: str) -> Any:
    """`frame[name]`, which must be of type `kind`; raise FrameError(`bad_frame`) otherwise."""
    value = frame.get(name)
    if type(value) is not kind:
        raise FrameError(
            "bad_frame",
            f"A {frame['type']!r} frame needs {name!r}: {what}.",
            frame.get("ref"),
        )
    return value


def error_frame(code: str, message: str, ref: object = None, error: str | None = None) -> str:
    """An `error` frame: its code, the Python error's type name if any, and a message."""
    frame: dict[str, Any] = {"type": "error", "ref": ref, "code": code, "message": message}
    if error is not None:
        frame["error"] = error
    return encode(frame)


def livestate_error_frame(exception: LiveStateError, ref: object) -> str:
    """The `error` frame for a livestate error raised by a request."""
    code = next((code for kind, code in ERROR_CODES if isinstance(exception, kind)), "error")
    return error_frame(code, str(exception), ref, type(exception).__name__)


def presence_json(presence: Mapping[str, Any]) -> dict[str, list[Any]]:
    """A presence (identity -> metas) as JSON can carry it: identity -> list of metas."""
    return {identity: list(metas) for identity, metas in presence.items()}


def batch(frames: list[str]) -> str:
    """One message holding `frames` (encoded frames, in order) as a JSON array."""
    return "[" + ",".join(frames) + "]"


def change_body(change: Change) -> str:
    """The tail of a `change` frame, shared by every socket that receives the change."""
    value = change.value
    if change.kind == "presence":
        value = presence_json(value)
    text = encode(
        {"kind": change.kind, "prop": change.prop, "value": value, "version": change.version}
    )
    return text[1:]  # without the "{": each socket puts its own head in front
