"""Following a folder's changes: one inotify instance, read by the event loop, for every
``local_dir`` mapping of the process; watchfiles where inotify is not to be had.

watchfiles gives each watched folder a thread that wakes every ``step`` (20 ms) to see
whether its watcher collected changes: 50 wake-ups a second per mapping while nothing
happens. Here one inotify file descriptor serves every folder, and the loop reads it when
the kernel has events, at no other time: an idle mapping costs no wake-up at all.

``folder_watch(root, include_hidden=..., force_polling=...)`` is an async context manager.
Inside it, ``root`` and every folder under it (not behind a symbolic link, not a hidden one
unless ``include_hidden``) are watched, and iterating it gives lists of the paths that
changed, gathered as watchfiles does: until 20 ms pass without a new change, at most
200 ms. A path is a file created, changed, removed or moved in or out, or a folder that
appeared, vanished or moved, or ``root`` itself after the kernel dropped events: the caller
looks at the disk to tell which (a folder means "compare everything").

Entering or iterating raises ``OSError`` when the folder cannot be watched (for instance
the limit ``fs.inotify.max_user_watches``) and ``WatchLost`` when ``root`` itself was
removed or moved away: the caller then scans instead and tries again later.

Folders are watched from a thread (a slow disk must not stall the loop). Events of a
folder read before its watch is registered are dropped: every new folder is handed to
the caller only after the watches under it are registered, and the caller's full scan then
covers what came before.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import os
import struct
import sys
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

from watchfiles import awatch

__all__ = ["FolderWatch", "WatchLost", "folder_watch", "inotify_available"]

STEP = 0.02  # seconds without a new change that end a batch
DEBOUNCE = 0.2  # seconds a batch gathers changes at most

_MODIFY, _ATTRIB, _CLOSE_WRITE = 0x2, 0x4, 0x8
_MOVED_FROM, _MOVED_TO, _CREATE, _DELETE = 0x40, 0x80, 0x100, 0x200
_DELETE_SELF, _MOVE_SELF, _UNMOUNT, _Q_OVERFLOW, _IGNORED = 0x400, 0x800, 0x2000, 0x4000, 0x8000
_ONLYDIR, _DONT_FOLLOW, _EXCL_UNLINK, _ISDIR = 0x1000000, 0x2000000, 0x4000000, 0x40000000
_FILE_EVENTS = _MODIFY | _ATTRIB | _CLOSE_WRITE | _MOVED_FROM | _MOVED_TO | _CREATE | _DELETE
_FOLDER_MOVES = _MOVED_FROM | _MOVED_TO | _CREATE  # the folders to watch change
_MASK = _FILE_EVENTS | _DELETE_SELF | _MOVE_SELF | _ONLYDIR | _DONT_FOLLOW | _EXCL_UNLINK
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)


class WatchLost(Exception):
    """The watched folder itself was removed or moved away."""


class FolderWatch(Protocol):
    #: True: every change from now on is reported (inotify); False: not known before the
    #: first batch (watchfiles starts its watcher when first iterated)
    established: bool

    def __aiter__(self) -> AsyncIterator[list[Path]]: ...


def _load_libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        init, add, rm = libc.inotify_init1, libc.inotify_add_watch, libc.inotify_rm_watch
    except (OSError, AttributeError):
        return None
    init.argtypes, init.restype = [ctypes.c_int], ctypes.c_int
    add.argtypes, add.restype = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32], ctypes.c_int
    rm.argtypes, rm.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return libc


_libc = _load_libc()


def inotify_available() -> bool:
    return _libc is not None


@contextlib.asynccontextmanager
async def folder_watch(
    root: Path, *, include_hidden: bool, force_polling: bool
) -> AsyncIterator[FolderWatch]:
    """Watch ``root`` (an absolute, resolved folder) while inside; see the module's doc."""
    if force_polling or _libc is None:
        async with _watchfiles(root, force_polling=force_polling) as polled:
            yield polled
        return
    hub = _Inotify.shared()
    watch = _InotifyWatch(hub, str(root), include_hidden)
    hub.watches.add(watch)
    try:
        await watch.sync()
        yield watch
    finally:
        hub.release(watch)


