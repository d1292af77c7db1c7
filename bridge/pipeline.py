"""One event source mapping at run time: read -> normalize -> filter -> batch ->
deliver -> settle -> commit.

Two tasks share the pipeline's lanes (``bridge/lanes.py``, one per partition): the
reader pulls record chunks from the connector and queues them on their lanes (pausing
a lane that holds its share of the read-ahead, see ``Lanes``), and the dispatcher cuts
ready batches and starts one delivery task per batch, at most ``maximum_concurrency``
at once (for ordered sources also one per partition). A record that cannot be shaped
keeps its place in its partition and is dead-lettered there, as a batch of its own.

Commits follow delivery instead of holding it up: for an ordered source a partition's
next batch is released as soon as its batch is delivered *and* the batch before that one
is committed. So per partition at most two batches are delivered but not yet committed
(one committing, one in flight): the records a crash can deliver twice. With a
``commit_interval`` a partition commits at most that often and its batches do not wait
for commits: what a crash can deliver twice is then what settled in the last interval
(plus a commit on its way), and never more than the partition's read-ahead share.

Failures, closed: an outage is retried inside the delivery; an exception that escapes a
delivery task is a bug in the bridge: it is logged once with its traceback and the
pipeline stops as for a source failure (drained, what settled committed), then raises
it, and the supervisor restarts the mapping from its checkpoint. Nothing is left live and
unowned.

``run()`` returns when ``stop()`` was called: reading stops, batches in flight get
``shutdown_timeout`` seconds to finish (then they are cancelled), records never
dispatched stay unsettled (released to per-record sources), only settled records were
ever committed, and the connector is always closed, even if ``run()`` is cancelled.
A source failure drains the same way, then raises ``SourceError`` for the supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from bridge import telemetry
from bridge.acks import LIVE, AckTracker
from bridge.batching import Batcher
from bridge.connector import Connector, PartitionControl, Record
from bridge.destinations import Destination
from bridge.errors import BridgeError, NormalizeError, SourceError, SourceUnavailable
from bridge.events import dumps, not_normalized_record
from bridge.filtering import FilterSet
from bridge.lanes import Lane, Lanes
from bridge.metrics import MappingStats
from bridge.retry import Deliverer, RetryPolicy, Stopping
from bridge.targets.base import Target
from bridge.windows import Windows

__all__ = ["Pipeline", "PipelineOptions"]

log = logging.getLogger(__name__)

CLOSE_TIMEOUT = 10.0  # for connector.aclose(), which must not hang a stop forever
WINDOW_GRACE = 1.0  # seconds after a tumbling window's end before it is closed by time


@dataclass(frozen=True, slots=True)
class PipelineOptions:
    """A mapping's options with the source's defaults applied."""

    batch_size: int
    window: float
    maximum_concurrency: int
    policy: RetryPolicy
    shutdown_timeout: float = 30.0
    # frontier sources: commit at most this often per partition, and let a partition's
    # next batch go without waiting for the last commit (0: commit behind every batch)
    commit_interval: float = 0.0
    max_in_flight_records: int = 0  # 0: derived from batch size and concurrency
    max_in_flight_bytes: int = 64 * 1024 * 1024

    @property
    def record_limit(self) -> int:
        """The mapping's read-ahead (see ``Lanes``)."""
        if self.max_in_flight_records:
            return self.max_in_flight_records
        return max(1000, 4 * self.batch_size * min(self.maximum_concurrency, 16))

    @property
    def partition_minimum(self) -> int:
        """The least read-ahead of one partition: enough for a batch committing, one in
        flight, one ready and one filling."""
        return 4 * self.batch_size


