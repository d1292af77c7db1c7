"""Checkpoint storage: where connectors keep the settled state of their sources.

The embedded default is one SQLite file under the state directory (WAL mode, so a
killed process never leaves a torn write). Each mapping gets its own namespace; keys
and values are strings chosen by the connector (values are usually JSON).

Contract: a write that returned is durable against a crash of the bridge process;
a failed read or write raises ``CheckpointError`` and changes nothing.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol

from bridge.errors import CheckpointError

__all__ = ["CheckpointNamespace", "CheckpointStore", "SqliteCheckpointStore", "StateLock"]


class CheckpointNamespace(Protocol):
    """The checkpoints of one mapping."""

    async def get(self, key: str) -> str | None: ...

    async def items(self, prefix: str = "") -> dict[str, str]: ...

    async def page(self, after: str | None, limit: int, prefix: str = "") -> list[tuple[str, str]]:
        """Up to ``limit`` (key, value) pairs whose key starts with ``prefix`` and sorts after
        ``after`` (None: from the first), in the byte order of the keys' UTF-8 (S3's
        listing order), so a namespace of any size can be walked in constant memory."""
        ...

    async def write(self, put: Mapping[str, str], delete: Iterable[str] = ()) -> None:
        """Apply all puts and deletes atomically."""
        ...

    async def clear(self) -> None: ...


class CheckpointStore(Protocol):
    """Every mapping's checkpoints: ``namespace(mapping)`` each. ``close()`` frees what
    can be freed without awaiting (a store never used); ``aclose()`` frees everything."""

    def namespace(self, name: str) -> CheckpointNamespace: ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...


def _advice(exc: BaseException) -> str:
    text = str(exc).lower()
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return (
            "the file is damaged: restore it, or move it away to start afresh, every mapping "
            "then reading from its starting position again"
        )
    if "readonly" in text or "read-only" in text or "permission" in text:
        return "the state directory must be writable by the bridge"
    return "check that the state directory exists, is a folder and is writable"


class StateLock:
    """An exclusive lock on a state directory: one bridge per ``state_dir``.

    ``acquire()`` takes an advisory lock (``flock``) on ``<state_dir>/bridge.lock`` and
    writes this process's pid into it; it raises ``CheckpointError`` naming the pid of the
    bridge that holds it. The lock goes with the process, however it ends."""

    def __init__(self, state_dir: str | Path) -> None:
        self.path = Path(state_dir) / "bridge.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise CheckpointError(
                f"cannot use state directory {self.path.parent}: {exc.strerror or exc} "
                f"({_advice(exc)})"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise CheckpointError(
                f"state directory {self.path.parent} is in use by another bridge (pid "
                f"{holder}): run one bridge per state_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def open_sqlite(path: Path, table: str) -> sqlite3.Connection:
    """A connection to the state's SQLite file as every process of a bridge opens it
    (WAL, so readers and the other processes' writers do not block each other; a 5 s
    wait for a writer), with ``table`` (its ``CREATE TABLE IF NOT EXISTS`` statement)
    made. Raises ``sqlite3.Error`` or ``OSError``."""
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA busy_timeout=5000")  # a `status` reading, another worker writing
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(table)
    return db


class SqliteCheckpointStore:
    """A ``CheckpointStore`` in one SQLite file, safe to share between mappings."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = open_sqlite(
                self.path,
                "CREATE TABLE IF NOT EXISTS checkpoints ("
                " namespace TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,"
                " PRIMARY KEY (namespace, key)) WITHOUT ROWID",
            )
            self._db.execute("BEGIN IMMEDIATE")  # it can be written, not only read
            self._db.execute("ROLLBACK")
        except (OSError, sqlite3.Error) as exc:
            raise CheckpointError(
                f"cannot use checkpoint store {self.path}: {exc} ({_advice(exc)})"
            ) from exc
        self._lock = threading.Lock()

    def namespace(self, name: str) -> _SqliteNamespace:
        return _SqliteNamespace(self, name)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    async def aclose(self) -> None:
        self.close()

    def _run(self, sql: str, params: tuple[object, ...]) -> list[tuple[str, str]]:
        with self._lock:
            try:
                return list(self._db.execute(sql, params).fetchall())
            except sqlite3.Error as exc:
                raise CheckpointError(f"checkpoint store {self.path}: {exc}") from exc

    def _write(self, ns: str, put: Mapping[str, str], delete: Iterable[str]) -> None:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.executemany(
                        "DELETE FROM checkpoints WHERE namespace=? AND key=?",
                        [(ns, k) for k in delete],
                    )
                    self._db.executemany(
                        "INSERT OR REPLACE INTO checkpoints(namespace, key, value) VALUES (?,?,?)",
                        [(ns, k, v) for k, v in put.items()],
                    )
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise CheckpointError(f"checkpoint store {self.path}: {exc}") from exc


class _SqliteNamespace:
    def __init__(self, store: SqliteCheckpointStore, name: str) -> None:
        self._store = store
        self.name = name

    async def get(self, key: str) -> str | None:
        rows = await asyncio.to_thread(
            self._store._run,
            "SELECT key, value FROM checkpoints WHERE namespace=? AND key=?",
            (self.name, key),
        )
        return rows[0][1] if rows else None

    async def items(self, prefix: str = "") -> dict[str, str]:
        rows = await asyncio.to_thread(
            self._store._run,
            "SELECT key, value FROM checkpoints WHERE namespace=? AND substr(key, 1, ?) = ?",
            (self.name, len(prefix), prefix),
        )
        return dict(rows)

    async def page(self, after: str | None, limit: int, prefix: str = "") -> list[tuple[str, str]]:
        # TEXT compares with SQLite's BINARY collation: memcmp of UTF-8, S3's order
        return await asyncio.to_thread(
            self._store._run,
            "SELECT key, value FROM checkpoints WHERE namespace=? AND key > ?"
            " AND substr(key, 1, ?) = ? ORDER BY key LIMIT ?",
            (self.name, "" if after is None else after, len(prefix), prefix, limit),
        )

    async def write(self, put: Mapping[str, str], delete: Iterable[str] = ()) -> None:
        await asyncio.to_thread(self._store._write, self.name, dict(put), list(delete))

    async def clear(self) -> None:
        await asyncio.to_thread(
            self._store._run, "DELETE FROM checkpoints WHERE namespace=?", (self.name,)
        )