class _Inotify:
    """One inotify instance on an event loop, shared by every watch on it; closed with
    the last one."""

    _of_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Inotify] = (
        weakref.WeakKeyDictionary()
    )

    @classmethod
    def shared(cls) -> _Inotify:
        loop = asyncio.get_running_loop()
        hub = cls._of_loop.get(loop)
        if hub is None:
            hub = cls._of_loop[loop] = cls(loop)
        return hub

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise _error(ctypes.get_errno(), "inotify_init1")
        self.fd = fd
        self.loop = loop
        self.watches: set[_InotifyWatch] = set()
        self.folders: dict[int, str] = {}  # watch descriptor -> folder
        self.owners: dict[int, set[_InotifyWatch]] = {}  # watch descriptor -> its watches
        self.syncs = 0  # walks under way
        self.vanished: set[int] = set()  # descriptors dropped by the kernel during walks
        loop.add_reader(fd, self._read)

    def release(self, watch: _InotifyWatch) -> None:
        for wd in list(watch.wds):
            self._disown(watch, wd)
        self.watches.discard(watch)
        if not self.watches and self._of_loop.get(self.loop) is self:
            del self._of_loop[self.loop]
            self.loop.remove_reader(self.fd)
            os.close(self.fd)  # the kernel drops its watches with it

    def add_tree(self, root: str, include_hidden: bool) -> tuple[dict[int, str], OSError | None]:
        """(In a thread.) Watch ``root`` and the folders under it: their descriptors (the
        root's first), and the error that stopped the walk, if one did (the descriptors
        added until then must be adopted, to be released)."""
        found: dict[int, str] = {}
        try:
            top = self._add(root, required=True)
            assert top is not None
            found[top] = root
            for folder, dirs, _ in os.walk(root):  # does not enter symbolic links
                kept = []
                for name in dirs:
                    if include_hidden or not name.startswith("."):
                        path = os.path.join(folder, name)
                        wd = self._add(path)
                        if wd is not None:
                            found[wd] = path
                            kept.append(name)
                dirs[:] = kept
        except OSError as exc:
            return found, exc
        return found, None

    def _add(self, path: str, *, required: bool = False) -> int | None:
        wd = _libc.inotify_add_watch(self.fd, os.fsencode(path), _MASK)
        if wd >= 0:
            return int(wd)
        code = ctypes.get_errno()
        # gone, a link (IN_DONT_FOLLOW | IN_ONLYDIR), unreadable: the scans skip it too
        if not required and code in (errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.ELOOP):
            return None
        raise _error(code, path)

    def adopt(self, watch: _InotifyWatch, found: dict[int, str]) -> None:
        """Make ``found`` (a walk's result) the folders of ``watch``."""
        for wd, folder in found.items():
            if wd in self.vanished:  # removed while the walk went on
                continue
            self.folders[wd] = folder
            self.owners.setdefault(wd, set()).add(watch)
        for wd in watch.wds - found.keys():  # moved away or removed since the last walk
            self._disown(watch, wd)
        watch.wds = set(found) - self.vanished

    def _disown(self, watch: _InotifyWatch, wd: int) -> None:
        watch.wds.discard(wd)
        owners = self.owners.get(wd)
        if owners is None:
            return
        owners.discard(watch)
        if not owners:
            del self.owners[wd]
            self.folders.pop(wd, None)
            _libc.inotify_rm_watch(self.fd, wd)  # fails harmlessly if the folder is gone

    def _read(self) -> None:
        try:
            data = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, _, size = _EVENT.unpack_from(data, offset)
            start = offset + _EVENT.size
            name = data[start : start + size].split(b"\0", 1)[0]
            offset = start + size
            self._dispatch(wd, mask, name)

    def _dispatch(self, wd: int, mask: int, name: bytes) -> None:
        if mask & _Q_OVERFLOW:  # the kernel dropped events: every watch compares everything
            for watch in self.watches:
                watch.overflowed()
            return
        folder = self.folders.get(wd)
        if folder is None:  # not registered yet, or no longer
            if mask & _IGNORED and self.syncs:
                self.vanished.add(wd)
            return
        if mask & _IGNORED:  # the folder is gone (or unwatched): so is its descriptor
            del self.folders[wd]
            for watch in self.owners.pop(wd, ()):
                watch.dropped(wd)
            return
        text = os.fsdecode(name)
        path = os.path.join(folder, text) if text else folder
        for watch in list(self.owners.get(wd, ())):
            watch.note(wd, path, text, mask)


