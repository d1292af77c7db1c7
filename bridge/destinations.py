"""On-failure destinations: where records go when they cannot be delivered.

A destination's ``write(documents)`` returns only once the documents are durable;
the engine settles (and so commits) dead-lettered records only after that. A write
that fails raises ``DestinationError`` and the engine retries it: a record is never
dropped because its dead letter could not be written.

``file://path`` appends JSON Lines (one AWS-shaped failure record per line) and
fsyncs. Other schemes (SQS, Kafka, S3) arrive with their connectors.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from bridge.errors import BridgeError, ConfigError

__all__ = ["Destination", "DestinationError", "FileDestination", "build_destination"]


class DestinationError(BridgeError):
    """The failure record could not be written; retried, the records stay unsettled."""

    retryable = True


class Destination(Protocol):
    uri: str

    async def write(self, documents: Sequence[dict[str, Any]]) -> None: ...

    async def aclose(self) -> None: ...


class FileDestination:
    """Appends failure records to a JSON Lines file, durably (fsync per write)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.uri = f"file://{self.path}"
        self._lock = asyncio.Lock()

    async def write(self, documents: Sequence[dict[str, Any]]) -> None:
        data = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in documents).encode()
        async with self._lock:
            await asyncio.to_thread(self._append, data)

    def _append(self, data: bytes) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise DestinationError(f"cannot write {self.path}: {exc.strerror}") from exc

    async def aclose(self) -> None:
        return None


def build_destination(uri: str) -> Destination:
    """A destination from its URI; raise ConfigError for an unknown scheme."""
    if uri.startswith("file://"):
        return FileDestination(uri.removeprefix("file://"))
    raise ConfigError(f"unsupported on_failure destination {uri!r} (expected file://...)")
