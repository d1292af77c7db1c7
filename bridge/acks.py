"""The ack tracker: the only caller of a connector's ``commit()``.

Records are tracked in the order they were read. ``settle()`` marks records as done
(delivered, filtered out or dead-lettered). For an ordered source only the
contiguous settled prefix of each partition is committed, so one unsettled record
pins the frontier; an unordered source's records are committed as they settle.
A commit that fails (``CheckpointError``) is retried with backoff; the frontier does
not advance past what was durably committed.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Iterable, Sequence

from bridge import telemetry
from bridge.connector import Connector, Record
from bridge.errors import CheckpointError

__all__ = ["AckTracker"]

log = logging.getLogger(__name__)


class AckTracker:
    """Tracks unsettled records of one pipeline and commits the settled frontier."""

    def __init__(self, connector: Connector, *, mapping: str, ordered: bool) -> None:
        self._connector = connector
        self._mapping = mapping
        self._ordered = ordered
        self._parts: dict[str, deque[Record]] = {}
        self._settled: set[int] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._seq = 0
        self.unsettled = 0
        self.unsettled_bytes = 0
        self.changed = asyncio.Condition()

    def track(self, record: Record) -> None:
        """Register a freshly read record (in source order within its partition)."""
        self._seq += 1
        record.seq = self._seq
        self._parts.setdefault(record.partition, deque()).append(record)
        self.unsettled += 1
        self.unsettled_bytes += len(record.encoded)

    def unsettled_records(self) -> list[Record]:
        return [r for q in self._parts.values() for r in q if r.seq not in self._settled]

    async def settle(self, records: Sequence[Record]) -> None:
        """Mark records settled and commit whatever became committable.

        Returns once the commit is durable. Cancellation leaves records settled but
        uncommitted: they are delivered again after a restart (at-least-once).
        """
        if not records:
            return
        touched: dict[str, None] = {}
        for r in records:
            if r.seq in self._settled:
                continue
            self._settled.add(r.seq)
            self.unsettled -= 1
            self.unsettled_bytes -= len(r.encoded)
            touched[r.partition] = None
        async with self.changed:
            self.changed.notify_all()
        for partition in touched:
            await self._commit_partition(partition)

    async def _commit_partition(self, partition: str) -> None:
        lock = self._locks.setdefault(partition, asyncio.Lock())
        async with lock:
            queue = self._parts.get(partition)
            if not queue:
                return
            if self._ordered:
                ready: list[Record] = []
                for r in queue:
                    if r.seq not in self._settled:
                        break
                    ready.append(r)
            else:
                ready = [r for r in queue if r.seq in self._settled]
            if not ready:
                return
            await self._commit_with_retry(ready)
            done = {r.seq for r in ready}
            if self._ordered:
                for _ in ready:
                    queue.popleft()
            else:
                self._parts[partition] = queue = deque(r for r in queue if r.seq not in done)
            self._settled.difference_update(done)
            if not queue:
                del self._parts[partition]
                del self._locks[partition]

    async def _commit_with_retry(self, records: Iterable[Record]) -> None:
        batch = list(records)
        attempt = 0
        while True:
            try:
                await self._connector.commit(batch)
                telemetry.emit(telemetry.COMMITTED, mapping=self._mapping, records=len(batch))
                return
            except CheckpointError as exc:
                attempt += 1
                delay = random.uniform(0, min(30.0, 0.1 * 2**attempt))
                telemetry.emit(
                    telemetry.COMMIT_FAILED,
                    mapping=self._mapping,
                    error=str(exc),
                    retry_in=round(delay, 3),
                    level=logging.WARNING,
                )
                await asyncio.sleep(delay)
