"""On-failure destinations: where records go when they cannot be delivered.

A destination's ``write(documents)`` returns only once the documents are durable;
the engine settles (and so commits) dead-lettered records only after that. A write
that fails raises ``DestinationError`` and the engine retries it: a record is never
dropped because its dead letter could not be written.

``file://path`` appends JSON Lines (one AWS-shaped failure record per line) and
fsyncs. Other schemes are implemented beside their connectors and found by scheme
(``kafka://topic``, ``sqs://queue-name-or-url``); a factory is called as
``factory(uri, source=<the mapping's source config>, context=<ConnectorContext>)``
so it can reach the same cluster or endpoint as the source.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib
import json
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from bridge.errors import BridgeError, ConfigError

__all__ = [
    "Destination",
    "DestinationError",
    "FileDestination",
    "build_destination",
    "destination_factory",
]


class DestinationError(BridgeError):
    """The failure record could not be written; retried, the records stay unsettled."""

    retryable = True


class Destination(Protocol):
    uri: str

    async def write(self, documents: Sequence[dict[str, Any]]) -> None: ...

    async def aclose(self) -> None: ...


class FileDestination:
    """Appends failure records to a JSON Lines file, durably (fsync per write).

    A write is all or nothing: a short write (a full disk, a file size limit) is cut
    back off the file before ``DestinationError`` is raised, so no torn line is left
    for the retry to follow; and should one be left anyway (the cut failed too, or a
    crash), the next write starts on a new line, so every record it writes is whole.
    Writers of one file in this process take turns.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.uri = f"file://{self.path}"

    async def write(self, documents: Sequence[dict[str, Any]]) -> None:
        text = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in documents)
        data = text.encode("utf-8", "backslashreplace")  # a lone surrogate: a JSON escape
        await asyncio.to_thread(self._append, data)

    def _append(self, data: bytes) -> None:
        with _file_lock(self.path):
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    _append_whole(fd, data)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise DestinationError(f"cannot write {self.path}: {exc.strerror or exc}") from exc

    async def aclose(self) -> None:
        return None


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _file_lock(path: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(os.path.abspath(path), threading.Lock())


def _append_whole(fd: int, data: bytes) -> None:
    """Append ``data`` and fsync, or leave the file as it was and raise OSError."""
    start = os.fstat(fd).st_size
    if start and os.pread(fd, 1, start - 1) != b"\n":
        data = b"\n" + data  # a torn line from before: close it, start a new one
    view = memoryview(data)
    written = 0
    try:
        while written < len(data):
            n = os.write(fd, view[written:])
            if n <= 0:
                raise OSError(errno.EIO, "the file took no more bytes")
            written += n
        os.fsync(fd)
    except OSError:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, start)
            os.fsync(fd)
        raise


SCHEMES: dict[str, str] = {
    "file": "bridge.destinations:file_destination",
    "kafka": "connectors.kafka.destination:KafkaDestination",
    "sqs": "connectors.sqs.destination:SqsDestination",
}


def file_destination(uri: str, **_: Any) -> FileDestination:
    return FileDestination(uri.removeprefix("file://"))


def destination_factory(uri: str) -> Callable[..., Destination]:
    """The factory for ``uri``'s scheme; raise ConfigError naming the known schemes."""
    scheme, sep, rest = uri.partition("://")
    known = ", ".join(f"{s}://..." for s in SCHEMES)
    if not sep or not rest or scheme not in SCHEMES:
        raise ConfigError(f"unsupported on_failure destination {uri!r} (expected {known})")
    module_name, _, attr = SCHEMES[scheme].partition(":")
    try:
        factory: Callable[..., Destination] = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"on_failure destination {uri!r}: {scheme}:// is not available") from exc
    return factory


def build_destination(uri: str, *, source: Any = None, context: Any = None) -> Destination:
    """A destination from its URI; raise ConfigError for an unknown scheme."""
    return destination_factory(uri)(uri, source=source, context=context)
