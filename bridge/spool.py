"""A durable spool: an append-only log on local disk for sources that cannot be read again.

A websocket feed has no offsets and no acknowledgements, and a webhook's sender is told
"received" once: what the bridge read exists only in the bridge. Such a source appends
each item to a :class:`Spool` before it reads the next one (or answers its sender), and
the pipeline reads from the spool and acknowledges positions in it, so a ``kill -9``
loses nothing that was read: the item was written to the file (the kernel has it) before
anything else happened.

Layout: ``folder/<first seq, 20 digits>.log`` segment files of entries, and
``folder/position.json`` with the acknowledged position (everything up to it is done and
may be deleted) and a small note its owner keeps with it (e.g. per-partition progress).

Entry: ``<length u32><crc32 u32><seq u64><time f64><flags u8><tag u32>`` then ``length``
payload bytes; the CRC covers all after itself. ``flags`` and ``tag`` are the writer's
(the websocket source: binary frame or not, and the connection it came over). On open, the last
segment is read to its end and cut back at the first entry that is incomplete or fails
its CRC (a torn write: a power cut, a full disk). Sequence numbers start at 1 and go up by
one, across restarts.

Durability against a power cut (``fsync``): ``"frame"``: :meth:`Spool.append` returns
only once the entry is on disk; ``"batch"``: entries are written at once and one ``fsync``
at a time covers all written since the previous one (group commit), :meth:`durable`
waits for it; ``"interval"``: an ``fsync`` every ``fsync_interval`` seconds; ``"never"``:
the operating system's choice. A ``kill -9`` of the bridge loses nothing in any mode.

Bounds: when the segments take ``max_bytes`` or more, :meth:`append` waits (its caller
stops reading its source, whose own flow control pushes back) until acknowledgements
free whole segments.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import struct
import time
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

from bridge.errors import BridgeError

__all__ = [
    "BINARY",
    "Entry",
    "Spool",
    "SpoolCursor",
    "SpoolError",
    "Sync",
    "folder_of",
    "peek",
    "shared",
]

_log = logging.getLogger(__name__)

Sync = Literal["frame", "batch", "interval", "never"]

_HEAD = struct.Struct("<IIQdBI")  # length, crc32, seq, time, flags, tag
_MAX_ENTRY = 64 * 1024 * 1024
_SUFFIX = ".log"
BINARY = 1  # flags: the payload is a binary frame


class SpoolError(BridgeError):
    """The spool's files cannot be written or read (a full or read-only disk...)."""


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    time: float  # epoch seconds it was appended
    payload: bytes
    flags: int = 0
    tag: int = 0
    #: where it was read: (its segment's first seq, its byte offset there); see ``scan``
    where: tuple[int, int] = (0, 0)

    @property
    def binary(self) -> bool:
        return bool(self.flags & BINARY)


def _encode(entry: Entry) -> bytes:
    body = _HEAD.pack(0, 0, entry.seq, entry.time, entry.flags, entry.tag)[8:] + entry.payload
    crc = zlib.crc32(body)
    return struct.pack("<II", len(entry.payload), crc) + body


def _read_entry(f: BinaryIO, segment: int = 0) -> Entry | None:
    """The next whole, intact entry of ``f`` (of the segment whose first seq is
    ``segment``), or None (end of file, or a torn tail)."""
    start = f.tell()
    head = f.read(_HEAD.size)
    if len(head) < _HEAD.size:
        return None
    length, crc, seq, at, flags, tag = _HEAD.unpack(head)
    if length > _MAX_ENTRY:
        return None
    payload = f.read(length)
    if len(payload) < length or zlib.crc32(head[8:] + payload) != crc:
        return None
    return Entry(seq, at, payload, flags, tag, (segment, start))


@dataclass(slots=True)
class _Segment:
    first: int
    path: Path
    last: int  # seq of its last entry (first - 1 while empty)
    size: int


