"""Writing a text frame straight to a socket under uvicorn, built once for every socket.

uvicorn's ASGI `send` encodes the text, builds the frame with websockets'
sans-I/O protocol, joins its pieces and writes them: some 3 µs of Python per
socket per frame on a 2-core VM, most of a fan-out's cost when one change goes
to 1,000 sockets. A server-to-client frame is not masked, so every socket
receiving the same text receives the same bytes: `FrameWriter` writes bytes
built once (`Frames`) to each socket's transport instead.

This is a compat module in the sense of docs/decisions.md: it reads uvicorn's
protocol object (the `send` it hands the app is that object's bound method) and
is used only where that is known to be sound, checked on every frame:

- the protocol is uvicorn's websockets-sansio one (its default WebSocket
  implementation since 0.35), with the attributes relied on below;
- the socket negotiated no extension: with permessage-deflate each socket's
  frames are compressed with a context of its own, so uvicorn's `send` does it;
- the handshake is done, the app has not closed, the peer has not closed (the
  sans-I/O connection is OPEN), the transport is not closing, and it is not
  paused for a slow reader (uvicorn's `writable`; then `send` waits, as before).

Everything else, and any socket when a check fails, goes through ASGI `send`
as before. Frames written here and uvicorn's own (pings, pongs, the close) are
whole `transport.write` calls, so they never interleave within a frame.
"""

from __future__ import annotations

from typing import Any

_SANSIO = "uvicorn.protocols.websockets.websockets_sansio_impl"
_NEEDED = ("transport", "conn", "writable", "close_sent", "disconnected", "handshake_complete")


class Frames:
    """Text frames as bytes, built once for all the sockets a flush hands them to."""

    __slots__ = ("bytes", "text")

    def __init__(self) -> None:
        self.text: str | None = None
        self.bytes = b""

    def build(self, text: str) -> bytes:
        """The whole unmasked frame carrying `text` (the last one's again if it is the same)."""
        if text is self.text:
            return self.bytes
        payload = text.encode()
        size = len(payload)
        if size < 126:
            head = bytes((0x81, size))
        elif size < 65536:
            head = bytes((0x81, 126)) + size.to_bytes(2, "big")
        else:
            head = bytes((0x81, 127)) + size.to_bytes(8, "big")
        self.text = text
        self.bytes = head + payload
        return self.bytes


class FrameWriter:
    """Writes ready frames to one uvicorn WebSocket's transport while that is sound."""

    __slots__ = ("frames", "open", "protocol")

    def __init__(self, protocol: Any, frames: Frames, open: object) -> None:
        self.protocol = protocol
        self.frames = frames
        self.open = open  # websockets' State.OPEN

    def write(self, text: str) -> bool:
        """Write `text` as one frame and say True, or say False: then use ASGI `send`."""
        protocol = self.protocol
        transport = protocol.transport
        if (
            protocol.close_sent
            or protocol.disconnected
            or not protocol.writable.is_set()
            or protocol.conn.state is not self.open
            or transport.is_closing()
        ):
            return False
        try:
            frame = self.frames.build(text)
        except UnicodeEncodeError:  # not UTF-8 (values cannot be, but be sure): as before
            return False
        transport.write(frame)
        return True


def frame_writer(send: Any, frames: Frames) -> FrameWriter | None:
    """A FrameWriter for the socket behind `send`, or None where uvicorn's `send` must be used.

    Call it after the accept: the negotiated extensions are known then.
    """
    protocol: Any = getattr(send, "__self__", None)
    if type(protocol).__module__ != _SANSIO or getattr(send, "__name__", "") != "send":
        return None
    if not all(hasattr(protocol, name) for name in _NEEDED):
        return None
    if not protocol.handshake_complete or protocol.conn.extensions:
        return None
    from websockets.protocol import State  # there, as uvicorn's sansio protocol uses it

    return FrameWriter(protocol, frames, State.OPEN)
