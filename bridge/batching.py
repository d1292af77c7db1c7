"""Per-partition batch assembly, on the lanes of one pipeline.

A batch is a list of records of one partition, in source order, sent in one invocation.
It is ready when it holds ``batch_size`` records, when the next record would push its
payload over ``max_bytes``, when ``window`` seconds passed since its first record was
queued (``window`` 0: as soon as records are there), or when the batcher is flushing.

A record that could not be shaped (``encoded`` empty) is a batch of its own, ready at
once: the pipeline dead-letters it in its place in the partition's order.

For ordered sources a partition has at most one batch in flight: its next batch is held
until ``done(lane)``. Lanes take turns: a lane that gave a batch goes to the back.

With tumbling windows (``windowed``) a batch holds records of one window only
(``Record.window``), and is ready as soon as a record of a later window is queued behind
it.
"""

from __future__ import annotations

import time

from bridge.connector import Record
from bridge.lanes import Lane

__all__ = ["Batcher"]


class Batcher:
    def __init__(
        self,
        *,
        batch_size: int,
        window: float,
        max_bytes: int,
        ordered: bool,
        overhead: int = 64,
        windowed: bool = False,
    ) -> None:
        self.windowed = windowed
        self.batch_size = batch_size
        self.window = window
        self.max_bytes = max_bytes - overhead
        self.ordered = ordered
        self._waiting: dict[Lane, None] = {}  # lanes with queued records, in turn order
        self.pending = 0

    def add(self, lane: Lane, record: Record) -> None:
        if not lane.queue:
            lane.first_at = time.monotonic()
            self._waiting[lane] = None
        lane.queue.append(record)
        lane.queued_bytes += len(record.encoded) + 1
        self.pending += 1

    def take_ready(self, limit: int, *, flush: bool = False) -> list[list[Record]]:
        """Up to ``limit`` ready batches, counted in flight on their lanes."""
        now = time.monotonic()
        out: list[list[Record]] = []
        for lane in list(self._waiting):
            if len(out) >= limit:
                break
            queue = lane.queue
            while queue and len(out) < limit:
                if self.ordered and lane.in_flight:
                    break
                ready = (
                    flush
                    or not queue[0].encoded
                    or len(queue) >= self.batch_size
                    or now - lane.first_at >= self.window
                    or lane.queued_bytes > self.max_bytes
                    or (self.windowed and queue[-1].window != queue[0].window)
                )
                if not ready:
                    break
                out.append(self._cut(lane))
                lane.first_at = now
                if self.ordered:
                    break
            del self._waiting[lane]
            if queue:
                self._waiting[lane] = None  # to the back: lanes take turns
        return out

    def done(self, lane: Lane) -> None:
        """A batch of ``lane`` finished (settled, given back or abandoned)."""
        lane.in_flight -= 1

    def next_deadline(self) -> float | None:
        """The monotonic time at which some waiting batch's window closes."""
        deadline: float | None = None
        for lane in self._waiting:
            if self.ordered and lane.in_flight:
                continue
            at = lane.first_at + self.window
            if deadline is None or at < deadline:
                deadline = at
        return deadline

    def drop(self, lane: Lane) -> list[Record]:
        """Take the records of ``lane`` not yet in a batch out (revoke, give back)."""
        dropped = list(lane.queue)
        lane.queue.clear()
        lane.queued_bytes = 0
        self.pending -= len(dropped)
        self._waiting.pop(lane, None)
        return dropped

    def drop_all(self) -> list[Record]:
        """Take every record not yet in a batch out (shutdown); they stay unsettled."""
        dropped: list[Record] = []
        for lane in list(self._waiting):
            dropped.extend(self.drop(lane))
        return dropped

    def _cut(self, lane: Lane) -> list[Record]:
        queue = lane.queue
        head = queue.popleft()
        batch = [head]
        total = len(head.encoded) + 1
        if head.encoded:
            while queue and len(batch) < self.batch_size:
                record = queue[0]
                size = len(record.encoded) + 1
                if not record.encoded or total + size > self.max_bytes:
                    break
                if self.windowed and record.window != head.window:
                    break
                batch.append(queue.popleft())
                total += size
        self.pending -= len(batch)
        lane.queued_bytes -= total
        lane.in_flight += 1
        return batch
