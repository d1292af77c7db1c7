"""The 32 KB frame guard, fed the bytes of real frames cut at every possible place."""

from __future__ import annotations

import os
import struct

import pytest
from aiohttp import WebSocketError

from bridge.front.frames import FrameGuard


def frame(payload: bytes, *, opcode: int = 0x1, fin: bool = True, masked: bool = True) -> bytes:
    """One WebSocket frame as a client sends it (RFC 6455 5.2)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    mask_bit = 0x80 if masked else 0
    n = len(payload)
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 65536:
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class Reader:
    def __init__(self) -> None:
        self.data = bytearray()

    def feed_data(self, data: bytes | memoryview) -> tuple[bool, bytes]:
        self.data += data
        return False, b""

    def feed_eof(self) -> None:
        pass


class Queue:
    def __init__(self) -> None:
        self.errors: list[BaseException] = []

    def set_exception(self, exc: BaseException) -> None:
        self.errors.append(exc)


def feed(stream: bytes, cuts: list[int], limit: int = 100) -> tuple[Reader, Queue, bool]:
    reader, queue = Reader(), Queue()
    guard = FrameGuard(reader, queue, limit)
    refused = False
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        eof, _ = guard.feed_data(stream[a:b])
        refused = refused or eof
    return reader, queue, refused


GOOD = frame(b"a" * 5) + frame(b"b" * 100, fin=False) + frame(b"c" * 100, opcode=0, masked=False)
BIG = frame(b"d" * 300)  # 2-byte extended length
HUGE = frame(b"e" * 70000)  # 8-byte extended length


@pytest.mark.parametrize("cut", range(len(GOOD) + 1))
def test_frames_within_the_limit_pass_whole_wherever_the_chunks_end(cut: int) -> None:
    reader, queue, refused = feed(GOOD, [cut])
    assert bytes(reader.data) == GOOD and queue.errors == [] and not refused


@pytest.mark.parametrize("cut", range(len(GOOD) + 12))
def test_a_frame_over_the_limit_stops_reading_at_its_first_byte(cut: int) -> None:
    reader, queue, refused = feed(GOOD + BIG + GOOD, [cut])
    assert refused
    big_header = 2 + 2 + 4  # a chunk ending inside it was passed on before it was known
    within_header = len(GOOD) < cut < len(GOOD) + big_header
    assert bytes(reader.data) == ((GOOD + BIG)[:cut] if within_header else GOOD)
    [error] = queue.errors
    assert isinstance(error, WebSocketError) and error.code == 1009
    assert "300" in str(error)


def test_a_64_bit_length_is_read() -> None:
    reader, queue, refused = feed(GOOD + HUGE, [3, len(GOOD) + 20], limit=65536)
    assert refused and bytes(reader.data) == GOOD
    assert "70000" in str(queue.errors[0])


def test_nothing_is_read_after_the_refusal() -> None:
    reader, queue = Reader(), Queue()
    guard = FrameGuard(reader, queue, 100)
    assert guard.feed_data(BIG) == (True, b"")
    assert guard.feed_data(GOOD) == (True, b"")
    assert reader.data == b"" and len(queue.errors) == 1
