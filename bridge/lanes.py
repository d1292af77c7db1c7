"""Lanes: the engine's state of each partition of one mapping, and read-ahead control.

A lane is made when the first record of a partition is read (or the source says it
reads the partition), and dropped once everything read of it is committed, nothing of it
is queued or in flight and the source is not reading it; or when the partition is revoked
(then it is marked ``gone``, and whatever still refers to it is ignored). The batcher
queues records on it, the dispatcher counts its batches in flight, the ack tracker keeps
its commit frontier, and ``Lanes`` counts what each lane holds: records read and neither
committed nor forgotten, and their bytes.

Read-ahead is bounded per partition first:

- A lane's *share* is ``max(min_share, limit // lanes)`` records and
  ``max(1 MiB, limit_bytes // lanes)`` bytes, ``lanes`` being the partitions that hold
  records now or that the source said it reads (``reading``). A lane that reaches its
  share is *paused*: ``room(p)`` is 0 for it, and sources that can pause (they ask
  ``room`` before reading a partition: Kafka, DynamoDB shards) read nothing more of it.
  It is resumed once it holds half its share or less. So a partition that does not move
  (its function fails forever) holds its share and no more, and never stops the others.
- Sources that cannot pause a partition (queues and buckets: their partitions are message
  groups and object keys, which a read cannot choose) share one limit instead: the reader
  stops pulling ``read()`` while the lanes hold ``limit`` records or ``limit_bytes``.

So what was read and is not committed stays below about ``max(limit, lanes * min_share)``
records, plus one chunk of the source; for a source that does not say which partitions it
reads, up to twice that while partitions come and go (a partition alone for a moment
may take all of ``limit``, and the others then get their shares besides).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field

from bridge.connector import Connector, Record

__all__ = ["Lane", "Lanes"]

log = logging.getLogger(__name__)

MIN_SHARE_BYTES = 1 << 20


@dataclass(slots=True, eq=False)
class Lane:
    """Everything the engine knows of one partition (see the module docstring)."""

    partition: str
    # reading: ordinals and bytes are cumulative over the lane's life
    read: int = 0
    read_bytes: int = 0
    tail: Record | None = None  # the last record read that is delivered or dead-lettered
    # batching
    queue: deque[Record] = field(default_factory=deque)
    queued_bytes: int = 0
    first_at: float = 0.0
    in_flight: int = 0
    # acks by frontier: every record up to ``settled`` is settled; up to ``committed``
    # (an ordinal) durably committed
    settled: Record | None = None
    committed: int = 0
    committed_bytes: int = 0
    committer: asyncio.Task[None] | None = None
    due: asyncio.Event | None = None  # set while the committer coalesces: commit now
    waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)
    # acks per record: records read and neither committed nor forgotten
    live: dict[Record, None] = field(default_factory=dict)
    # read-ahead
    count: int = 0
    nbytes: int = 0
    paused: bool = False
    resumed: asyncio.Event | None = None
    reading: bool = False  # the source said it reads this partition (see Lanes.reading)
    gone: bool = False

    @property
    def settled_seq(self) -> int:
        return self.settled.seq if self.settled is not None else 0

    @property
    def idle(self) -> bool:
        """Nothing of it is held: it can be dropped and made anew when records come."""
        return not (self.count or self.in_flight or self.queue or self.reading)


class Lanes:
    """The lanes of one pipeline and their read-ahead (see the module docstring).

    ``grew``/``shrank`` are told every change of what a lane holds; they pause and
    resume it and keep ``room`` (the reader's gate, for sources that cannot pause) set
    while the reader may pull more.
    """

    def __init__(
        self,
        connector: Connector,
        *,
        mapping: str,
        limit: int,
        limit_bytes: int,
        min_share: int,
    ) -> None:
        self._connector = connector
        self._mapping = mapping
        self.pausable = bool(getattr(connector, "pausable", False))
        self.limit = limit
        self.limit_bytes = limit_bytes
        self.min_share = min_share
        self.by_partition: dict[str, Lane] = {}
        self.count = 0  # every lane
        self.nbytes = 0
        self._open_count = 0  # lanes not paused
        self._open_bytes = 0
        self.room = asyncio.Event()
        self.room.set()

    def __len__(self) -> int:
        return len(self.by_partition)

    def lane(self, partition: str) -> Lane:
        lane = self.by_partition.get(partition)
        if lane is None:
            lane = self.by_partition[partition] = Lane(partition)
        return lane

    def share(self) -> tuple[int, int]:
        """(records, bytes) one lane may hold before it is paused."""
        lanes = max(1, len(self.by_partition))
        return (
            max(self.min_share, self.limit // lanes),
            max(MIN_SHARE_BYTES, self.limit_bytes // lanes),
        )

    # ------------------------------------------------------------ accounting

    def grew(self, lane: Lane, records: int, nbytes: int) -> None:
        """``lane`` took ``records`` more records (``nbytes``): read."""
        lane.count += records
        lane.nbytes += nbytes
        self.count += records
        self.nbytes += nbytes
        if not lane.paused:
            self._open_count += records
            self._open_bytes += nbytes
            if self.pausable:
                share, share_bytes = self.share()
                if lane.count >= share or lane.nbytes >= share_bytes:
                    self._pause(lane)
        self._gate()

    def shrank(self, lane: Lane, records: int, nbytes: int) -> None:
        """``lane`` let go of ``records`` (``nbytes``): committed or forgotten."""
        if lane.gone:
            return
        lane.count -= records
        lane.nbytes -= nbytes
        self.count -= records
        self.nbytes -= nbytes
        if lane.paused:
            share, share_bytes = self.share()
            if lane.count <= share // 2 and lane.nbytes <= share_bytes // 2:
                self._resume(lane)
        else:
            self._open_count -= records
            self._open_bytes -= nbytes
        self._gate()
        self.forget_if_idle(lane)

    def forget_if_idle(self, lane: Lane) -> None:
        if lane.idle and self.by_partition.get(lane.partition) is lane:
            del self.by_partition[lane.partition]

    def drop(self, lane: Lane) -> None:
        """The partition was revoked: forget the lane and what it held. Nothing is
        committed or paused for it any more."""
        if lane.gone:
            return
        lane.gone = True
        if self.by_partition.get(lane.partition) is lane:
            del self.by_partition[lane.partition]
        self.count -= lane.count
        self.nbytes -= lane.nbytes
        if not lane.paused:
            self._open_count -= lane.count
            self._open_bytes -= lane.nbytes
        lane.count = lane.nbytes = 0
        if lane.resumed is not None:
            lane.resumed.set()
        self._gate()

    # ------------------------------------------------------------ pausing

    def reading(self, partitions: Collection[str]) -> None:
        """The source reads these partitions from now on: they share the read-ahead even
        before they hold records, so a hundred shards started at once get a hundredth
        each, not all of it for the first one to ask."""
        for partition in partitions:
            self.lane(partition).reading = True

    def finished(self, partitions: Collection[str]) -> None:
        """The source read these partitions to their end; their lanes go once idle."""
        for partition in partitions:
            lane = self.by_partition.get(partition)
            if lane is not None:
                lane.reading = False
                self.forget_if_idle(lane)

    def room_for(self, partition: str) -> int:
        """How many more records of ``partition`` may be read now (0: paused)."""
        share = self.share()[0]
        lane = self.by_partition.get(partition)
        if lane is None:
            return share
        if lane.paused:
            return 0
        return max(1, share - lane.count)

    async def wait_room_for(self, partition: str) -> None:
        """Wait while ``partition`` is paused."""
        lane = self.by_partition.get(partition)
        if lane is None or not lane.paused:
            return
        if lane.resumed is None:
            lane.resumed = asyncio.Event()
        await lane.resumed.wait()

    def _pause(self, lane: Lane) -> None:
        lane.paused = True
        self._open_count -= lane.count
        self._open_bytes -= lane.nbytes
        if lane.resumed is not None:
            lane.resumed.clear()

    def _resume(self, lane: Lane) -> None:
        lane.paused = False
        self._open_count += lane.count
        self._open_bytes += lane.nbytes
        if lane.resumed is not None:
            lane.resumed.set()

    def _gate(self) -> None:
        if self.pausable or (self._open_count < self.limit and self._open_bytes < self.limit_bytes):
            self.room.set()
        else:
            self.room.clear()
