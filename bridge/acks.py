"""The ack tracker: the only caller of a connector's ``commit()``.

A record is *settled* once it was delivered, filtered out or dead-lettered. Two ways of
acknowledging, chosen by the connector's ``redelivery`` (see ``Connector``):

- **Frontier** (logs: Kafka, DynamoDB shards, buckets, folders). Records of a lane settle
  in read order: a batch, then the next, one in flight at a time for ordered sources. The
  lane keeps only the newest record up to which everything is settled (``lane.settled``)
  and what was committed (an ordinal); a filtered-out record read behind a record still
  to be delivered hangs on that record as its ``trailer`` and is settled with it. So
  settling a batch is one comparison, not a walk over its records, and a commit is
  ``commit([frontier record])``.
- **Per record** (queues: SQS). Each record is live, settled or done; settled records are
  acknowledged (deleted) together by one committer, whatever their lane. ``forget()``
  drops records left to the source (abandoned, given back): never committed.

Commits run behind delivery: ``settle()`` returns at once and a committer task commits
whatever became committable, one commit at a time (per lane for frontiers), so settles that
pile up while a commit is on its way go out together in the next one. A commit that fails
is retried with backoff; nothing advances past what was durably committed.
``committed_upto()`` waits for a lane's commit, ``flush()`` for the committers. Every
change of what a lane holds is told to ``Lanes`` (read-ahead).

With ``commit_interval`` (seconds, frontier lanes) a lane's committer first waits that
long, so everything settled meanwhile goes out in one commit: coalesced by time as well
as by count. The wait ends early once the lane holds a quarter of its read-ahead share
settled and not committed (what is not committed counts against the share, so waiting
longer would pause the lane and cap it at a share per interval; half a share measured
slower at batch 100), and when stopping
(``interrupt``) or flushing: the drain commits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Collection, Sequence

from bridge import telemetry
from bridge.connector import Connector, Record
from bridge.errors import CheckpointError
from bridge.lanes import Lane, Lanes

__all__ = ["DONE", "LIVE", "SETTLED", "AckTracker"]

log = logging.getLogger(__name__)

# Record.state, for per-record acks
LIVE, SETTLED, DONE = 1, 2, 3  # DONE: committed or forgotten


class AckTracker:
    """Tracks the records of one pipeline until they are committed or forgotten."""

    def __init__(
        self,
        connector: Connector,
        *,
        mapping: str,
        lanes: Lanes,
        per_record: bool,
        commit_interval: float = 0.0,
    ) -> None:
        self.commit_interval = commit_interval
        self._hurry = asyncio.Event()  # set when stopping: coalescing waits end now
        self._connector = connector
        self._mapping = mapping
        self._lanes = lanes
        self.per_record = per_record
        self._ready: list[Record] = []  # per record: settled, to be committed
        self._committer: asyncio.Task[None] | None = None  # per record
        self._lane_committers: set[asyncio.Task[None]] = set()
        self._interrupted = False

    # ------------------------------------------------------------ settling

    def settle(self, records: Sequence[Record]) -> None:
        """Mark ``records`` settled; for a frontier they are the next records of one lane
        in read order. Returns without waiting for the commit; records of a revoked lane
        or already forgotten are ignored."""
        if not records:
            return
        if not self.per_record:
            last = records[-1]
            self._advance(last.lane, last.trailer or last)
            return
        ready = self._ready
        for r in records:
            if r.state == LIVE and not r.lane.gone:
                r.state = SETTLED
                ready.append(r)
        if ready and self._committer is None:
            self._committer = asyncio.get_running_loop().create_task(
                self._commit_records(), name=f"{self._mapping}:commit"
            )

    def filtered(self, record: Record) -> None:
        """``record`` was filtered out (called in read order, as it is read)."""
        if self.per_record:
            self.settle([record])
            return
        lane: Lane = record.lane
        host = lane.tail
        if host is None or host.seq <= lane.settled_seq:
            self._advance(lane, record)
        else:
            host.trailer = record  # settled together with the record before it

    def _advance(self, lane: Lane, record: Record) -> None:
        if lane.gone or record.seq <= lane.settled_seq:
            return
        lane.settled = record
        if lane.due is not None and self._due(lane, record):
            lane.due.set()
        if lane.committer is None:
            task = asyncio.get_running_loop().create_task(
                self._commit_lane(lane), name=f"{self._mapping}:commit:{lane.partition}"
            )
            lane.committer = task
            self._lane_committers.add(task)
            task.add_done_callback(self._lane_committers.discard)

    def forget(self, records: Sequence[Record]) -> None:
        """Per record: stop tracking live ``records`` without committing them (the source
        redelivers them)."""
        for r in records:
            if r.state != LIVE or r.lane.gone:
                continue
            r.state = DONE
            del r.lane.live[r]
            self._lanes.shrank(r.lane, 1, len(r.encoded))

    def unsettled(self) -> list[Record]:
        """Per record: records read and neither settled nor forgotten."""
        return [
            r
            for lane in list(self._lanes.by_partition.values())
            for r in lane.live
            if r.state == LIVE
        ]

    # ------------------------------------------------------------ waiting

    async def committed_upto(self, lane: Lane, seq: int) -> None:
        """Wait until ``lane`` is committed up to ordinal ``seq``, it was revoked, or
        ``interrupt()``."""
        if lane.committed >= seq or lane.gone or self._interrupted:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        lane.waiters.append((seq, waiter))
        await waiter

    async def flush(self, lanes: Collection[Lane] | None = None) -> None:
        """Wait for the commits under way (of ``lanes``, or of all): when it returns,
        everything that was committable when it was called has been committed (coalescing
        waits are cut short meanwhile)."""
        self._hurry_all()
        try:
            await self._flush(lanes)
        finally:
            if not self._interrupted:
                self._hurry.clear()

    async def _flush(self, lanes: Collection[Lane] | None) -> None:
        while True:
            if lanes is None:
                tasks = set(self._lane_committers)
                if self._committer is not None:
                    tasks.add(self._committer)
            else:
                tasks = {lane.committer for lane in lanes if lane.committer is not None}
            if not tasks:
                return
            await asyncio.wait(tasks)

    def interrupt(self) -> None:
        """The pipeline is stopping: every ``committed_upto`` wait returns now, and the
        committers stop coalescing."""
        self._interrupted = True
        self._hurry_all()
        for lane in list(self._lanes.by_partition.values()):
            _release_waiters(lane, None)

    def drop(self, lane: Lane) -> None:
        """The partition was revoked: forget the lane; nothing more of it is committed."""
        for r in lane.live:
            r.state = DONE
        lane.live.clear()
        if lane.committer is not None:
            lane.committer.cancel()
        self._lanes.drop(lane)
        _release_waiters(lane, None)

    async def aclose(self) -> None:
        """Cancel the committers (what they had not committed is delivered again)."""
        tasks = set(self._lane_committers)
        if self._committer is not None:
            tasks.add(self._committer)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------ committing

    async def _commit_lane(self, lane: Lane) -> None:
        """Commit ``lane``'s frontier until it stops moving."""
        try:
            while not lane.gone:
                if self.commit_interval and not self._hurry.is_set():
                    await self._coalesce(lane)
                target = lane.settled
                if target is None or target.seq <= lane.committed:
                    return
                await self._commit_with_retry([target])
                if lane.gone:
                    return
                records = target.seq - lane.committed
                nbytes = target.mark - lane.committed_bytes
                lane.committed, lane.committed_bytes = target.seq, target.mark
                telemetry.emit(telemetry.COMMITTED, mapping=self._mapping, records=records)
                _release_waiters(lane, lane.committed)
                self._lanes.shrank(lane, records, nbytes)
        finally:
            if lane.committer is asyncio.current_task():
                lane.committer = None
            self._lanes.forget_if_idle(lane)

    async def _coalesce(self, lane: Lane) -> None:
        """Wait ``commit_interval``, or until ``lane.due`` (see the module docstring)."""
        if self._due(lane, lane.settled):
            return
        due = lane.due = asyncio.Event()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(due.wait(), self.commit_interval)
        finally:
            lane.due = None

    def _due(self, lane: Lane, record: Record | None) -> bool:
        """Whether ``lane``, settled up to ``record``, holds a quarter of its share
        uncommitted."""
        if record is None:
            return False
        share, share_bytes = self._lanes.share()
        return (
            lane.paused
            or record.seq - lane.committed >= share // 4
            or record.mark - lane.committed_bytes >= share_bytes // 4
        )

    def _hurry_all(self) -> None:
        """End every coalescing wait now."""
        self._hurry.set()
        for lane in list(self._lanes.by_partition.values()):
            if lane.due is not None:
                lane.due.set()

    async def _commit_records(self) -> None:
        """Commit settled records (per record) until there are none."""
        try:
            while self._ready:
                batch, self._ready = self._ready, []
                batch = [r for r in batch if r.state == SETTLED]
                if not batch:
                    continue
                await self._commit_with_retry(batch)
                for r in batch:
                    if r.state != SETTLED:  # its lane was revoked meanwhile
                        continue
                    r.state = DONE
                    lane: Lane = r.lane
                    del lane.live[r]
                    self._lanes.shrank(lane, 1, len(r.encoded))
                telemetry.emit(telemetry.COMMITTED, mapping=self._mapping, records=len(batch))
        finally:
            if self._committer is asyncio.current_task():
                self._committer = None

    async def _commit_with_retry(self, records: list[Record]) -> None:
        attempt = 0
        while True:
            try:
                await self._connector.commit(records)
                return
            except Exception as exc:  # a bug in a connector must not stop the commits
                if not isinstance(exc, CheckpointError) and not attempt:
                    log.exception("commit of %s failed unexpectedly", self._mapping)
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


def _release_waiters(lane: Lane, upto: int | None) -> None:
    """Wake ``lane``'s waiters for ordinals up to ``upto`` (None: all of them)."""
    if not lane.waiters:
        return
    keep = []
    for seq, waiter in lane.waiters:
        if upto is None or seq <= upto:
            if not waiter.done():
                waiter.set_result(None)
        else:
            keep.append((seq, waiter))
    lane.waiters = keep