class Spool:
    """One spool in ``folder``; ``await open()`` before use, ``await aclose()`` after.

    Writers: ``await append(payload) -> seq``. Readers: ``cursor(after).take(n)``
    (entries with ``seq > after`` in order) with ``await wait_written(position)`` for
    new ones, or ``scan(after, upto)``; then ``await ack(upto, note)`` once everything
    up to ``upto`` is done. ``acked`` and
    ``note`` are what the last ``ack`` stored (0 and {} for a new spool)."""

    def __init__(
        self,
        folder: str | Path,
        *,
        max_bytes: int = 256 * 1024 * 1024,
        segment_bytes: int | None = None,
        sync: Sync = "batch",
        fsync_interval: float = 0.1,
    ) -> None:
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes or max(64 * 1024, min(16 << 20, max_bytes // 8))
        self.sync = sync
        self.fsync_interval = fsync_interval
        self.acked = 0
        self.note: dict[str, Any] = {}
        self._segments: list[_Segment] = []
        self._fd: int | None = None
        self._next = 1
        self._synced = 0  # entries up to this seq are on disk
        self._written = asyncio.Event()  # set on each append; readers wait on it
        self._room = asyncio.Event()
        self._room.set()
        self._sync_done = asyncio.Event()  # set after each fsync (or failure)
        self._syncing: asyncio.Task[None] | None = None
        self._sync_error: SpoolError | None = None
        self._timer: asyncio.Task[None] | None = None
        self._closed = False
        self._full_said = False
        self._appending = asyncio.Lock()
        self._fsyncing = asyncio.Lock()

    # ------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Load the segments and the position, cutting a torn tail (raises
        :class:`SpoolError` when the folder cannot be used)."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._load_position()
            self._load_segments()
            if self._segments:
                tail = self._segments[-1]
                self._next = tail.last + 1
                # a position older than the oldest segment kept: start at that segment
                self.acked = max(self.acked, self._segments[0].first - 1)
            else:
                self._next = self.acked + 1
            self._synced = self._next - 1
            self._drop_acked()
            self._open_tail()
        except OSError as exc:
            raise SpoolError(f"spool {self.folder}: {exc.strerror or exc}") from exc
        if self.sync == "interval":
            self._timer = asyncio.create_task(self._sync_every(), name=f"spool-sync:{self.folder}")

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            await asyncio.gather(self._timer, return_exceptions=True)
        if self._syncing is not None:
            await asyncio.gather(self._syncing, return_exceptions=True)
        if self._fd is not None:
            with contextlib.suppress(OSError):
                if self.sync != "never":
                    os.fsync(self._fd)
                os.close(self._fd)
            self._fd = None
        self._written.set()  # readers see the end

    # ------------------------------------------------------------ writing

    @property
    def last_seq(self) -> int:
        """The seq of the newest entry (0: none yet)."""
        return self._next - 1

    @property
    def size(self) -> int:
        """Bytes of the segments on disk."""
        return sum(s.size for s in self._segments)

    async def wait_room(self) -> None:
        """Wait while the spool holds ``max_bytes`` or more."""
        while not self._room.is_set():
            await self._room.wait()

    async def append(
        self, payload: bytes, *, flags: int = 0, tag: int = 0, at: float | None = None
    ) -> int:
        """Write one entry (waiting for room first); its seq. With ``sync="frame"`` it
        is on disk when this returns; otherwise see :meth:`durable`."""
        async with self._appending:  # one at a time: rotation awaits an fsync
            seq = await self._append_one(payload, flags, tag, at)
        if self.sync == "frame":
            await self.durable(seq)
        elif self.sync == "batch":
            self._kick_sync()
        return seq

    async def _append_one(self, payload: bytes, flags: int, tag: int, at: float | None) -> int:
        await self.wait_room()
        if self._closed or self._fd is None:
            raise SpoolError(f"spool {self.folder} is closed")
        seq = self._next
        data = _encode(Entry(seq, time.time() if at is None else at, payload, flags, tag))
        tail = self._segments[-1]
        if tail.size > 0 and tail.size + len(data) > self.segment_bytes:
            await self._rotate()
            tail = self._segments[-1]
        try:
            _write_all(self._fd, data)
        except OSError as exc:
            # nothing half-written may stay: cut the file back to where it was
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, tail.size)
            raise SpoolError(f"spool {self.folder}: cannot write: {exc.strerror or exc}") from exc
        self._next = seq + 1
        tail.last = seq
        tail.size += len(data)
        self._written.set()
        if self.size >= self.max_bytes:
            self._room.clear()
            if not self._full_said:
                self._full_said = True
                _log.warning(
                    "spool %s is full (%d bytes): reading pauses until deliveries free it",
                    self.folder,
                    self.size,
                )
        return seq

    async def durable(self, seq: int) -> None:
        """Wait until entry ``seq`` is on disk (at once with ``sync="never"``: the
        operating system decides). Raises :class:`SpoolError` if ``fsync`` failed."""
        if self.sync == "never":
            return
        while self._synced < seq:
            if self._sync_error is not None:
                raise self._sync_error
            if self._closed:
                raise SpoolError(f"spool {self.folder} closed before entry {seq} was synced")
            if self.sync != "interval":
                self._kick_sync()
            self._sync_done.clear()
            await self._sync_done.wait()

    def _kick_sync(self) -> None:
        if self._syncing is None or self._syncing.done():
            self._syncing = asyncio.create_task(self._sync_loop())

    async def _sync_loop(self) -> None:
        """fsync until everything written is on disk: each fsync covers every entry
        written before it started (group commit)."""
        while self._fd is not None and self._synced < self.last_seq:
            if not await self._sync_once():
                return

    async def _sync_once(self) -> bool:
        async with self._fsyncing:  # the file stays the tail (and open) meanwhile
            fd, upto = self._fd, self.last_seq
            if fd is None:
                return False
            try:
                await asyncio.to_thread(os.fsync, fd)
            except OSError as exc:
                _log.error("spool %s: fsync failed: %s", self.folder, exc)
                self._sync_error = SpoolError(f"spool {self.folder}: fsync failed: {exc}")
                return False
            finally:
                self._sync_done.set()
            self._synced = max(self._synced, upto)
            return True

    async def _sync_every(self) -> None:
        while True:
            await asyncio.sleep(self.fsync_interval)
            if self._synced < self.last_seq:
                await self._sync_once()

    async def _rotate(self) -> None:
        async with self._fsyncing:
            assert self._fd is not None
            if self.sync != "never":
                await asyncio.to_thread(os.fsync, self._fd)
                self._synced = self.last_seq
                self._sync_done.set()
            os.close(self._fd)
            self._fd = None
            self._segments.append(_Segment(self._next, self._path(self._next), self._next - 1, 0))
            self._open_tail()

    # ------------------------------------------------------------ reading

    def last_entries(self) -> list[Entry]:
        """The entries of the newest segment (at most ``segment_bytes`` of them)."""
        if not self._segments:
            return []
        tail = self._segments[-1]
        return list(self.scan(tail.first - 1, tail.last))

    def entries(self, after: int, upto: int) -> list[Entry]:
        """The entries with ``after < seq <= upto``, read from disk now."""
        return list(self.scan(after, upto))

    def scan(
        self, after: int, upto: int, *, start: tuple[int, int] | None = None
    ) -> Iterator[Entry]:
        """The entries with ``after < seq <= upto`` in order, read from disk as the
        iteration goes (constant memory). ``start``, an entry's ``where``, seeks straight
        to that entry instead of reading its segment from the beginning."""
        for segment in list(self._segments):
            if segment.last <= after or segment.first > upto:
                continue
            try:
                f = open(segment.path, "rb")  # noqa: SIM115 - closed below
            except FileNotFoundError:
                continue  # acknowledged and deleted meanwhile
            with f:
                if start is not None and start[0] == segment.first:
                    f.seek(start[1])
                while (entry := _read_entry(f, segment.first)) is not None and entry.seq <= upto:
                    if entry.seq > after:
                        yield entry

    def cursor(self, after: int) -> SpoolCursor:
        """A reader of the entries after ``after`` that never waits (see
        :class:`SpoolCursor`)."""
        return SpoolCursor(self, after)

    async def wait_written(self, position: int, timeout: float | None = None) -> None:
        """Wait until an entry after ``position`` exists (or ``timeout`` passed, or the
        spool closed)."""
        if self.last_seq > position or self._closed:
            return
        self._written.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._written.wait(), timeout)

    def _segment_after(self, position: int) -> _Segment | None:
        for segment in self._segments:
            if segment.last > position:
                return segment
        return None

    # ------------------------------------------------------------ acknowledging

    async def ack(self, upto: int, note: Mapping[str, Any] | None = None) -> None:
        """Everything up to ``upto`` is done: store it (with ``note``) and delete the
        segments it covers whole. Raises :class:`SpoolError` if it cannot be stored."""
        upto = min(max(upto, self.acked), self.last_seq)
        self.acked = upto
        if note is not None:
            self.note = dict(note)
        try:
            _write_atomic(
                self.folder / "position.json",
                json.dumps({"acked": self.acked, "note": self.note}).encode(),
            )
        except OSError as exc:
            raise SpoolError(f"spool {self.folder}: cannot store the position: {exc}") from exc
        self._drop_acked()

    def _drop_acked(self) -> None:
        while len(self._segments) > 1 and self._segments[0].last <= self.acked:
            gone = self._segments.pop(0)
            with contextlib.suppress(FileNotFoundError):
                gone.path.unlink()
        if self.size < self.max_bytes:
            if not self._room.is_set() and self._full_said:
                self._full_said = False
                _log.info("spool %s has room again", self.folder)
            self._room.set()

    # ------------------------------------------------------------ files

    def _path(self, first: int) -> Path:
        return self.folder / f"{first:020d}{_SUFFIX}"

    def _load_position(self) -> None:
        """The acknowledged position and note. The file is replaced by rename but not
        synced (a sync per acknowledgement would cost more than it saves), so after a
        power cut it may be empty or old: then everything still in the spool is
        delivered again (at least once), which a warning says."""
        path = self.folder / "position.json"
        if not path.exists():
            return
        try:
            document = json.loads(path.read_bytes())
            self.acked = int(document["acked"])
            self.note = dict(document.get("note") or {})
        except (ValueError, KeyError, TypeError) as exc:
            _log.warning(
                "spool %s: position.json is unreadable (%s; a power cut?): everything still "
                "in the spool is delivered again",
                self.folder,
                exc,
            )
            self.acked, self.note = 0, {}

    def _load_segments(self) -> None:
        names = sorted(p for p in self.folder.iterdir() if p.name.endswith(_SUFFIX))
        for i, path in enumerate(names):
            try:
                first = int(path.name[: -len(_SUFFIX)])
            except ValueError:
                continue
            last, good = first - 1, 0
            with open(path, "rb") as f:
                while (entry := _read_entry(f)) is not None:
                    if entry.seq != last + 1:
                        break
                    last, good = entry.seq, f.tell()
            size = path.stat().st_size
            if good < size:
                if i != len(names) - 1:
                    raise SpoolError(
                        f"spool {self.folder}: {path.name} is damaged before its end "
                        f"(at byte {good} of {size})"
                    )
                _log.warning(
                    "spool %s: cut %d bytes of a torn write from the end of %s",
                    self.folder,
                    size - good,
                    path.name,
                )
                os.truncate(path, good)
            self._segments.append(_Segment(first, path, last, good))

    def _open_tail(self) -> None:
        if not self._segments:
            self._segments.append(_Segment(self._next, self._path(self._next), self._next - 1, 0))
        tail = self._segments[-1]
        new = not tail.path.exists()
        self._fd = os.open(tail.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        if new and self.sync != "never":
            _fsync_dir(self.folder)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SpoolCursor:
    """Reads a spool forward from a position, keeping its file open: ``take(n)`` returns
    up to ``n`` entries written since (never waits; [] when there are none yet)."""

    def __init__(self, spool: Spool, after: int) -> None:
        self._spool = spool
        self.position = after
        self._segment: _Segment | None = None
        self._file: BinaryIO | None = None

    def take(self, n: int) -> list[Entry]:
        out: list[Entry] = []
        spool = self._spool
        while len(out) < n and self.position < spool.last_seq:
            segment = self._segment
            if segment is None or self._file is None or self.position >= segment.last:
                self.close()
                segment = self._segment = spool._segment_after(self.position)
                if segment is None:
                    raise SpoolError(f"spool {spool.folder}: entry {self.position + 1} is missing")
                self._file = open(segment.path, "rb")  # noqa: SIM115 - kept for the next take
            entry = _read_entry(self._file, segment.first)
            if entry is None:
                raise SpoolError(
                    f"spool {spool.folder}: {segment.path.name} ends before entry {segment.last}"
                )
            if entry.seq > self.position:
                self.position = entry.seq
                out.append(entry)
        return out

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._segment = None


def peek(folder: str | Path) -> tuple[int, int] | None:
    """(entries not acknowledged, bytes on disk) of the spool in ``folder``, read without
    changing anything (a running bridge may be writing it); None if there is none."""
    folder = Path(folder)
    segments = sorted(folder.glob(f"*{_SUFFIX}")) if folder.is_dir() else []
    if not segments:
        return None
    try:
        acked = int(json.loads((folder / "position.json").read_bytes())["acked"])
    except (OSError, ValueError, KeyError, TypeError):
        acked = 0
    last = int(segments[-1].name[: -len(_SUFFIX)]) - 1
    with open(segments[-1], "rb") as f:
        while (entry := _read_entry(f)) is not None:
            last = entry.seq
    size = sum(p.stat().st_size for p in segments)
    return max(0, last - acked), size


def folder_of(state_dir: str | Path, mapping: str) -> Path:
    """Where the spool of ``mapping`` lives: ``<state_dir>/spool/<mapping>``, the name
    made safe for a file name."""
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in mapping)
    return Path(state_dir) / "spool" / (name if name.strip(".") else "_")


