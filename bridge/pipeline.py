"""One event source mapping at run time: read -> normalize -> filter -> batch ->
deliver -> settle -> commit.

Two tasks share the pipeline's state: the reader pulls record chunks from the
connector (only while fewer than ``max_in_flight_records`` / ``max_in_flight_bytes``
are read and not yet committed, so a slow function slows the source and memory stays
bounded), and the dispatcher cuts ready batches and starts one delivery task per batch,
at most ``maximum_concurrency`` at once (for ordered sources also one per partition).

Commits follow delivery instead of holding it up: for an ordered source a partition's
next batch is released as soon as its batch is delivered *and* the batch before that one
is committed. So per partition at most two batches are delivered but not yet committed
(one committing, one in flight): the records a crash can deliver twice. An unordered
source's delivery task ends once its own records are committed.

``run()`` returns when ``stop()`` was called: reading stops, batches in flight get
``shutdown_timeout`` seconds to finish, records never dispatched stay unsettled
(released to the source), and only settled records were ever committed. A source
failure drains the same way, then raises ``SourceError`` for the supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from bridge import telemetry
from bridge.acks import AckTracker
from bridge.batching import Batcher
from bridge.connector import Connector, PartitionControl, Record
from bridge.destinations import Destination
from bridge.errors import NormalizeError, SourceError, SourceUnavailable
from bridge.events import dumps, iso_timestamp, new_request_id
from bridge.filtering import FilterSet
from bridge.retry import Deliverer, RetryPolicy, Stopping
from bridge.targets.base import Target

__all__ = ["Pipeline", "PipelineOptions"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PipelineOptions:
    """A mapping's options with the source's defaults applied."""

    batch_size: int
    window: float
    maximum_concurrency: int
    policy: RetryPolicy
    shutdown_timeout: float = 30.0
    max_in_flight_records: int = 0  # 0: derived from batch size and concurrency
    max_in_flight_bytes: int = 64 * 1024 * 1024

    @property
    def record_limit(self) -> int:
        if self.max_in_flight_records:
            return self.max_in_flight_records
        return max(1000, 4 * self.batch_size * min(self.maximum_concurrency, 16))


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
    ) -> None:
        self.mapping = mapping
        self.connector = connector
        self.options = options
        self.filters = filters if filters else None
        self.ordered = connector.ordered  # may be decided per instance (SQS FIFO)
        self.tracker = AckTracker(connector, mapping=mapping, ordered=self.ordered)
        self.batcher = Batcher(
            batch_size=options.batch_size,
            window=options.window,
            max_bytes=options.policy.max_payload_bytes,
            ordered=self.ordered,
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
        )
        if partitions is not None:
            partitions.bind(self.revoke)
        self._wake = asyncio.Event()
        encode = getattr(connector, "encode", None)  # optional: the dict-free fast path
        self._encode: Callable[[Record], bytes] | None = (
            encode if self.filters is None and callable(encode) else None
        )
        self._in_flight: dict[asyncio.Task[None], str] = {}  # delivery task -> partition
        self._reading = True

    def stop(self) -> None:
        """Ask ``run()`` to drain and return."""
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Run until ``stop()``; raise SourceError when the source fails (after draining)."""
        try:
            await self.connector.open()
        except BaseException:
            await self.connector.aclose()
            raise
        dispatcher = asyncio.create_task(self._dispatch_loop(), name=f"{self.mapping}:dispatch")
        reader = asyncio.create_task(self._read_loop(), name=f"{self.mapping}:read")
        stop_wait = asyncio.create_task(self._stopping.wait())
        failure: BaseException | None = None
        try:
            await asyncio.wait({reader, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if reader.done() and not reader.cancelled():
                failure = reader.exception()
        finally:
            self._reading = False
            for task in (reader, stop_wait):
                task.cancel()
            await asyncio.gather(reader, stop_wait, return_exceptions=True)
            await self.tracker.interrupt()
            deadline = time.monotonic() + self.options.shutdown_timeout  # drain and commits
            await self._drain(deadline)
            dispatcher.cancel()
            await asyncio.gather(dispatcher, return_exceptions=True)
            await self._flush_commits(deadline)
            await self._release_unsettled()
            await self.connector.aclose()
            with contextlib.suppress(Exception):  # nothing is pending on it any more
                await self.deliverer.destination.aclose()
        if failure is not None:
            if isinstance(failure, SourceError):
                raise failure
            raise SourceUnavailable(f"source failed: {failure!r}") from failure

    # ------------------------------------------------------------ reading

    async def _read_loop(self) -> None:
        limit, byte_limit = self.options.record_limit, self.options.max_in_flight_bytes
        tracker = self.tracker
        async for chunk in self.connector.read():
            filtered, invalid = self._admit(chunk)
            self._wake.set()
            for record, reason in invalid:
                await self._dead_letter_invalid(record, reason)
            if filtered:  # settled together: one commit per chunk, not per record
                telemetry.emit(
                    telemetry.RECORD_FILTERED, mapping=self.mapping, records=len(filtered)
                )
                await tracker.settle(filtered)
            if tracker.tracked >= limit or tracker.tracked_bytes >= byte_limit:
                async with tracker.changed:
                    await tracker.changed.wait_for(
                        lambda: tracker.tracked < limit and tracker.tracked_bytes < byte_limit
                    )

    def _admit(self, chunk: Sequence[Record]) -> tuple[list[Record], list[tuple[Record, str]]]:
        """Encode, filter and queue a chunk of records, in order. Returns the records the
        filters dropped and the ones that could not be shaped (with the reason); both are
        tracked, neither is queued."""
        connector, filters = self.connector, self.filters
        track, add = self.tracker.track, self.batcher.add
        filtered: list[Record] = []
        invalid: list[tuple[Record, str]] = []
        encode = self._encode
        for record in chunk:
            try:
                if encode is not None:
                    record.encoded = encode(record)
                else:
                    event = connector.normalize(record)
                    record.encoded = dumps(event)
            except NormalizeError as exc:
                track(record)
                invalid.append((record, str(exc)))
                continue
            track(record)
            if filters is not None and not filters.matches(connector.filter_view(event)):
                filtered.append(record)
                continue
            add(record)
        return filtered, invalid

    async def _dead_letter_invalid(self, record: Record, reason: str) -> None:
        telemetry.emit(
            telemetry.RECORD_INVALID,
            mapping=self.mapping,
            partition=record.partition,
            error=reason,
            level=logging.WARNING,
        )
        document = {
            "version": "1.0",
            "timestamp": iso_timestamp(time.time()),
            "requestContext": {
                "requestId": new_request_id(),
                "functionArn": self.deliverer.function_arn,
                "condition": "RecordNotNormalized",
                "approximateInvokeCount": 0,
            },
            "errorMessage": reason,
            "source": {
                "mapping": self.mapping,
                "partition": record.partition,
                "position": str(record.position),
            },
        }
        try:
            await self.deliverer.write_failures([document])
        except Stopping:
            return
        await self.tracker.settle([record])

    # ------------------------------------------------------------ dispatching

    async def _dispatch_loop(self) -> None:
        batcher, concurrency = self.batcher, self.options.maximum_concurrency
        while True:
            self._wake.clear()
            free = concurrency - len(self._in_flight)
            if free > 0 and batcher.pending and not self._stopping.is_set():
                for batch in batcher.take_ready(free):
                    task = asyncio.create_task(self._deliver(batch))
                    self._in_flight[task] = batch[0].partition
                    task.add_done_callback(self._discard)
            deadline = batcher.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            if timeout is not None and len(self._in_flight) >= concurrency:
                timeout = None  # nothing can start before a delivery finishes
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _discard(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        # the wake-up in _deliver may have run the dispatcher before this callback, while
        # the task still held its slot: wake it again now that the slot is free
        self._wake.set()

    async def _give_back(self, records: Sequence[Record]) -> None:
        """Leave failed records to the source's own redelivery (queues). For an ordered
        partition everything read after them goes back too, to keep the order."""
        later = self.batcher.drop_partitions([records[0].partition]) if self.ordered else []
        await self.connector.abandon([*records, *later])
        await self.tracker.forget([*records, *later])

    async def revoke(self, partitions: Collection[str]) -> None:
        """The source lost ``partitions``: see ``PartitionControl.revoke``."""
        lost = set(partitions)
        await self.tracker.forget(self.batcher.drop_partitions(lost))
        busy = [task for task, partition in self._in_flight.items() if partition in lost]
        if busy:
            await asyncio.wait(busy, timeout=self.options.shutdown_timeout)
        await self.tracker.forget(
            [r for r in self.tracker.unsettled_records() if r.partition in lost]
        )
        # what settled is committed before the source lets the partitions go
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.tracker.flush(lost), self.options.shutdown_timeout)

    async def _deliver(self, batch: list[Record]) -> None:
        partition = batch[0].partition
        released = False
        try:
            await self.deliverer.deliver(batch)
            if self.ordered:
                await self.tracker.committed_before(partition, batch[0].seq)
                released = True
                self.batcher.done(partition)
                self._wake.set()
            else:
                await self.tracker.committed(batch)
        except Stopping:
            pass
        except Exception:
            log.exception("delivery of a batch of %s failed unexpectedly", self.mapping)
        finally:
            if not released:
                self.batcher.done(partition)
                self._wake.set()

    # ------------------------------------------------------------ stopping

    async def _drain(self, deadline: float) -> None:
        """Let batches in flight finish (bounded), then abandon the rest."""
        self.batcher.drop_pending()
        if self._in_flight:
            _, pending = await asyncio.wait(
                list(self._in_flight), timeout=max(0.0, deadline - time.monotonic())
            )
            if pending:
                self._stopping.set()
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)

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

    async def _release_unsettled(self) -> None:
        records = self.tracker.unsettled_records()
        if records:
            try:
                await self.connector.release(records)
            except Exception as exc:  # the source redelivers them anyway, later
                log.warning(
                    "releasing %d records of %s failed: %s", len(records), self.mapping, exc
                )