class Pipeline:
    def __init__(
        self,
        *,
        mapping: str,
        connector: Connector,
        target: Target,
        destination: Destination,
        options: PipelineOptions,
        filters: FilterSet | None,
        function_arn: str,
        partitions: PartitionControl | None = None,
        stats: MappingStats | None = None,
        windows: Windows | None = None,
    ) -> None:
        self.mapping = mapping
        self.windows = windows
        self.stats = stats if stats is not None else MappingStats()
        self.connector = connector
        self.options = options
        self.filters = filters if filters else None
        self.ordered = connector.ordered  # may be decided per instance (SQS FIFO)
        # logs commit a frontier, which needs their records settled in order
        self.per_record = connector.redelivery == "source" or not self.ordered
        self.lanes = Lanes(
            connector,
            mapping=mapping,
            limit=options.record_limit,
            limit_bytes=options.max_in_flight_bytes,
            min_share=options.partition_minimum,
        )
        self.tracker = AckTracker(
            connector,
            mapping=mapping,
            lanes=self.lanes,
            per_record=self.per_record,
            commit_interval=options.commit_interval,
        )
        self.batcher = Batcher(
            batch_size=options.batch_size,
            window=options.window,
            max_bytes=options.policy.max_payload_bytes,
            ordered=self.ordered,
            windowed=windows is not None,
        )
        self._stopping = asyncio.Event()
        self.deliverer = Deliverer(
            mapping=mapping,
            connector=connector,
            target=target,
            destination=destination,
            policy=options.policy,
            settle=self.tracker.settle,
            give_back=self._give_back,
            function_arn=function_arn,
            stopping=self._stopping,
            stats=self.stats,
            windows=windows,
        )
        if partitions is not None:
            partitions.bind(self.revoke, self.lanes)
        self._wake = asyncio.Event()
        encode = getattr(connector, "encode", None)  # optional: the dict-free fast path
        self._encode: Callable[[Record], bytes] | None = (
            encode if self.filters is None and callable(encode) else None
        )
        self._in_flight: dict[asyncio.Task[None], Lane] = {}  # delivery task -> its lane
        self._heads: dict[asyncio.Task[None], Record] = {}  # delivery task -> first record
        self._invalid: dict[Record, str] = {}  # records that could not be shaped: why
        self._revoking: set[str] = set()  # partitions being revoked: read nothing of them
        self._crash: BaseException | None = None
        self._crashed = asyncio.Event()
        self._reported: set[type[BaseException]] = set()
        self._dispatcher: asyncio.Task[None] | None = None

    @property
    def in_flight(self) -> int:
        """Records read and not yet committed (or forgotten)."""
        return self.lanes.count

    def oldest_age(self) -> float | None:
        """Seconds since the oldest record read and not yet settled was written to its
        source (``Record.arrived``); None when there is none. For metrics: it looks at the
        head of each lane and each batch in flight, not at every record."""
        heads = [r.arrived for r in self._heads.values()]
        for lane in self.lanes.by_partition.values():
            if lane.live:
                heads.append(next(iter(lane.live)).arrived)
            elif lane.queue:
                heads.append(lane.queue[0].arrived)
        return max(0.0, time.time() - min(heads)) if heads else None

    def stop(self) -> None:
        """Ask ``run()`` to drain and return."""
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Run until ``stop()``; raise SourceError when the source fails, or the bug that
        broke a delivery (after draining). The connector is closed in every case."""
        try:
            await self.connector.open()
            await self._run()
        finally:
            # also when run() was cancelled half-way through its drain: nothing of this
            # pipeline may go on invoking or committing after it returned
            leftovers = [*self._in_flight, *([self._dispatcher] if self._dispatcher else [])]
            for task in leftovers:
                task.cancel()
            try:
                await self.tracker.aclose()
                await asyncio.gather(*leftovers, return_exceptions=True)
            finally:
                await self._close_connector()

    async def _run(self) -> None:
        dispatcher = asyncio.create_task(self._dispatch_loop(), name=f"{self.mapping}:dispatch")
        self._dispatcher = dispatcher
        reader = asyncio.create_task(self._read_loop(), name=f"{self.mapping}:read")
        closer = (
            asyncio.create_task(self._close_windows(), name=f"{self.mapping}:windows")
            if self.windows is not None
            else None
        )
        stop_wait = asyncio.create_task(self._stopping.wait())
        crash_wait = asyncio.create_task(self._crashed.wait())
        failure: BaseException | None = None
        try:
            await asyncio.wait({reader, stop_wait, crash_wait}, return_when=asyncio.FIRST_COMPLETED)
            if reader.done() and not reader.cancelled():
                failure = reader.exception()
        finally:
            # stopped, crashed or the source failed: retries give up now, invocations under
            # way get the shutdown timeout to finish
            self._stopping.set()
            for task in (reader, stop_wait, crash_wait, *([closer] if closer else [])):
                task.cancel()
            await asyncio.gather(reader, stop_wait, crash_wait, return_exceptions=True)
            if closer is not None:
                await asyncio.gather(closer, return_exceptions=True)
            self.tracker.interrupt()
            deadline = time.monotonic() + self.options.shutdown_timeout  # drain and commits
            await self._drain(deadline)
            dispatcher.cancel()
            await asyncio.gather(dispatcher, return_exceptions=True)
            await self._flush_commits(deadline)
            await self._release_unsettled(deadline)
            with contextlib.suppress(Exception):  # nothing is pending on it any more
                await self.deliverer.destination.aclose()
        if self._crash is not None:
            raise self._crash
        if failure is not None:
            if isinstance(failure, SourceError):
                raise failure
            if not isinstance(failure, BridgeError):
                log.error(
                    "%s: the source failed unexpectedly",
                    self.mapping,
                    exc_info=(type(failure), failure, failure.__traceback__),
                )
            raise SourceUnavailable(f"source failed: {failure!r}") from failure

    async def _close_connector(self) -> None:
        """``connector.aclose()``, bounded, and carried on even if ``run()`` is cancelled
        meanwhile (a supervisor's last resort)."""
        closing = asyncio.ensure_future(self.connector.aclose())
        try:
            await asyncio.wait_for(asyncio.shield(closing), CLOSE_TIMEOUT)
        except TimeoutError:
            log.warning("%s: closing the source took over %ss", self.mapping, CLOSE_TIMEOUT)
        except Exception:
            log.exception("%s: closing the source failed", self.mapping)

    # ------------------------------------------------------------ reading

    async def _read_loop(self) -> None:
        room = self.lanes.room
        async for chunk in self.connector.read():
            self._admit(chunk)
            self._wake.set()
            if not room.is_set():
                await room.wait()

    def _admit(self, chunk: Sequence[Record]) -> None:
        """Encode, filter and queue a chunk of records on their lanes, in order.

        The hot path: one pass, no awaits. A record that cannot be shaped is queued with
        an empty ``encoded`` (dead-lettered in its turn); a filtered-out one is settled."""
        connector, filters, encode = self.connector, self.filters, self._encode
        lanes, tracker, add = self.lanes, self.tracker, self.batcher.add
        by_partition = lanes.by_partition
        per_record = self.per_record
        revoking = self._revoking
        lane: Lane | None = None
        count = size = filtered = 0
        self.stats.read += len(chunk)
        windows = self.windows
        for record in chunk:
            if revoking and record.partition in revoking:
                continue  # no longer ours: never committed, its new owner reads it
            if lane is None or record.partition != lane.partition:
                if lane is not None:
                    lanes.grew(lane, count, size)
                lane = by_partition.get(record.partition) or lanes.lane(record.partition)
                count = size = 0
            event = None
            try:
                if encode is not None:
                    record.encoded = encode(record)
                else:
                    event = connector.normalize(record)
                    record.encoded = dumps(event)
            except NormalizeError as exc:
                record.encoded = b""
                self._invalid[record] = str(exc)
            except Exception as exc:  # a bug in normalize: this record, not the mapping
                record.encoded = b""
                self._invalid[record] = self._unexpected(exc)
            n = len(record.encoded)
            lane.read += 1
            lane.read_bytes += n
            record.seq, record.mark, record.lane = lane.read, lane.read_bytes, lane
            if windows is not None:
                record.window = windows.assign(record.partition, record.arrived)
            count += 1
            size += n
            if per_record:
                record.state = LIVE
                lane.live[record] = None
            if (
                event is not None
                and filters is not None
                and not filters.matches(connector.filter_view(event))
            ):
                filtered += 1
                tracker.filtered(record)
                continue
            lane.tail = record
            add(lane, record)
        if lane is not None:
            lanes.grew(lane, count, size)
        if filtered:
            self.stats.filtered += filtered
            telemetry.emit(telemetry.RECORD_FILTERED, mapping=self.mapping, records=filtered)

    def _unexpected(self, exc: Exception) -> str:
        """The reason of a record that broke ``normalize``; the traceback is logged once."""
        if type(exc) not in self._reported:
            self._reported.add(type(exc))
            log.error(
                "%s: shaping a record failed unexpectedly; such records are dead-lettered",
                self.mapping,
                exc_info=(type(exc), exc, exc.__traceback__),
            )
        return f"unexpected {type(exc).__name__}: {exc}"

    async def _dead_letter_invalid(self, record: Record) -> None:
        reason = self._invalid.pop(record, "the record could not be shaped")
        telemetry.emit(
            telemetry.RECORD_INVALID,
            mapping=self.mapping,
            partition=record.partition,
            error=reason,
            level=logging.WARNING,
        )
        document = not_normalized_record(
            reason,
            function_arn=self.deliverer.function_arn,
            mapping=self.mapping,
            partition=record.partition,
            position=record.position,
            now=time.time(),
        )
        await self.deliverer.write_failures([document])
        self.stats.dead_lettered["RecordNotNormalized"] += 1
        self.tracker.settle([record])

    # ------------------------------------------------------------ dispatching

    async def _dispatch_loop(self) -> None:
        batcher, concurrency = self.batcher, self.options.maximum_concurrency
        while True:
            self._wake.clear()
            free = concurrency - len(self._in_flight)
            if free > 0 and batcher.pending and not self._stopping.is_set():
                for batch in batcher.take_ready(free):
                    lane: Lane = batch[0].lane
                    task = asyncio.create_task(self._deliver(batch, lane, lane.settled_seq))
                    self._in_flight[task] = lane
                    self._heads[task] = batch[0]
                    task.add_done_callback(self._discard)
            deadline = batcher.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            if timeout is not None and len(self._in_flight) >= concurrency:
                timeout = None  # nothing can start before a delivery finishes
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _discard(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        self._heads.pop(task, None)
        # the wake-up in _deliver may have run the dispatcher before this callback, while
        # the task still held its slot: wake it again now that the slot is free
        self._wake.set()

    async def _deliver(self, batch: list[Record], lane: Lane, base: int) -> None:
        """Deliver (or dead-letter) ``batch``; for a frontier, then wait until the lane is
        committed up to ``base`` (the batch before this one) before its next batch."""
        release = True
        try:
            if not batch[0].encoded:
                await self._dead_letter_invalid(batch[0])
            else:
                await self.deliverer.deliver(batch)
            if not self.per_record:
                if lane.settled_seq < batch[-1].seq and not lane.gone:
                    raise AssertionError(f"batch of {lane.partition!r} ended unsettled")
                if not self.options.commit_interval:  # else the read-ahead bounds it
                    await self.tracker.committed_upto(lane, base)
        except Stopping:
            pass
        except Exception as exc:
            # a bug: the lane stays blocked (nothing after this batch may settle), the
            # pipeline stops and the mapping restarts from its checkpoint
            release = False
            self._fail(exc)
        finally:
            if release:
                self.batcher.done(lane)
                self.lanes.forget_if_idle(lane)
            self._wake.set()

    def _fail(self, exc: BaseException) -> None:
        if self._crash is None:
            self._crash = exc
            log.error(
                "%s: delivering a batch failed unexpectedly; the mapping restarts",
                self.mapping,
                exc_info=(type(exc), exc, exc.__traceback__),
            )
        self._stopping.set()
        self._crashed.set()

    async def _close_windows(self) -> None:
        """Close each partition's window once its end passed (by ``WINDOW_GRACE``) and
        nothing of the partition waits or is in flight: its final invocation holds the
        partition's slot, like a batch."""
        windows = self.windows
        assert windows is not None
        while True:
            await asyncio.sleep(min(1.0, windows.seconds / 4))
            now = time.time()
            for partition, window in windows.open_windows().items():
                if windows.end(window.index) + WINDOW_GRACE > now or self._stopping.is_set():
                    continue
                lane = self.lanes.by_partition.get(partition)
                if lane is not None and (lane.queue or lane.in_flight or lane.gone):
                    continue  # a batch goes first; a later window's closes this one
                if partition in self._revoking:
                    continue
                lane = lane or self.lanes.lane(partition)
                lane.in_flight += 1
                try:
                    await self.deliverer.close_window(partition, window)
                except Stopping:
                    return
                except Exception:  # the store failed: the window stays open, tried again
                    log.exception("%s: closing the window of %s failed", self.mapping, partition)
                finally:
                    self.batcher.done(lane)
                    self.lanes.forget_if_idle(lane)
                    self._wake.set()

    async def _give_back(self, records: Sequence[Record]) -> None:
        """Leave failed records to the source's own redelivery (queues). For an ordered
        partition everything queued after them goes back too, to keep the order."""
        later = self.batcher.drop(records[0].lane) if self.ordered else []
        for record in later:
            self._invalid.pop(record, None)
        await self.connector.abandon([*records, *later])
        self.tracker.forget([*records, *later])

    async def revoke(self, partitions: Collection[str]) -> None:
        """The source lost ``partitions``: see ``PartitionControl.revoke``."""
        names = set(partitions)
        self._revoking |= names
        if self.windows is not None:
            self.windows.forget(names)
        try:
            lost = [lane for p in names if (lane := self.lanes.by_partition.get(p))]
            for lane in lost:
                for record in self.batcher.drop(lane):
                    self._invalid.pop(record, None)
            busy = [task for task, lane in self._in_flight.items() if lane in lost]
            if busy:
                _, late = await asyncio.wait(busy, timeout=self.options.shutdown_timeout)
                await self._cancel(late, "revoked partitions")
            # what settled is committed before the source lets the partitions go
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.tracker.flush(lost), self.options.shutdown_timeout)
            for lane in lost:
                self.tracker.drop(lane)
        finally:
            if self.windows is not None:  # again: a batch that just ended may have kept one
                self.windows.forget(names)
            self._revoking -= names

    async def _cancel(self, tasks: Collection[asyncio.Task[None]], why: str) -> None:
        """Cancel delivery tasks and wait until they ended (their slots are free)."""
        if not tasks:
            return
        for task in tasks:
            task.cancel()
        _, stuck = await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT)
        for task in tasks:
            self._in_flight.pop(task, None)
        if stuck:
            log.error("%s: %d deliveries ignored cancellation (%s)", self.mapping, len(stuck), why)

    # ------------------------------------------------------------ stopping

    async def _drain(self, deadline: float) -> None:
        """Let batches in flight finish (bounded), then cancel the rest."""
        self.batcher.drop_all()
        if self._in_flight:
            _, late = await asyncio.wait(
                list(self._in_flight), timeout=max(0.0, deadline - time.monotonic())
            )
            if late:
                self._stopping.set()
                await self._cancel(late, "stopping")

    async def _flush_commits(self, deadline: float) -> None:
        """Let the commits under way finish (until ``deadline``, at least a second), then
        give up on the rest: what was settled and not committed comes again after a
        restart."""
        try:
            await asyncio.wait_for(self.tracker.flush(), max(1.0, deadline - time.monotonic()))
        except TimeoutError:
            log.warning(
                "%s: commits did not finish within %ss; their records come again",
                self.mapping,
                self.options.shutdown_timeout,
            )
        finally:
            await self.tracker.aclose()

    async def _release_unsettled(self, deadline: float) -> None:
        """Per-record sources: make what was read and not settled redeliverable now."""
        if not self.per_record:
            return
        records = self.tracker.unsettled()
        if not records:
            return
        try:
            await asyncio.wait_for(
                self.connector.release(records), max(1.0, deadline - time.monotonic())
            )
        except (Exception, TimeoutError) as exc:  # the source redelivers them anyway, later
            log.warning("releasing %d records of %s failed: %r", len(records), self.mapping, exc)