def _absolute(folder: str | Path) -> Path:
    return Path(os.path.abspath(folder))


class SharedSpools:
    """Spools opened once per folder in this process, so a writer (an event bus) and a
    reader (its rule's mapping) use the same one, whichever starts first; closed when the
    last user lets go."""

    def __init__(self) -> None:
        self._open: dict[Path, tuple[Spool, int]] = {}
        self._lock = asyncio.Lock()

    async def acquire(self, folder: str | Path, **options: Any) -> Spool:
        """The spool in ``folder``, opened with ``options`` by its first user (raises
        :class:`SpoolError`)."""
        key = _absolute(folder)
        async with self._lock:
            spool, users = self._open.get(key, (None, 0))
            if spool is None:
                spool = Spool(key, **options)
                await spool.open()
            elif "max_bytes" in options:  # the writer's bound holds, whoever opened it
                spool.max_bytes = int(options["max_bytes"])
            self._open[key] = (spool, users + 1)
            return spool

    async def release(self, spool: Spool) -> None:
        key = _absolute(spool.folder)
        async with self._lock:
            found, users = self._open.get(key, (None, 0))
            if found is not spool:
                return
            if users > 1:
                self._open[key] = (spool, users - 1)
                return
            del self._open[key]
        await spool.aclose()


#: the process's shared spools
shared = SharedSpools()
