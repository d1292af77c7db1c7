"""The ack tracker: the only caller of a connector's ``commit()``.

Records are tracked in the order they were read. ``settle()`` marks records as done
(delivered, filtered out or dead-lettered). For an ordered source only the
contiguous settled prefix of each partition is committed, so one unsettled record
pins the frontier; an unordered source's records are committed as they settle.
``forget()`` drops records that are left to the source (abandoned to its own
redelivery, or of a partition we lost): they are never committed, and for an ordered
source neither is anything read after them in their partition.
A commit that fails (``CheckpointError``) is retried with backoff; the frontier does
not advance past what was durably committed.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Sequence

from bridge import telemetry
from bridge.connector import Connector, Record
from bridge.errors import CheckpointError

__all__ = ["AckTracker"]


class AckTracker:
    """Tracks the records of one pipeline until they are committed or forgotten."""

    def __init__(self, connector: Connector, *, mapping: str, ordered: bool) -> None:
        self._connector = connector
        self._mapping = mapping
        self._ordered = ordered
        self._parts: dict[str, deque[Record]] = {}  # tracked records, in read order
        self._live: set[int] = set()  # tracked and not settled
        self._settled: set[int] = set()  # tracked, settled, not committed yet
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
        self._live.add(record.seq)
        self.unsettled += 1
        self.unsettled_bytes += len(record.encoded)

    def unsettled_records(self) -> list[Record]:
        return [r for q in self._parts.values() for r in q if r.seq in self._live]

    def _unlive(self, record: Record) -> bool:
        if record.seq not in self._live:
            return False
        self._live.discard(record.seq)
        self.unsettled -= 1
        self.unsettled_bytes -= len(record.encoded)
        return True

    async def settle(self, records: Sequence[Record]) -> None:
        """Mark records settled and commit whatever became committable.

        Returns once the commit is durable. Records not tracked (forgotten) are
        ignored. Cancellation leaves records settled but uncommitted: they are
        delivered again after a restart (at-least-once).
        """
        touched: dict[str, None] = {}
        for r in records:
            if self._unlive(r):
                self._settled.add(r.seq)
                touched[r.partition] = None
        if not touched:
            return
        await self._notify()
        for partition in touched:
            await self._commit_partition(partition)

    async def forget(self, records: Sequence[Record]) -> None:
        """Stop tracking records without committing them (see the module docstring)."""
        gone = {r.seq for r in records if r.seq in self._live or r.seq in self._settled}
        if not gone:
            return
        for partition in {r.partition for r in records}:
            queue = self._parts.get(partition)
            if queue is None:
                continue
            if self._ordered:
                cut = next((i for i, r in enumerate(queue) if r.seq in gone), len(queue))
                dropped, kept = list(queue)[cut:], deque(list(queue)[:cut])
            else:
                dropped = [r for r in queue if r.seq in gone]
                kept = deque(r for r in queue if r.seq not in gone)
            for r in dropped:
                self._unlive(r)
                self._settled.discard(r.seq)
            if kept:
                self._parts[partition] = kept
            else:
                del self._parts[partition]
        await self._notify()

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

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
            self._settled.difference_update(done)
            queue = self._parts.get(partition)  # forget() may have replaced it meanwhile
            if queue is None:
                return
            if self._ordered:
                # ``ready`` was a prefix of the queue and forget() keeps a prefix: pop it in
                # O(batch) instead of rebuilding the whole queue on every commit
                while queue and queue[0].seq in done:
                    queue.popleft()
                remaining = queue
            else:
                remaining = deque(r for r in queue if r.seq not in done)
            if remaining:
                self._parts[partition] = remaining
            else:
                del self._parts[partition]
                self._locks.pop(partition, None)

    async def _commit_with_retry(self, batch: list[Record]) -> None:
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
