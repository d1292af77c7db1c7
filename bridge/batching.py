"""Per-partition batch assembly.

A batch is a list of records of one partition, in source order, that is sent in one
invocation. A batch is ready when it holds ``batch_size`` records, when the next
record would push its payload over ``max_bytes``, when ``window`` seconds passed
since its first record arrived (``window`` 0: as soon as records are there), or when
the batcher is flushing. For ordered sources a partition has at most one batch in
flight: its next batch is held until ``done(partition)``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field

from bridge.connector import Record

__all__ = ["Batcher"]


@dataclass(slots=True)
class _Partition:
    records: deque[Record] = field(default_factory=deque)
    first_at: float = 0.0
    in_flight: int = 0
    size: int = 0


class Batcher:
    def __init__(
        self,
        *,
        batch_size: int,
        window: float,
        max_bytes: int,
        ordered: bool,
        overhead: int = 64,
    ) -> None:
        self.batch_size = batch_size
        self.window = window
        self.max_bytes = max_bytes - overhead
        self.ordered = ordered
        self._parts: dict[str, _Partition] = {}
        self.pending = 0

    def add(self, record: Record) -> None:
        part = self._parts.get(record.partition)
        if part is None:
            part = self._parts[record.partition] = _Partition()
        if not part.records:
            part.first_at = time.monotonic()
        part.records.append(record)
        part.size += len(record.encoded) + 1
        self.pending += 1

    def take_ready(self, limit: int, *, flush: bool = False) -> list[list[Record]]:
        """Up to ``limit`` ready batches, marking them in flight."""
        now = time.monotonic()
        out: list[list[Record]] = []
        for key in list(self._parts):
            if len(out) >= limit:
                break
            part = self._parts[key]
            while part.records and len(out) < limit:
                if self.ordered and part.in_flight:
                    break
                full = len(part.records) >= self.batch_size
                if not (
                    full
                    or flush
                    or now - part.first_at >= self.window
                    or part.size > self.max_bytes
                ):
                    break
                out.append(self._cut(part))
                part.first_at = now
                if self.ordered:
                    break
            if not part.records and not part.in_flight:
                del self._parts[key]
        return out

    def done(self, partition: str) -> None:
        """The in-flight batch of ``partition`` finished (settled or abandoned)."""
        part = self._parts.get(partition)
        if part is None:
            return
        part.in_flight -= 1
        if not part.records and not part.in_flight:
            del self._parts[partition]

    def next_deadline(self) -> float | None:
        """The monotonic time at which some waiting batch's window closes."""
        deadlines = [
            p.first_at + self.window
            for p in self._parts.values()
            if p.records and not (self.ordered and p.in_flight)
        ]
        return min(deadlines) if deadlines else None

    def drop_partitions(self, partitions: Collection[str]) -> list[Record]:
        """Forget the records not yet in a batch of ``partitions`` (lost ownership)."""
        dropped: list[Record] = []
        for key in partitions:
            part = self._parts.get(key)
            if part is None:
                continue
            dropped.extend(part.records)
            self.pending -= len(part.records)
            part.records.clear()
            part.size = 0
            if not part.in_flight:
                del self._parts[key]
        return dropped

    def drop_pending(self) -> list[Record]:
        """Forget every record not yet in a batch (shutdown); they stay unsettled."""
        dropped = [r for p in self._parts.values() for r in p.records]
        for p in self._parts.values():
            p.records.clear()
            p.size = 0
        self.pending = 0
        return dropped

    def _cut(self, part: _Partition) -> list[Record]:
        batch: list[Record] = []
        total = 0
        while part.records and len(batch) < self.batch_size:
            size = len(part.records[0].encoded) + 1
            if batch and total + size > self.max_bytes:
                break
            batch.append(part.records.popleft())
            total += size
        self.pending -= len(batch)
        part.size -= total
        part.in_flight += 1
        return batch
