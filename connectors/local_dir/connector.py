"""The ``local_dir`` source: a folder that behaves like an S3 bucket.

Creating or changing a file emits ``ObjectCreated:Put``; deleting one emits
``ObjectRemoved:Delete``, as S3 event notification records (see
``connectors/s3_events.py``). The key is the file's path relative to the folder.

Guarantees:

- Gap-free across restarts. The checkpoint store keeps, per key, the file state
  (mtime, size, ETag) whose event was settled. At start, and every
  ``rescan_interval_seconds``, the folder is compared with it: files created,
  changed or deleted while the bridge was down are emitted; files already delivered
  are not emitted again.
- Per-key order: the key is the partition, so events of one file are delivered in
  order, one batch at a time; different files are delivered in parallel.
- At-least-once: a crash between delivery and checkpoint redelivers that event.
- Never leaves the folder: symbolic links are not followed (nor emitted), and a path
  that resolves outside the folder is ignored. Hidden names (``.x``) are skipped
  unless ``include_hidden``: write to ``.name`` then rename for an atomic appearance.

Between scans, changes are followed by a watcher (``connectors.local_dir.watch``): on Linux
one inotify instance, read by the event loop, for every local_dir mapping of the process,
so an idle mapping costs no thread and no wake-up; watchfiles (a thread per mapping) with
``force_polling`` or where inotify is missing. When the watcher fails (an inotify limit),
or the folder itself is removed or moved away, scans stand in for it every few seconds
until it can be started again.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import fnmatch
import hashlib
import json
import logging
import os
import stat
import time
from collections.abc import AsyncIterator, Hashable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from bridge.connector import BaseConnector, ConnectorContext, FailureContext, Feed, Record
from bridge.errors import ConfigError, NormalizeError
from connectors.local_dir.config import LocalDirSource
from connectors.local_dir.watch import folder_watch
from connectors.s3_events import (
    ASYNC_INVOCATION_DEFAULTS,
    check_async_invocation,
    s3_async_failure_record,
    s3_record,
    sample_event,
)

__all__ = ["LocalDirConnector"]

log = logging.getLogger(__name__)

_STAND_IN_SCAN = 2.0  # seconds between scans while the watcher is down
_WATCHER_RETRY = 60.0  # seconds before trying a failed watcher again

State = tuple[int, int]  # (mtime_ns, size): what "this file changed" is judged by


class LocalDirConnector(BaseConnector):
    type: ClassVar[str] = "local_dir"
    config_model: ClassVar[builtins.type[LocalDirSource]] = LocalDirSource
    ordered: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = ASYNC_INVOCATION_DEFAULTS
    sample_event = staticmethod(sample_event)
    check_mapping = staticmethod(check_async_invocation)

    def __init__(self, config: LocalDirSource, context: ConnectorContext) -> None:
        self.config = config
        self.context = context
        self.root = Path(config.path)
        self.bucket = config.bucket or self.root.resolve().name or "local"
        self._emitted: dict[str, State | None] = {}
        self._queue: Feed[list[Record]] = Feed(maxsize=64)
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._last_sequencer = 0
        self._scan_lock = asyncio.Lock()
        self._watcher_down = False
        self._watch_started = asyncio.Event()  # the watcher follows the folder, or failed
        self._rescan_now = asyncio.Event()
        self._touched: set[str] | None = None  # keys emitted while a scan lists the folder
        self._check_lock = asyncio.Lock()

    # ------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        if not self.root.exists() and self.config.create:
            self.root.mkdir(parents=True, exist_ok=True)
        if not self.root.is_dir():
            raise ConfigError(f"local_dir: {self.root} is not a folder")
        self.root = self.root.resolve()
        saved = await self.context.checkpoints.items()
        for stored, value in saved.items():
            mtime_ns, size = json.loads(value)
            self._emitted[_from_stored(stored)] = (int(mtime_ns), int(size))

    async def read(self) -> AsyncIterator[Sequence[Record]]:
        self._tasks = [asyncio.create_task(self._watch(), name=f"{self.context.mapping}:watch")]
        await self._watch_started.wait()  # so the first scan is followed by every change
        self._tasks.append(asyncio.create_task(self._rescan_loop()))
        async for chunk in self._queue.items(self._tasks):
            yield chunk

    def backlog(self) -> int:
        """Changes found and not yet handed to the engine (see the connector contract)."""
        return sum(len(chunk) for chunk in self._queue.queued())

    async def aclose(self) -> None:
        self._stop.set()
        self._rescan_now.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    # ------------------------------------------------------------ detection

    async def _rescan_loop(self) -> None:
        while True:
            await self._scan()
            interval = self.config.rescan_interval_seconds
            if self._watcher_down:  # the scans stand in for the watcher meanwhile
                interval = min(interval or _STAND_IN_SCAN, _STAND_IN_SCAN)
            self._rescan_now.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._rescan_now.wait(), interval or None)
            if self._stop.is_set():
                return

    async def _watch(self) -> None:
        """Follow the folder's changes; when the watcher fails (an inotify limit, the
        folder removed or moved away, watchfiles on a name that is not UTF-8...), say why,
        scan every few seconds instead, and try the watcher again a while later."""
        while not self._stop.is_set():
            try:
                await self._follow()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._watch_started.set()
                if not self._watcher_down:
                    log.warning(
                        "local_dir %s: the folder watcher failed (%s); scanning every %ss "
                        "instead, trying the watcher again in %ss",
                        self.root,
                        _reason(exc),
                        _STAND_IN_SCAN,
                        _WATCHER_RETRY,
                    )
                self._watcher_down = True
                self._rescan_now.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), _WATCHER_RETRY)

    async def _follow(self) -> None:
        config = self.config
        async with folder_watch(
            self.root, include_hidden=config.include_hidden, force_polling=config.force_polling
        ) as watch:
            self._watch_started.set()
            if watch.established:
                self._watcher_back()
            async for paths in watch:
                self._watcher_back()
                # file system calls run in a thread: a slow disk (NFS) must not stall the loop
                keys = await asyncio.to_thread(self._keys_of_files, paths)
                if keys is None:
                    await self._scan()  # a folder appeared or vanished: diff everything
                    continue
                records = []
                for key in keys:  # each stat'ed afresh under the check lock
                    if (record := await self._check(key)) is not None:
                        records.append(record)
                if records:
                    await self._queue.put(records)

    def _watcher_back(self) -> None:
        if self._watcher_down:  # one scan covers what it may have missed meanwhile
            log.info("local_dir %s: the folder watcher is back", self.root)
            self._watcher_down = False
            self._rescan_now.set()

    def _keys_of_files(self, paths: list[Path]) -> list[str] | None:
        """(In a thread.) The eligible keys among ``paths``, or None when one of them is
        a folder that appeared or vanished."""
        keys: list[str] = []
        for path in paths:
            if path.is_dir() or (not path.exists() and self._is_known_folder(path)):
                return None
            key = self._key(path)
            if key is not None:
                keys.append(key)
        return keys

    def _is_known_folder(self, path: Path) -> bool:
        key = self._key(path)
        return key is not None and any(k.startswith(key + "/") for k in list(self._emitted))

    async def _scan(self) -> None:
        """Emit an event for every difference between the folder and what was emitted."""
        async with self._scan_lock:
            self._touched = set()
            try:
                on_disk = await asyncio.to_thread(self._walk)
                touched, self._touched = self._touched, None
            finally:
                self._touched = None
            chunk: list[Record] = []
            known = {k for k in self._emitted if self._eligible(k)}
            for i, key in enumerate(sorted(set(on_disk) | known)):
                # the watcher emitted this key while the folder was listed: the listing may
                # be older than that (a file created during the walk is missing from it),
                # so look at the file again rather than emit what the listing saw
                state = False if key in touched else on_disk.get(key)
                record = await self._check(key, state)
                if record is not None:
                    chunk.append(record)
                if len(chunk) >= 100:
                    await self._queue.put(chunk)
                    chunk = []
                elif i % 1000 == 999:
                    await asyncio.sleep(0)  # a big folder: let the loop breathe
            if chunk:
                await self._queue.put(chunk)

    def _walk(self) -> dict[str, State]:
        found: dict[str, State] = {}
        for folder, dirs, files in os.walk(self.root, followlinks=False):
            if not self.config.include_hidden:
                dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in files:
                key = self._key(Path(folder, name))
                if key is None:
                    continue
                state = self._stat(Path(folder, name))
                if state is not None:
                    found[key] = state
        return found

    def _key(self, path: Path) -> str | None:
        """The object key of ``path``, or None when it is not an eligible key."""
        try:
            rel = Path(os.path.abspath(path)).relative_to(os.path.abspath(self.root))
        except ValueError:
            return None
        if ".." in rel.parts:
            return None
        key = rel.as_posix()
        return key if self._eligible(key) else None

    def _eligible(self, key: str) -> bool:
        if key in ("", "."):
            return False
        if not self.config.include_hidden and any(p.startswith(".") for p in key.split("/")):
            return False
        return key.startswith(self.config.prefix) and key.endswith(self.config.suffix)

    def _stat(self, path: Path) -> State | None:
        """(mtime_ns, size) of a regular file inside the folder; None otherwise."""
        try:
            st = os.lstat(path)
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None  # symlinks, sockets, folders: never followed
        try:
            if not path.resolve().is_relative_to(self.root):
                return None
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    async def _check(self, key: str | None, state: State | bool | None = False) -> Record | None:
        """A record if ``key``'s current state differs from the last one emitted.

        ``state`` False means "stat the file now"; None means "it is gone"."""
        if key is None:
            return None
        async with self._check_lock:
            return await self._check_locked(key, state)

    async def _check_locked(self, key: str, state: State | bool | None) -> Record | None:
        path = self.root / key
        current = await asyncio.to_thread(self._stat, path) if state is False else state
        assert current is None or isinstance(current, tuple)
        if self._emitted.get(key) == current or (current is None and key not in self._emitted):
            return None
        wanted = self._wants("s3:ObjectCreated:Put" if current else "s3:ObjectRemoved:Delete")
        if not wanted:  # nothing to deliver, but remember the state for the next diff
            await self._remember(key, current)
            return None
        if current is None:
            data = {"event": "ObjectRemoved:Delete", "key": key, "time": time.time()}
        else:
            etag = await asyncio.to_thread(_md5, path)
            if etag is None:  # vanished while hashing: the delete event follows
                return None
            data = {
                "event": "ObjectCreated:Put",
                "key": key,
                "size": current[1],
                "etag": etag,
                "time": current[0] / 1e9,
            }
        data["sequencer"] = self._sequencer()
        self._emitted[key] = current
        if self._touched is not None:
            self._touched.add(key)
        if current is None:
            self._emitted.pop(key, None)
        return Record(partition=key, position=(key, current), data=data)

    async def _remember(self, key: str, state: State | None) -> None:
        if self._touched is not None:
            self._touched.add(key)
        if state is None:
            self._emitted.pop(key, None)
            await self.context.checkpoints.write({}, [_stored(key)])
        else:
            self._emitted[key] = state
            await self.context.checkpoints.write({_stored(key): json.dumps(list(state))})

    def _wants(self, event: str) -> bool:
        return any(fnmatch.fnmatchcase(event, pattern) for pattern in self.config.events)

    def _sequencer(self) -> str:
        self._last_sequencer = max(time.time_ns(), self._last_sequencer + 1)
        return f"{self._last_sequencer:018X}"

    # ------------------------------------------------------------ shaping

    def normalize(self, record: Record) -> dict[str, Any]:
        d = record.data
        try:
            return s3_record(
                event_name=d["event"],
                bucket=self.bucket,
                key=d["key"],
                sequencer=d["sequencer"],
                event_time=d["time"],
                region=self.context.region,
                size=d.get("size"),
                etag=d.get("etag"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise NormalizeError(f"local_dir record {d!r}: {exc}") from exc

    def item_identifier(self, record: Record) -> Hashable:
        return str(record.data["key"])

    def failure_record(self, records: Sequence[Record], ctx: FailureContext) -> dict[str, Any]:
        return s3_async_failure_record(ctx)

    # ------------------------------------------------------------ settling

    async def commit(self, records: Sequence[Record]) -> None:
        put: dict[str, str] = {}
        delete: list[str] = []
        for record in records:  # in order: the last state of a key wins
            key, state = record.position
            key = _stored(key)
            if state is None:
                put.pop(key, None)
                delete.append(key)
            else:
                put[key] = json.dumps(list(state))
                with contextlib.suppress(ValueError):
                    delete.remove(key)
        await self.context.checkpoints.write(put, delete)


def _md5(path: Path) -> str | None:
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def _stored(key: str) -> str:
    """The checkpoint key of a file: its name, or for a name that is not UTF-8 (kept with
    surrogates, which the store cannot hold) NUL and the hex of its bytes (no file name
    holds a NUL, so nothing collides)."""
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return "\x00" + key.encode("utf-8", "surrogateescape").hex()
    return key


def _from_stored(stored: str) -> str:
    if stored.startswith("\x00"):
        return bytes.fromhex(stored[1:]).decode("utf-8", "surrogateescape")
    return stored


def _reason(exc: BaseException) -> str:
    """The message of ``exc``, or of the first error inside an exception group."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return str(exc) or type(exc).__name__
