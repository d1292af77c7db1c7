"""API Gateway's 32 KB WebSocket frame limit, which aiohttp cannot enforce by itself.

aiohttp limits whole messages (``max_msg_size``), not frames. API Gateway limits both: a
message may be up to 128 KB, but sent as frames of at most 32 KB each, and a bigger frame
closes the connection with ``1009``. :class:`GuardedWebSocketResponse` puts a
:class:`FrameGuard` in front of aiohttp's frame reader: it reads only the frame headers as
the bytes pass (no copy), and at the first frame over the limit hands the reader's queue
the error aiohttp itself raises for a message too big, so the connection ends the same way.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import WebSocketError, WSCloseCode, web

__all__ = ["MAX_FRAME_BYTES", "FrameGuard", "GuardedWebSocketResponse"]

_log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 32 * 1024  # API Gateway: WebSocket frame size

_EOF = (True, b"")


class FrameGuard:
    """Wraps aiohttp's ``WebSocketReader`` (its ``feed_data``/``feed_eof``), refusing any
    frame whose payload is longer than ``limit``: the bytes before that frame are read as
    usual, then ``queue`` gets ``WebSocketError(1009)`` and nothing more is read."""

    def __init__(self, reader: Any, queue: Any, limit: int = MAX_FRAME_BYTES) -> None:
        self._reader = reader
        self._queue = queue
        self._limit = limit
        self._header = bytearray()  # the header of the next frame, as far as it came
        self._payload_left = 0  # bytes of the current frame's payload not yet seen
        self._refused = False

    def feed_eof(self) -> None:
        self._reader.feed_eof()

    def feed_data(self, data: bytes | bytearray | memoryview) -> tuple[bool, bytes]:
        if self._refused:
            return _EOF
        view = memoryview(data)
        at = self._scan(view)
        if at is None:
            return self._reader.feed_data(data)  # type: ignore[no-any-return]
        if at:
            eof, tail = self._reader.feed_data(view[:at])
            if eof:
                return eof, tail
        self._refused = True
        return _EOF

    def _scan(self, view: memoryview) -> int | None:
        """Follow the frame headers through ``view``; the offset where a frame over the
        limit starts (its error handed over), or None."""
        i, n = 0, len(view)
        while i < n:
            if self._payload_left:
                step = min(self._payload_left, n - i)
                self._payload_left -= step
                i += step
                continue
            start = i - len(self._header)
            while i < n and len(self._header) < _header_size(self._header):
                self._header.append(view[i])
                i += 1
            if len(self._header) < _header_size(self._header):
                return None  # the header goes on in the next chunk
            length = _payload_length(self._header)
            self._header.clear()
            if length > self._limit:
                self._queue.set_exception(
                    WebSocketError(
                        WSCloseCode.MESSAGE_TOO_BIG,
                        f"Frame size {length} exceeds limit {self._limit}",
                    )
                )
                return max(start, 0)
            self._payload_left = length
        return None


def _header_size(header: bytearray) -> int:
    """How long the frame header beginning with ``header`` is (2 until that is known)."""
    if len(header) < 2:
        return 2
    length = header[1] & 0x7F
    extended = 2 if length == 126 else 8 if length == 127 else 0
    masked = 4 if header[1] & 0x80 else 0
    return 2 + extended + masked


def _payload_length(header: bytearray) -> int:
    length = header[1] & 0x7F
    if length == 126:
        return int.from_bytes(header[2:4], "big")
    if length == 127:
        return int.from_bytes(header[2:10], "big")
    return length


class GuardedWebSocketResponse(web.WebSocketResponse):
    """A ``WebSocketResponse`` whose incoming frames pass a :class:`FrameGuard` first.

    The guard goes in as the connection is upgraded, before any byte after the handshake
    is read (bytes that came with the handshake are fed through it too). Should aiohttp's
    internals change shape, frames go unguarded, said once in the log."""

    _unguarded_said = False

    def __init__(self, *args: Any, max_frame_size: int = MAX_FRAME_BYTES, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_frame_size = max_frame_size

    def _post_start(self, request: web.BaseRequest, protocol: str | None, writer: Any) -> None:
        handler = request.protocol
        tail = getattr(handler, "_message_tail", None)
        if not isinstance(tail, bytes):
            super()._post_start(request, protocol, writer)
            self._say_unguarded()
            return
        handler._message_tail = b""  # held back: it goes through the guard below
        super()._post_start(request, protocol, writer)
        reader = getattr(handler, "_payload_parser", None)
        queue = getattr(self, "_reader", None)
        if reader is None or queue is None or not hasattr(queue, "set_exception"):
            if tail:
                handler.data_received(tail)
            self._say_unguarded()
            return
        guard = FrameGuard(reader, queue, self._max_frame_size)
        handler._payload_parser = guard
        if tail:
            guard.feed_data(tail)

    @classmethod
    def _say_unguarded(cls) -> None:
        if not cls._unguarded_said:
            cls._unguarded_said = True
            _log.warning("front door: this aiohttp cannot be given a frame limit; 128 KB only")