class _InotifyWatch:
    """One folder tree of ``_Inotify``; iterated by its mapping."""

    established = True

    def __init__(self, hub: _Inotify, root: str, include_hidden: bool) -> None:
        self.hub = hub
        self.root = root
        self.include_hidden = include_hidden
        self.wds: set[int] = set()
        self.root_wd: int | None = None
        self._pending: dict[str, None] = {}  # changed paths, in order, once each
        self._count = 0  # changes noted so far, to tell whether a batch is still growing
        self._changed = asyncio.Event()
        self._resync = False  # folders appeared or moved: walk again before the next batch
        self._lost: WatchLost | None = None

    async def sync(self) -> None:
        """Watch every folder of the tree as it is now (and no other)."""
        hub = self.hub
        hub.syncs += 1
        walk = asyncio.ensure_future(
            asyncio.to_thread(hub.add_tree, self.root, self.include_hidden)
        )
        try:
            try:
                found, error = await asyncio.shield(walk)
            except asyncio.CancelledError:
                # the thread goes on adding watches: wait for it, so that every one of them
                # is known, and released with this watch
                await asyncio.wait([walk])
                if not walk.cancelled() and walk.exception() is None:
                    hub.adopt(self, walk.result()[0])
                raise
            hub.adopt(self, found)
            if error is not None:
                raise error
            self.root_wd = next(iter(found))
            if self.root_wd in hub.vanished:
                self.lost()
        finally:
            hub.syncs -= 1
            if not hub.syncs:
                hub.vanished.clear()

    def note(self, wd: int, path: str, name: str, mask: int) -> None:
        if not name:  # about a watched folder itself
            if wd == self.root_wd and mask & (_DELETE_SELF | _MOVE_SELF | _UNMOUNT):
                self.lost()
            return  # a folder below: its parent reports it
        if not self.include_hidden and name.startswith("."):
            return
        if mask & _ISDIR:
            if not mask & (_FOLDER_MOVES | _DELETE):
                return  # a folder's own attributes: no file changed
            if mask & _FOLDER_MOVES:
                self._resync = True
        self._add(path)

    def dropped(self, wd: int) -> None:
        self.wds.discard(wd)
        if wd == self.root_wd:
            self.lost()

    def overflowed(self) -> None:
        self._resync = True
        self._add(self.root)

    def lost(self) -> None:
        self._lost = WatchLost(f"{self.root} was removed or moved away")
        self._changed.set()

    def _add(self, path: str) -> None:
        self._pending[path] = None
        self._count += 1
        self._changed.set()

    async def __aiter__(self) -> AsyncIterator[list[Path]]:
        loop = asyncio.get_running_loop()
        while True:
            await self._changed.wait()
            first = loop.time()
            while self._lost is None:  # gather: until STEP passes without news, DEBOUNCE at most
                seen = self._count
                await asyncio.sleep(STEP)
                if self._count == seen or loop.time() - first >= DEBOUNCE:
                    break
            while self._resync and self._lost is None:  # new folders are watched first
                self._resync = False
                await self.sync()
            if self._lost is not None:
                raise self._lost
            self._changed.clear()
            paths, self._pending = self._pending, {}
            if paths:
                yield [Path(p) for p in paths]


@contextlib.asynccontextmanager
async def _watchfiles(root: Path, *, force_polling: bool) -> AsyncIterator[FolderWatch]:
    """watchfiles' ``awatch``: a thread of its own for this folder, waking every 20 ms."""
    stop = asyncio.Event()
    polled = _Watchfiles(root, force_polling, stop)
    try:
        yield polled
    finally:
        stop.set()


class _Watchfiles:
    established = False

    def __init__(self, root: Path, force_polling: bool, stop: asyncio.Event) -> None:
        self.root = root
        self.force_polling = force_polling
        self.stop = stop

    async def __aiter__(self) -> AsyncIterator[list[Path]]:
        async for changes in awatch(
            self.root,
            watch_filter=None,  # every change a scan would see, as with inotify
            stop_event=self.stop,
            force_polling=self.force_polling,
            debounce=int(DEBOUNCE * 1000),
            step=int(STEP * 1000),
            recursive=True,
        ):
            yield sorted({Path(p) for _, p in changes})


def _error(code: int, what: str) -> OSError:
    if code == errno.ENOSPC:
        return OSError(
            code, f"the inotify watch limit (fs.inotify.max_user_watches) is reached: {what}"
        )
    if code == errno.EMFILE:
        return OSError(
            code, "the inotify instance limit (fs.inotify.max_user_instances) is reached"
        )
    return OSError(code, f"{what}: {os.strerror(code)}")
