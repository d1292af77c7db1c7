"""The ack tracker: the only caller of a connector's ``commit()``.

Records are tracked in the order they were read. ``settle()`` marks records as done
(delivered, filtered out or dead-lettered). For an ordered source only the
contiguous settled prefix of each partition is committed, so one unsettled record
pins the frontier; an unordered source's records are committed as they settle.
``forget()`` drops records that are left to the source (abandoned to its own
redelivery, or of a partition we lost): they are never committed, and for an ordered
source neither is anything read after them in their partition.

Commits run behind delivery: ``settle()`` returns at once and one committer task per
partition commits whatever is committable, one commit at a time, so settles that pile up
while a commit is on its way go out together in the next one. ``committed()`` and
``committed_before()`` wait for durability; ``flush()`` waits for the committers.
A commit that fails is retried with backoff; the frontier does not advance past what
was durably committed. ``tracked``/``tracked_bytes`` count what was read and is neither
committed nor forgotten (the pipeline's read-ahead bound).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable, Collection, Sequence

from bridge import telemetry
from bridge.connector import Connector, Record
from bridge.errors import CheckpointError

__all__ = ["AckTracker"]

# Record.state, as the tracker sees it
NEW, LIVE, SETTLED, DONE = 0, 1, 2, 3  # DONE: committed or forgotten


class AckTracker:
    """Tracks the records of one pipeline until they are committed or forgotten."""

    def __init__(self, connector: Connector, *, mapping: str, ordered: bool) -> None:
        self._connector = connector
        self._mapping = mapping
        self._ordered = ordered
        self._parts: dict[str, deque[Record]] = {}  # tracked records, in read order
        self._committers: dict[str, asyncio.Task[None]] = {}
        self._seq = 0
        self._interrupted = False
        self.tracked = 0
        self.tracked_bytes = 0
        self.changed = asyncio.Condition()

    def track(self, record: Record) -> None:
        """Register a freshly read record (in source order within its partition)."""
        self._seq += 1
        record.seq = self._seq
        self._parts.setdefault(record.partition, deque()).append(record)
        record.state = LIVE
        self.tracked += 1
        self.tracked_bytes += len(record.encoded)

    def unsettled_records(self) -> list[Record]:
        return [r for q in self._parts.values() for r in q if r.state == LIVE]

    def _unlive(self, record: Record) -> bool:
        if record.state != LIVE:
            return False
        record.state = SETTLED
        return True

    async def settle(self, records: Sequence[Record]) -> None:
        """Mark records settled and have whatever became committable committed.

        Returns without waiting for the commit (see ``committed``). Records not tracked
        (forgotten) are ignored. Settled records whose commit never happens (a crash)
        are delivered again after a restart (at-least-once).
        """
        touched: dict[str, None] = {}
        for r in records:
            if self._unlive(r):
                touched[r.partition] = None
        if not touched:
            return
        for partition in touched:
            self._kick(partition)
        await self._notify()

    @staticmethod
    def _is_tracked(record: Record) -> bool:
        return record.state == LIVE or record.state == SETTLED

    async def committed(self, records: Sequence[Record]) -> None:
        """Wait until none of ``records`` is tracked any more (committed or forgotten),
        or ``interrupt()``."""
        await self._wait(lambda: not any(self._is_tracked(r) for r in records))

    async def committed_before(self, partition: str, seq: int) -> None:
        """Wait until every record of ``partition`` read before the one numbered ``seq``
        is committed or forgotten (ordered sources), or ``interrupt()``."""

        def done() -> bool:
            queue = self._parts.get(partition)
            return not queue or queue[0].seq >= seq

        await self._wait(done)

    async def _wait(self, predicate: Callable[[], bool]) -> None:
        if predicate() or self._interrupted:
            return
        async with self.changed:
            await self.changed.wait_for(lambda: self._interrupted or predicate())

    async def interrupt(self) -> None:
        """The pipeline is stopping: every ``committed*`` wait returns now. Commits go on."""
        self._interrupted = True
        await self._notify()

    async def flush(self, partitions: Collection[str] | None = None) -> None:
        """Wait for the commits under way (of ``partitions``, or of all): when it returns,
        everything that was committable when it was called has been committed."""
        while True:
            tasks = [
                task
                for partition, task in self._committers.items()
                if partitions is None or partition in partitions
            ]
            if not tasks:
                return
            await asyncio.wait(tasks)

    async def aclose(self) -> None:
        """Cancel the committers (what they had not committed is delivered again)."""
        tasks = list(self._committers.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def forget(self, records: Sequence[Record]) -> None:
        """Stop tracking records without committing them (see the module docstring)."""
        gone = {r.seq for r in records if self._is_tracked(r)}
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
                self._untrack(r)
            if kept:
                self._parts[partition] = kept
            else:
                del self._parts[partition]
        await self._notify()

    def _untrack(self, record: Record) -> None:
        record.state = DONE
        self.tracked -= 1
        self.tracked_bytes -= len(record.encoded)

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    def _kick(self, partition: str) -> None:
        if partition not in self._committers:
            task = asyncio.get_running_loop().create_task(
                self._committer(partition), name=f"{self._mapping}:commit:{partition}"
            )
            self._committers[partition] = task

    async def _committer(self, partition: str) -> None:
        """Commit ``partition``'s committable records until there are none. The task
        leaves ``_committers`` in the same step that finds nothing to commit, so a
        ``settle()`` after that starts a new one."""
        try:
            while True:
                ready = self._committable(partition)
                if not ready:
                    return
                await self._commit_with_retry(ready)
                self._committed(partition, ready)
                await self._notify()
        finally:
            if self._committers.get(partition) is asyncio.current_task():
                del self._committers[partition]

    def _committable(self, partition: str) -> list[Record]:
        queue = self._parts.get(partition)
        if not queue:
            return []
        if not self._ordered:
            return [r for r in queue if r.state == SETTLED]
        ready: list[Record] = []
        for r in queue:
            if r.state != SETTLED:
                break
            ready.append(r)
        return ready

    def _committed(self, partition: str, ready: list[Record]) -> None:
        for r in ready:
            if r.state == SETTLED:  # not forgotten meanwhile
                self._untrack(r)
        queue = self._parts.get(partition)  # forget() may have replaced it meanwhile
        if queue is None:
            return
        if self._ordered:
            # ``ready`` was a prefix of the queue and forget() keeps a prefix: pop it in
            # O(batch) instead of rebuilding the whole queue on every commit
            while queue and queue[0].state == DONE:
                queue.popleft()
            remaining = queue
        else:
            remaining = deque(r for r in queue if r.state != DONE)
        if remaining:
            self._parts[partition] = remaining
        else:
            del self._parts[partition]

    async def _commit_with_retry(self, batch: list[Record]) -> None:
        attempt = 0
        while True:
            try:
                await self._connector.commit(batch)
                telemetry.emit(telemetry.COMMITTED, mapping=self._mapping, records=len(batch))
                return
            except Exception as exc:  # a bug in a connector must not stop the commits
                if not isinstance(exc, CheckpointError):
                    logging.getLogger(__name__).exception(
                        "commit of %s failed unexpectedly", self._mapping
                    )
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
