"""The ``dynamodb_streams`` source: a DynamoDB table's stream, with the semantics of
Lambda's DynamoDB Streams event source mapping.

Guarantees:

- At-least-once, in order per shard. Each shard is a partition: its records are
  delivered in stream order, one batch at a time; shards are read and delivered in
  parallel. A failing batch blocks its shard (not the others) until it succeeds or is
  dead-lettered within ``maximum_retry_attempts`` / ``maximum_record_age_seconds``;
  meanwhile that shard is not read past its share of the read-ahead (``shards.py``).
- ``parallelization_factor`` N > 1: in order per item instead. Each shard's records are
  spread over N partitions by their ``Keys`` (``bridge/spread.py``), so up to N batches of a
  shard are in flight at once and a failing batch blocks only the keys of its
  sub-partition; the shard's checkpoint still only covers records settled with
  everything before them in the shard, so a restart redelivers, never skips.
- Checkpoints per shard: the sequence number of the last settled record of each shard
  (delivered, filtered out or dead-lettered), and which shards are finished. A restart
  resumes right after it (``AFTER_SEQUENCE_NUMBER``); a crash redelivers at most what
  was in flight. ``starting_position`` only applies the first time a mapping reads a
  stream (no checkpoint for it yet).
- Shard lineage: a child shard is read only once its parent is finished: read to its
  end and every record of it settled and committed. So the records of one item are
  delivered in order even across a shard split.
- Discovery: DescribeStream (all pages) at start and every
  ``shard_refresh_interval_seconds``, and at once when a shard ends. A shard is polled
  about every ``poll_interval_seconds`` while it has records and for 2 s after the last
  ones, then less often (doubling up to ``max_idle_poll_interval_seconds``) while idle.
- Iterators: an expired iterator is replaced by one ``AFTER_SEQUENCE_NUMBER`` of the last
  record read, so nothing is skipped or read twice. When the position was already
  trimmed (older than the stream's 24 hour retention) the shard restarts from its
  oldest record, and the gap is logged as a warning: those records are gone.
- Finished shards are remembered until DynamoDB trims them from the stream; then their
  checkpoints are dropped, so the checkpoint stays as small as the stream.
- Events are Lambda's DynamoDB records (``normalize.py``); ``filter_criteria`` match the
  record itself (``eventName``, ``dynamodb.NewImage``...), and ``batchItemFailures`` name
  records by ``dynamodb.SequenceNumber``. Dead-lettered batches are described by
  ``DDBStreamBatchInfo`` (shard, first and last sequence number), as on AWS.
- Several bridges on one mapping (a shared state store, ``state: {type: dynamodb}``):
  each reads and commits only the shards whose lease it holds (``sharing.py``); a shard
  whose lease is lost (taken over) is neither read nor committed any more. A bridge
  that dies loses its leases after ``lease_duration_seconds`` and the others go on from
  its shards' checkpoints: what it delivered after them comes again. Lineage holds
  across bridges (a child is taken once its parent is finished, by whichever bridge).
- ``LATEST`` starts open shards at their current end. Until a record of such a shard was
  settled there is no position to store; a restart in that window starts that shard at
  its end again (the Kinesis Client Library behaves the same way).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Coroutine, Hashable, Sequence
from typing import Any, ClassVar

from bridge.connector import BaseConnector, ConnectorContext, FailureContext, Feed, Record
from bridge.errors import ConfigError
from bridge.events import stream_failure_base
from bridge.spread import Spread
from connectors.aws import create_client, translate_errors
from connectors.dynamodb_streams.config import DynamoDBStreamsSource
from connectors.dynamodb_streams.normalize import batch_info, sample_event, stream_record
from connectors.dynamodb_streams.shards import GONE, SHARD_PREFIX, Shard, ShardReader, error_code
from connectors.dynamodb_streams.sharing import ShardLeases

__all__ = ["DynamoDBStreamsConnector"]

log = logging.getLogger(__name__)

_STREAM_KEY = "stream"


class DynamoDBStreamsConnector(BaseConnector):
    type: ClassVar[str] = "dynamodb_streams"
    config_model: ClassVar[builtins.type[DynamoDBStreamsSource]] = DynamoDBStreamsSource
    ordered: ClassVar[bool] = True
    pausable: ClassVar[bool] = True  # shard readers ask context.partitions.room() first
    parallelizable: ClassVar[bool] = True  # parallelization_factor: bridge/spread.py
    group_members: ClassVar[bool] = True  # parallelism: members share the shards by lease
    windowable: ClassVar[bool] = True  # tumbling_window_in_seconds (bridge/windows.py)
    defaults: ClassVar[dict[str, Any]] = {
        "batch_size": 100,
        "maximum_batching_window_seconds": 0.0,
        "maximum_retry_attempts": -1,
        "maximum_record_age_seconds": -1,
        # every shard has its own batches in flight (parallelization_factor of them), as
        # on AWS
        "maximum_concurrency": 1000,
    }
    sample_event = staticmethod(sample_event)

    @classmethod
    def check_mapping(cls, options: dict[str, Any]) -> list[tuple[str, str]]:
        """What AWS rejects for a DynamoDB Streams event source mapping."""
        problems: list[tuple[str, str]] = []
        if options.get("maximum_concurrency") is not None:
            problems.append(
                (
                    "maximum_concurrency",
                    "not supported for DynamoDB Streams (each shard has one batch in flight)",
                )
            )
        age = options.get("maximum_record_age_seconds")
        if isinstance(age, int) and age != -1 and not 60 <= age <= 604800:
            problems.append(
                (
                    "maximum_record_age_seconds",
                    "must be -1 (no limit) or between 60 and 604800 for DynamoDB Streams",
                )
            )
        return problems

    def __init__(self, config: DynamoDBStreamsSource, context: ConnectorContext) -> None:
        self.config = config
        self.context = context
        self.region = config.region or context.region
        self.stream_arn = config.stream_arn or ""
        self._stack = contextlib.AsyncExitStack()
        self._ddb: Any = None
        self._streams: Any = None
        self._reader: ShardReader | None = None
        self._shards: dict[str, Shard] = {}
        self._saved: dict[str, dict[str, Any]] = {}  # shard id -> checkpoint, at open()
        self._first_start = False
        self._queue: Feed[list[Record]] = Feed(maxsize=8)
        self._tasks: set[asyncio.Task[None]] = set()
        self._failed: asyncio.Future[None] | None = None
        self._refresh_now = asyncio.Event()
        factor = context.parallelization_factor
        self._spread = Spread(factor, context.partitions) if factor > 1 else None
        self._sharing: ShardLeases | None = None  # several bridges share the mapping
        if context.leases is not None:
            self._sharing = ShardLeases(
                context.leases,
                shards=self._shards,
                checkpoints=context.checkpoints,
                what=self._what,
                start=self._start,
                stop=self._stop_reading,
                spawn=self._spawn,
            )

    @property
    def _what(self) -> str:
        if self.config.table_name:
            return f"DynamoDB stream of table {self.config.table_name}"
        return f"DynamoDB stream {self.stream_arn}"

    # ------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        self._ddb = await self._stack.enter_async_context(
            create_client("dynamodb", self.config, self.context.region)
        )
        self._streams = await self._stack.enter_async_context(
            create_client("dynamodbstreams", self.config, self.context.region)
        )
        if self.config.table_name:
            self.stream_arn = await self._table_stream(self.config.table_name)
        self._reader = ShardReader(
            self._streams,
            stream_arn=self.stream_arn,
            what=self._what,
            options=self.config,
            queue=self._queue,
            control=self.context.partitions,
            spread=self._spread,
        )
        await self._load_checkpoints()
        await self._refresh()
        if self._first_start:
            put = {_STREAM_KEY: json.dumps({"arn": self.stream_arn})}
            put.update({s.key: s.state() for s in self._shards.values() if s.latest})
            put.update(
                {s.key: s.state(done=True) for s in self._shards.values() if s.finished.is_set()}
            )
            await self.context.checkpoints.write(put)
            self._first_start = False

    async def _table_stream(self, table: str) -> str:
        with translate_errors(f"DynamoDB table {table}"):
            description = (await self._ddb.describe_table(TableName=table))["Table"]
        spec = description.get("StreamSpecification") or {}
        arn = description.get("LatestStreamArn")
        if not spec.get("StreamEnabled") or not arn:
            raise ConfigError(
                f"DynamoDB table {table} has no stream enabled; enable StreamSpecification "
                "(StreamEnabled: true, StreamViewType: NEW_AND_OLD_IMAGES, NEW_IMAGE, "
                "OLD_IMAGE or KEYS_ONLY) on the table, or give stream_arn"
            )
        return str(arn)

    async def _load_checkpoints(self) -> None:
        saved = await self.context.checkpoints.items()
        stream = json.loads(saved[_STREAM_KEY])["arn"] if _STREAM_KEY in saved else None
        shard_keys = [k for k in saved if k.startswith(SHARD_PREFIX)]
        if stream != self.stream_arn:
            if stream is not None:  # the table's stream was disabled and enabled again
                log.warning(
                    "%s: checkpoints are of stream %s, now %s: starting at %s",
                    self._what,
                    stream,
                    self.stream_arn,
                    self.config.starting_position,
                )
                await self.context.checkpoints.write({}, shard_keys)
            self._first_start = True
            return
        self._saved = {k.removeprefix(SHARD_PREFIX): json.loads(saved[k]) for k in shard_keys}

    async def read(self) -> AsyncIterator[Sequence[Record]]:
        failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._failed = failed
        self._start_all()
        self._spawn(self._discover(), "discover")
        if self._sharing is not None:
            self._spawn(self._sharing.run(), "leases")
        async for chunk in self._queue.items([failed]):  # raises the failure of a reader
            yield chunk

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        if self._failed is not None and not self._failed.done():
            self._failed.cancel()
        if self._sharing is not None:  # the engine committed what settled: give them back
            await self._sharing.release_all()
        await self._stack.aclose()

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(work, name=f"{self.context.mapping}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._reap)
        return task

    def _reap(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or self._failed is None or self._failed.done():
            return
        exc = task.exception()
        if exc is not None:
            self._failed.set_exception(exc)

    # ------------------------------------------------------------ shards

    async def _discover(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._refresh_now.wait(), self.config.shard_refresh_interval_seconds
                )
            self._refresh_now.clear()
            await self._refresh()
            self._start_all()

    async def _describe(self) -> list[dict[str, Any]]:
        shards: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"StreamArn": self.stream_arn, "Limit": 100}
        while True:
            assert self._reader is not None
            response = await self._reader.call(self._streams.describe_stream, **kwargs)
            description = response["StreamDescription"]
            shards.extend(description.get("Shards", []))
            last = description.get("LastEvaluatedShardId")
            if not last:
                return shards
            kwargs["ExclusiveStartShardId"] = last

    async def _refresh(self) -> None:
        """Learn new shards, and forget finished shards DynamoDB no longer keeps."""
        described = await self._describe()
        present = {s["ShardId"] for s in described}
        for found in described:
            shard_id = found["ShardId"]
            if shard_id in self._shards:
                continue
            shard = Shard(shard_id, found.get("ParentShardId"))
            saved = self._saved.pop(shard_id, None)
            if saved is not None:
                shard.checkpoint = saved.get("seq")
                shard.latest = bool(saved.get("latest"))
                if saved.get("done"):
                    shard.ended = True
                    shard.finished.set()
            elif self._first_start and self.config.starting_position == "LATEST":
                if "EndingSequenceNumber" in found.get("SequenceNumberRange", {}):
                    shard.ended = True  # closed before we started: nothing of it is wanted
                    shard.finished.set()
                else:
                    shard.latest = True
            self._shards[shard_id] = shard
        gone = [
            shard
            for shard in self._shards.values()
            if shard.shard_id not in present and shard.finished.is_set()
        ]
        stale = [SHARD_PREFIX + shard_id for shard_id in self._saved]
        for shard_id, saved in self._saved.items():
            if not saved.get("done"):
                log.warning(
                    "%s: shard %s was trimmed from the stream before it was read to its "
                    "end; records after %s are lost",
                    self._what,
                    shard_id,
                    saved.get("seq") or "its start",
                )
        if gone or stale:
            await self.context.checkpoints.write({}, [shard.key for shard in gone] + stale)
            if self._sharing is not None:
                await self._sharing.drop([s.shard_id for s in gone] + list(self._saved))
            for shard in gone:
                del self._shards[shard.shard_id]
                if self._spread is not None:
                    self._spread.forget(shard.shard_id)
            self._saved.clear()

    def _start_all(self) -> None:
        """Read every shard (not finished) of the stream; with leases, the rounds of
        ``ShardLeases`` start the shards held instead."""
        if self._sharing is None:
            for shard in list(self._shards.values()):
                self._start(shard)

    def _start(self, shard: Shard) -> None:
        if shard.task is None and not shard.finished.is_set():
            self.context.partitions.reading(self._partitions(shard.shard_id))
            shard.task = self._spawn(self._read_shard(shard), shard.shard_id)

    async def _read_shard(self, shard: Shard) -> None:
        parent = self._shards.get(shard.parent_id) if shard.parent_id else None
        if parent is not None and parent is not shard:
            await parent.finished.wait()
        try:
            assert self._reader is not None
            await self._reader.read(shard)
        except ConfigError as exc:
            if error_code(exc) != GONE:
                raise
            log.warning(
                "%s: shard %s no longer exists (trimmed); records after %s are lost",
                self._what,
                shard.shard_id,
                shard.last_read or shard.checkpoint or "its start",
            )
            shard.last_read = shard.checkpoint = None
        shard.ended = True
        self.context.partitions.finished(self._partitions(shard.shard_id))
        await self._maybe_finish(shard)
        self._refresh_now.set()  # a closed shard has children to pick up

    def _partitions(self, shard_id: str) -> list[str]:
        """The engine's partitions of a shard: the shard, or its sub-partitions."""
        return self._spread.partitions(shard_id) if self._spread else [shard_id]

    def _shard_id(self, partition: str) -> str:
        return self._spread.shard_of(partition) if self._spread else partition

    async def _stop_reading(self, shard: Shard) -> None:
        """Its lease was lost: stop reading the shard, drop what of it was read and not
        yet delivered (here and in the engine), and let its batches in flight end; their
        commits are refused (``commit`` asks the lease). Its state here starts afresh."""
        task, shard.task = shard.task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        partitions = self._partitions(shard.shard_id)
        self._queue.drop(lambda chunk: bool(chunk) and chunk[0].partition in partitions)
        await self.context.partitions.revoke(partitions)
        if self._spread is not None:
            self._spread.forget(shard.shard_id)
        shard.last_read = None
        shard.ended = False

    async def _maybe_finish(self, shard: Shard) -> None:
        """Mark a shard finished (durably, then for its children) once it ended and all
        that was read of it is committed."""
        if shard.finished.is_set() or not shard.ended:
            return
        if shard.last_read is not None and shard.last_read != shard.checkpoint:
            return
        if self._sharing is not None and not self._sharing.holds(shard.shard_id):
            return  # its new owner finishes it
        await self.context.checkpoints.write({shard.key: shard.state(done=True)})
        shard.finished.set()
        if self._sharing is not None:
            await self._sharing.finished(shard)

    # ------------------------------------------------------------ shaping

    def normalize(self, record: Record) -> dict[str, Any]:
        return stream_record(record.data, stream_arn=self.stream_arn, region=self.region)

    def item_identifier(self, record: Record) -> Hashable:
        return str(record.position)  # the SequenceNumber, as in batchItemFailures

    def failure_record(self, records: Sequence[Record], ctx: FailureContext) -> dict[str, Any]:
        doc = stream_failure_base(ctx, time.time())
        doc["DDBStreamBatchInfo"] = batch_info(
            [r.data for r in records],
            shard_id=self._shard_id(records[0].partition),
            stream_arn=self.stream_arn,
        )
        return doc

    # ------------------------------------------------------------ settling

    async def commit(self, records: Sequence[Record]) -> None:
        """Store the last sequence number of a contiguous settled run of one shard."""
        if not records:
            return
        if self._sharing is not None and not self._sharing.holds(
            self._shard_id(records[0].partition)
        ):
            return  # the lease was lost: the shard's new owner commits it now
        if self._spread is not None:
            await self._commit_spread(records[-1], self._spread)
            return
        shard = self._shards.get(records[0].partition)
        seq = str(records[-1].position)
        if shard is None:  # not read in this session (cannot happen): store it anyway
            state = json.dumps({"seq": seq})
            await self.context.checkpoints.write({SHARD_PREFIX + records[0].partition: state})
            return
        await self.context.checkpoints.write({shard.key: json.dumps({"seq": seq})})
        shard.checkpoint = seq  # only once durable: children wait for it
        await self._maybe_finish(shard)

    async def _commit_spread(self, record: Record, spread: Spread) -> None:
        """``record``'s sub-partition is settled up to it: store the shard's checkpoint if
        that moved the shard's settled prefix (``bridge/spread.py``)."""
        shard_id = spread.shard_of(record.partition)
        spread.settle(record)
        shard = self._shards.get(shard_id)
        if shard is None:  # forgotten: finished, so nothing of it was left to settle
            return
        async with spread.lock(shard_id):
            seq = spread.covered(shard_id)
            if seq is None or (shard.checkpoint is not None and int(seq) <= int(shard.checkpoint)):
                return
            await self.context.checkpoints.write({shard.key: json.dumps({"seq": seq})})
            shard.checkpoint = seq  # only once durable: children wait for it
            await self._maybe_finish(shard)
