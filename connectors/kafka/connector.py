"""The ``kafka`` source: topics of a self-managed Apache Kafka cluster, with the semantics
of Lambda's self-managed Kafka event source mapping.

Guarantees:

- At-least-once. Offsets are committed to the consumer group (manual commits, never
  auto-commit) only for settled records (delivered, filtered out or dead-lettered), per
  partition, and never ahead of an unsettled record: the committed offset is always
  ``last contiguous settled offset + 1``. A restart (or a new owner of the partition)
  resumes exactly after the last committed offset; what was in flight comes again, so
  duplicates are bounded by two batches per partition (the engine commits behind
  delivery: one batch in flight, the one before it committing).
- Order: records of one partition are delivered in offset order, one batch in flight
  per partition (the engine's ordered mode). With ``parallelization_factor`` N > 1 (an
  extension: AWS takes it for streams, not for Kafka) a partition's records are spread
  over N sub-partitions by record key (``bridge/spread.py``), so up to N batches of a
  partition are in flight, in order per key; records without a key stay in order among
  themselves; the committed offset still never passes an unsettled record of any key.
  Partitions flow independently, so a
  failing record holds up only its own partition: a partition that holds its share of
  the read-ahead is not taken from (so aiokafka fetches nothing more for it), the others
  are read on, and polling never stops, so the member stays in its group.
- Consumer groups: several bridge processes with the same ``consumer_group_id`` share the
  partitions. On a rebalance the revoked partitions are drained first (batches in flight
  finish and what is settled is committed) before Kafka may give them to another member;
  records of a partition that is no longer ours are dropped, never committed. A commit
  that arrives for a partition we lost is skipped (the new owner redelivers); a commit
  the group refused (``CommitFailedError``, a rebalance under way) is retried, never
  taken for done.
- Starting position: applies only to partitions without a committed offset in the group.
  For ``LATEST`` and ``AT_TIMESTAMP`` the position found when the group first gets the
  partition is committed at once, so a crash before the first delivery does not move it.
- Backpressure: each fetch round takes from every partition at most what the engine
  has room for (``context.partitions.room``), a share of the round each (so a backlog
  keeps every partition busy); aiokafka holds at most one fetch per partition (up to
  ``max_partition_fetch_bytes``, 1 MiB) that the engine did not take yet. Heartbeats run
  in aiokafka's background task, and polling goes on even while every partition holds
  its share (after a minute of that, with all paused, so a poll takes nothing): a slow
  or failing function never makes the member leave its group (``max_poll_interval_ms``).
- Idle cost: after a second without records the consumer asks its broker less often
  (``connectors.kafka.pacing``: each Fetch held up to the heartbeat interval, not 500 ms);
  the broker answers a held Fetch as soon as a record arrives, so that one comes at once.

- Static membership (KIP-345, ``group_instance_id``): the member has an id stable for
  this host, state_dir, mapping, group and topics, so a bridge restarted after a crash
  (``kill -9``) is the same member and gets its partitions back at once, where a new
  member would wait for the dead one's session to expire (``session_timeout_seconds``)
  before the group could rebalance. A graceful stop still leaves the group, so the other
  members take over at once, as before. A crashed member that does not come back holds
  its partitions for the session timeout, with or without static membership.

Errors: an unreachable cluster, a failed SASL/TLS handshake or a topic that does not
exist (yet) raise ``SourceUnavailable`` naming the bootstrap servers; the supervisor
retries with backoff, so the mapping starts once the broker or topic is there. Unreadable
TLS files raise ``ConfigError``. A cluster lost while running raises nothing (aiokafka
retries on its own and delivery resumes where it stopped): the source logs one
``source.unavailable`` line when it is lost and one ``source.recovered`` line when it is
back (``connectors.kafka.health``), and aiokafka's own repeated lines are thinned out to
one per template every 30 s (``bridge.log_throttle``).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator, Collection, Hashable, Iterable, Sequence
from itertools import repeat
from typing import Any, ClassVar, Literal

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from bridge.connector import BaseConnector, ConnectorContext, FailureContext, Record
from bridge.errors import CheckpointError, SourceUnavailable
from bridge.events import iso_timestamp, stream_failure_base
from bridge.log_throttle import throttle_repeats
from bridge.spread import Spread
from connectors.kafka.client import client_options, translate_errors
from connectors.kafka.config import KafkaSource
from connectors.kafka.destination import FailedRecord, KafkaFailureDocument
from connectors.kafka.health import BrokerWatch
from connectors.kafka.normalize import (
    RecordEncoder,
    envelope,
    filter_view,
    kafka_record,
    partition_name,
    sample_event,
)
from connectors.kafka.pacing import BUSY_WAIT_MS, FetchPace, idle_wait_ms, wake_fetcher

__all__ = ["KafkaConnector"]

log = logging.getLogger(__name__)

MAX_POLL_RECORDS = 500
MAX_POLL_INTERVAL_MS = 600_000
KEEPALIVE_AFTER = 60.0  # seconds without room anywhere before polling with all paused
HELD_BACK_POLL_MS = 10  # how often to look again while partitions are held back
IDLE_POLL_MS = 30_000  # how long a wait for records lasts while none come (see _fetch_round)
INSTANCE_KEY = "kafka.instance"  # checkpoint holding this state_dir's random member token


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, connector: KafkaConnector) -> None:
        self._connector = connector

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        await self._connector.partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        await self._connector.partitions_assigned(assigned)


class KafkaConnector(BaseConnector):
    type: ClassVar[str] = "kafka"
    config_model: ClassVar[builtins.type[KafkaSource]] = KafkaSource
    ordered: ClassVar[bool] = True
    redelivery: ClassVar[Literal["bridge", "source"]] = "bridge"
    pausable: ClassVar[bool] = True
    windowable: ClassVar[bool] = True  # tumbling_window_in_seconds (bridge/windows.py)
    parallelizable: ClassVar[bool] = True  # parallelization_factor: bridge/spread.py
    group_members: ClassVar[bool] = True  # parallelism: members of the consumer group
    defaults: ClassVar[dict[str, Any]] = {
        "batch_size": 100,
        "maximum_batching_window_seconds": 0.5,
        "maximum_retry_attempts": -1,
        # "When you configure both infinite retries and an on-failure destination, Lambda
        # automatically applies a maximum of 10 retry attempts" (Kafka retry configurations)
        "maximum_retry_attempts_with_on_failure": 10,
        "maximum_record_age_seconds": -1,
        # Lambda runs up to one batch per partition at a time; the engine keeps that
        # (ordered) and this only caps the partitions served at once by one process
        "maximum_concurrency": 100,
    }
    sample_event = staticmethod(sample_event)

    @classmethod
    def check_mapping(cls, options: dict[str, Any]) -> list[tuple[str, str]]:
        """What AWS rejects for a self-managed Kafka event source mapping."""
        problems: list[tuple[str, str]] = []
        if "maximum_concurrency" in options:
            problems.append(
                (
                    "maximum_concurrency",
                    "not supported for Kafka: one batch per partition is in flight at a time",
                )
            )
        age = options.get("maximum_record_age_seconds")
        if isinstance(age, int) and not isinstance(age, bool) and 0 < age < 60:
            problems.append(
                ("maximum_record_age_seconds", "must be -1 or between 60 and 604800 for Kafka")
            )
        failure = options.get("on_failure")
        uri = failure.get("destination") if isinstance(failure, dict) else failure
        source = options.get("source") or {}
        topics = source.get("topics") if isinstance(source, dict) else None
        topics = [topics] if isinstance(topics, str) else topics or []
        if (
            isinstance(uri, str)
            and uri.startswith("kafka://")
            and uri.removeprefix("kafka://") in topics
        ):
            problems.append(
                ("on_failure", "the on-failure topic cannot be one of the source topics")
            )
        return problems

    def __init__(self, config: KafkaSource, context: ConnectorContext) -> None:
        self.config = config
        self.context = context
        self.bootstrap_servers = ",".join(config.bootstrap_servers)
        self.group_id = config.group_id(context.mapping)
        self._consumer: AIOKafkaConsumer | None = None
        self._timeout = config.request_timeout_seconds
        self._what = f"Kafka source {self.context.mapping!r} (topics {', '.join(config.topics)})"
        self._encoder = RecordEncoder()
        self._to_commit: dict[TopicPartition, int] = {}  # for the next OffsetCommit
        self._commit_waiters: list[asyncio.Future[None]] = []
        self._committer: asyncio.Task[None] | None = None
        self._rotation = 0  # which partition a fetch round starts with
        self._all_paused: list[TopicPartition] = []  # paused while none had room
        self._stalled_since: float | None = None  # since when no partition had room
        self._watch = BrokerWatch(context.mapping)
        self._watcher: asyncio.Task[None] | None = None
        self._pace: FetchPace | None = None  # set once the consumer is started
        # for offset_lag(): the next offset to deliver as far as the group knows it (the
        # last commit, else the first offset read since the partition was assigned)
        self._base: dict[TopicPartition, int] = {}
        factor = context.parallelization_factor
        # parallelization_factor: each partition's records over sub-partitions by key
        self._spread = Spread(factor, context.partitions) if factor > 1 else None

    # ------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Connect, check the topics exist and join the consumer group."""
        options = client_options(self.config)
        reset = "earliest" if self.config.starting_position == "TRIM_HORIZON" else "latest"
        session_ms = int(self.config.session_timeout_seconds * 1000)
        heartbeat_ms = min(3000, session_ms // 3)
        idle_ms = idle_wait_ms(heartbeat_ms, options["request_timeout_ms"])
        throttle_repeats("aiokafka")
        consumer = AIOKafkaConsumer(
            **options,
            group_id=self.group_id,
            group_instance_id=await self.instance_id(),
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=heartbeat_ms,
            enable_auto_commit=False,
            auto_offset_reset=reset,
            max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
            metadata_max_age_ms=30_000,
            # an idle consumer's pace (connectors/kafka/pacing.py)
            fetch_max_wait_ms=BUSY_WAIT_MS,
            consumer_timeout_ms=idle_ms,
        )
        self._consumer = consumer
        with translate_errors(self._what, self.bootstrap_servers):
            await asyncio.wait_for(consumer.start(), self._timeout)
            known = await asyncio.wait_for(consumer.topics(), self._timeout)
        self._pace = FetchPace(consumer, idle_ms)
        missing = [t for t in self.config.topics if t not in known]
        if missing:
            raise SourceUnavailable(
                f"{self._what}: topic(s) {', '.join(missing)} do not exist on Kafka at "
                f"{self.bootstrap_servers} (retrying until they do)"
            )
        consumer.subscribe(list(self.config.topics), listener=_Rebalance(self))
        self._watcher = asyncio.create_task(self._watch.run(consumer, self.bootstrap_servers))

    async def instance_id(self) -> str | None:
        """The consumer's ``group_instance_id``: None for dynamic membership, the configured
        string, or (by default) ``trigger-bridge-<hash>`` of this host's name, a random
        token kept in the mapping's checkpoints (so: this state_dir), the mapping, the
        group and the topics. A bridge restarted on the same host and state_dir is the same
        member; two bridges never share an id (one state_dir serves one bridge at a time,
        and a state_dir copied to another host gets another id there). Another group or
        other topics get another id too: a static member that rejoins with other topics
        would keep its old assignment, without a rebalance for the new topics."""
        setting = self.config.group_instance_id
        member = self.context.member  # parallelism: each member is a member of its own
        if isinstance(setting, str):
            return f"{setting}-{member}" if member else setting
        if not setting:
            return None
        token = await self.context.checkpoints.get(INSTANCE_KEY)
        if token is None:
            token = uuid.uuid4().hex
            await self.context.checkpoints.write({INSTANCE_KEY: token})
        seed = [socket.gethostname(), token, self.context.mapping, self.group_id]
        seed += [f"member {member}"] if member else []
        digest = hashlib.sha256("\n".join(seed + sorted(self.config.topics)).encode())
        return f"trigger-bridge-{digest.hexdigest()[:16]}"

    async def read(self) -> AsyncIterator[Sequence[Record]]:
        consumer = self._consumer
        assert consumer is not None, "open() first"
        while True:
            with translate_errors(self._what, self.bootstrap_servers):
                fetched = await self._fetch_round(consumer)
            owned = consumer.assignment()
            now = time.time()
            chunk: list[Record] = []
            add = chunk.append
            for tp, messages in fetched.items():
                if tp not in owned:  # revoked while the fetch was on its way
                    continue
                name = partition_name(tp.topic, tp.partition)
                if messages and tp not in self._base:
                    self._base[tp] = messages[0].offset
                spread = self._spread
                parts: Iterable[str] = (
                    spread.hand(name, [(m.offset, m.key) for m in messages])
                    if spread is not None
                    else repeat(name)
                )
                for m, part in zip(messages, parts, strict=False):  # parts: maybe endless
                    stamp = m.timestamp  # epoch ms; -1 (or None) when the record has none
                    add(Record(part, m.offset, m, stamp / 1000 if stamp and stamp > 0 else now))
            if chunk:
                yield chunk

    async def _fetch_round(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, list[Any]]:
        """Up to MAX_POLL_RECORDS records, spread over every partition that has records
        fetched (aiokafka's ``getmany`` drains one partition's buffer before the next, which
        left all but two partitions idle on a backlog), and from each partition no more than
        the engine has room for. A partition without room is simply not taken from:
        aiokafka keeps its one fetched buffer and fetches nothing more for it until it is
        taken, so it is not read (``consumer.pause`` would throw that buffer away and fetch
        it again on resume). Waits up to a second when nothing is buffered; when a second
        brought nothing, the consumer goes to its idle pace (``connectors.kafka.pacing``)
        and waits longer, until records come."""
        room = self._spread.room if self._spread is not None else self.context.partitions.room
        rooms = {tp: room(partition_name(tp.topic, tp.partition)) for tp in consumer.assignment()}
        open_ = sorted(tp for tp, n in rooms.items() if n > 0)
        if not open_:
            return await self._idle(consumer, rooms)
        self._stalled_since = None
        if self._all_paused:
            consumer.resume(*[tp for tp in self._all_paused if tp in rooms])
            self._all_paused = []
        fetched: dict[TopicPartition, list[Any]] = {}
        if len(open_) > 1:
            share = max(MAX_POLL_RECORDS // len(open_), 10)
            start = self._rotation % len(open_)
            self._rotation += 1
            for tp in open_[start:] + open_[:start]:
                got = await consumer.getmany(tp, timeout_ms=0, max_records=min(share, rooms[tp]))
                fetched.update(got)
            if fetched:
                self._paced(idle=False)
                return fetched
        limit = min(MAX_POLL_RECORDS, max(rooms[tp] for tp in open_))
        if len(open_) < len(rooms):
            # others are held back: wait briefly, since they may get room any moment and a
            # long wait here would leave them idle
            held: dict[TopicPartition, list[Any]] = await consumer.getmany(
                *open_, timeout_ms=HELD_BACK_POLL_MS, max_records=limit
            )
            if held:
                self._paced(idle=False)
            return held
        # every partition has room: wait for any of them, those assigned meanwhile too (so
        # a rebalance needs no look again); records of a new one come at most ``limit``
        idle = self._pace is not None and self._pace.idle
        waited: dict[TopicPartition, list[Any]] = await consumer.getmany(
            timeout_ms=IDLE_POLL_MS if idle else 1000, max_records=limit
        )
        self._paced(idle=not waited)
        return waited

    def _paced(self, *, idle: bool) -> None:
        if self._pace is not None:
            self._pace.set(idle=idle)

    async def _idle(
        self, consumer: AIOKafkaConsumer, rooms: dict[TopicPartition, int]
    ) -> dict[TopicPartition, list[Any]]:
        """No partition has room (every one holds its share: a slow or failing function).
        Wait a moment and look again. Should that last (``KEEPALIVE_AFTER``), keep
        polling so the member stays in its group past ``max_poll_interval_ms``, with every
        partition paused so that a poll takes nothing; they are resumed once one has room.
        (Pausing throws aiokafka's fetched buffers away, so it is kept for long stalls.)"""
        if not rooms:
            # nothing assigned (a rebalance, or more members than partitions): poll as
            # before, which takes nothing but keeps (or gets back) the membership
            got: dict[TopicPartition, list[Any]] = await consumer.getmany(
                timeout_ms=1000, max_records=MAX_POLL_RECORDS
            )
            return got
        now = time.monotonic()
        if self._stalled_since is None:
            self._stalled_since = now
        if now - self._stalled_since < KEEPALIVE_AFTER:
            await asyncio.sleep(HELD_BACK_POLL_MS / 1000)
            return {}
        self._all_paused = list(rooms)
        consumer.pause(*self._all_paused)  # idempotent; covers partitions assigned since
        # nothing comes back while all are paused; should anything come, it is handed on
        # (a little over the share), never dropped: dropping would skip those records
        late: dict[TopicPartition, list[Any]] = await consumer.getmany(
            timeout_ms=1000, max_records=MAX_POLL_RECORDS
        )
        return late

    async def aclose(self) -> None:
        committer = self._committer
        if committer is not None:  # the engine waited for its commits: nothing is lost
            committer.cancel()
            await asyncio.gather(committer, return_exceptions=True)
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            # a graceful stop leaves the group, static member or not, so the other members
            # take its partitions over at once (aiokafka sends LeaveGroup only for dynamic
            # members; a static one would hold them for the session timeout)
            with contextlib.suppress(AttributeError):
                consumer._coordinator._group_instance_id = None
            try:
                await asyncio.wait_for(consumer.stop(), self._timeout)
            except (KafkaError, OSError, TimeoutError) as exc:
                log.warning("%s: closing the consumer: %s", self._what, exc)

    # ------------------------------------------------------------ rebalancing

    async def partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        """Drain what is in flight for the lost partitions and commit what settled."""
        names = [partition_name(tp.topic, tp.partition) for tp in revoked]
        for tp in revoked:
            self._base.pop(tp, None)
        if names:
            log.info("%s: partitions revoked: %s", self._what, ", ".join(sorted(names)))
            await self.context.partitions.revoke(self._engine_partitions(names))
        if self._spread is not None:
            for name in names:  # drained: read again from the group's commit if it comes back
                self._spread.forget(name)

    async def partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        """Read the new partitions (they share the engine's read-ahead from now on), and
        fix the starting position of those the group never committed."""
        names = [partition_name(tp.topic, tp.partition) for tp in assigned]
        if names:
            log.info("%s: partitions assigned: %s", self._what, ", ".join(sorted(names)))
        if self._spread is not None:
            for name in names:  # a clean state: it is read from the group's last commit
                self._spread.forget(name)
        self.context.partitions.reading(self._engine_partitions(names))
        consumer = self._consumer
        if consumer is None or not assigned or self.config.starting_position == "TRIM_HORIZON":
            return
        try:
            fresh = [tp for tp in assigned if await consumer.committed(tp) is None]
            if not fresh:
                return
            ends = await consumer.end_offsets(fresh)
            start = dict(ends)
            timestamp = self.config.timestamp_ms
            if timestamp is not None:
                found = await consumer.offsets_for_times({tp: timestamp for tp in fresh})
                for tp, hit in found.items():
                    if hit is not None:
                        start[tp] = hit.offset
            for tp, offset in start.items():
                consumer.seek(tp, offset)
            wake_fetcher(consumer)
            await consumer.commit(dict(start))
        except (KafkaError, OSError) as exc:
            log.warning("%s: could not fix the starting position: %s", self._what, exc)

    def _engine_partitions(self, names: list[str]) -> list[str]:
        """The engine's partitions of Kafka partitions: themselves, or their sub-partitions."""
        spread = self._spread
        return [p for n in names for p in spread.partitions(n)] if spread else names

    def _kafka_partition(self, record: Record) -> str:
        """``"<topic>-<partition>"`` of a record, whichever engine partition it went to."""
        spread = self._spread
        return spread.shard_of(record.partition) if spread is not None else record.partition

    # ------------------------------------------------------------ shaping

    def normalize(self, record: Record) -> dict[str, Any]:
        return kafka_record(record.data)

    def encode(self, record: Record) -> bytes:
        return self._encoder(record.data)

    def filter_view(self, event: dict[str, Any]) -> dict[str, Any]:
        return filter_view(event)

    def encode_event(self, records: Sequence[Record]) -> bytes:
        if not records:  # a tumbling window's final invocation
            return envelope(self.bootstrap_servers, [])
        first = records[0].partition
        if all(r.partition == first for r in records):  # the engine batches per partition
            name = self._kafka_partition(records[0])
            return envelope(self.bootstrap_servers, [(name, [r.encoded for r in records])])
        groups: dict[str, list[bytes]] = {}
        for r in records:
            groups.setdefault(self._kafka_partition(r), []).append(r.encoded)
        return envelope(self.bootstrap_servers, groups.items())

    def item_identifier(self, record: Record) -> Hashable:
        return (self._kafka_partition(record), int(record.position))

    def identifier_key(self, identifier: Any) -> Hashable | None:
        """``{"partition": "<topic>-<partition>", "offset": <offset>}`` (the offset may be a
        number or a string of digits); anything else is malformed."""
        if not isinstance(identifier, dict):
            return None
        partition, offset = identifier.get("partition"), identifier.get("offset")
        if not isinstance(partition, str) or not partition:
            return None
        if isinstance(offset, str) and offset.isdigit():
            offset = int(offset)
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            return None
        return (partition, offset)

    def failure_record(self, records: Sequence[Record], ctx: FailureContext) -> dict[str, Any]:
        """AWS's Kafka on-failure record (SQS/SNS shape: ``KafkaBatchInfo`` with
        ``recordsInfo`` per partition). The ``kafka://`` destination turns it into one
        message per record, with the record as ``payload``, as AWS does."""
        doc = stream_failure_base(ctx, time.time())
        if ctx.condition == "MaximumPayloadSizeExceeded":
            doc["responseContext"] = None  # no invocation was made
        info: dict[str, dict[str, str]] = {}
        for r in records:
            stamp = iso_timestamp(r.data.timestamp / 1000)
            name = self._kafka_partition(r)
            entry = info.get(name)
            if entry is None:
                info[name] = {
                    "firstRecordOffset": str(r.position),
                    "lastRecordOffset": str(r.position),
                    "firstRecordTimestamp": stamp,
                    "lastRecordTimestamp": stamp,
                }
            else:
                entry["lastRecordOffset"] = str(r.position)
                entry["lastRecordTimestamp"] = stamp
        doc["KafkaBatchInfo"] = {
            "batchSize": len(records),
            "bootstrapServers": self.bootstrap_servers,
            "payloadSize": len(ctx.payload),
            "recordsInfo": info,
        }
        failed = [
            FailedRecord(
                partition=self._kafka_partition(r),
                offset=int(r.position),
                timestamp=r.data.timestamp,
                key=r.data.key,
                encoded=r.encoded,
            )
            for r in records
        ]
        return KafkaFailureDocument(doc, records=failed, bootstrap_servers=self.bootstrap_servers)

    # ------------------------------------------------------------ settling

    async def commit(self, records: Sequence[Record]) -> None:
        """Commit ``offset + 1`` of the frontier record (``records[-1]``): everything of its
        partition up to it is settled. With a spread, the frontier of one sub-partition
        moves the partition's commit only as far as every key's records are settled
        (``Spread.settle``). Skipped with a warning when the partition is no longer ours.

        aiokafka sends one OffsetCommit at a time, so commits of several partitions that
        arrive while one is on its way are sent together in the next request."""
        last = records[-1]
        tp = TopicPartition(last.data.topic, last.data.partition)
        consumer = self._consumer
        if consumer is None or tp not in consumer.assignment():
            self._not_ours(tp, int(last.position))
            return
        if self._spread is not None:
            covered = self._spread.settle(last)
            if covered is None or int(covered) < self._base.get(tp, 0):
                return  # nothing new is covered: a record of another key is still out
            offset = int(covered) + 1
        else:
            offset = int(last.position) + 1
        if offset > self._to_commit.get(tp, -1):
            self._to_commit[tp] = offset
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._commit_waiters.append(done)
        if self._committer is None:
            self._committer = asyncio.create_task(self._commit_loop())
        await done

    async def _commit_loop(self) -> None:
        try:
            while self._to_commit:
                offsets, self._to_commit = self._to_commit, {}
                waiters, self._commit_waiters = self._commit_waiters, []
                try:
                    await self._commit_now(offsets)
                except Exception as exc:  # every waiter hears it; the engine retries
                    for waiter in waiters:
                        if not waiter.done():
                            waiter.set_exception(exc)
                else:
                    for waiter in waiters:
                        if not waiter.done():
                            waiter.set_result(None)
        finally:
            self._committer = None

    async def _commit_now(self, offsets: dict[TopicPartition, int]) -> None:
        consumer = self._consumer
        owned = consumer.assignment() if consumer is not None else set()
        for tp in [tp for tp in offsets if tp not in owned]:
            self._not_ours(tp, offsets.pop(tp) - 1)
        if consumer is None or not offsets:
            return
        what = ", ".join(sorted(partition_name(tp.topic, tp.partition) for tp in offsets))
        try:
            await asyncio.wait_for(consumer.commit(offsets), self._timeout)
        except (CommitFailedError, IllegalStateError) as exc:
            # not committed: retried (then skipped if the partition went to another member)
            raise CheckpointError(
                f"{self._what}: the group refused the commit of {what} (it rebalanced): {exc}"
            ) from exc
        except TimeoutError as exc:
            raise CheckpointError(
                f"{self._what}: committing {what} timed out (Kafka at {self.bootstrap_servers})"
            ) from exc
        except (KafkaError, OSError) as exc:
            raise CheckpointError(
                f"{self._what}: committing {what} failed: {type(exc).__name__}: {exc}"
            ) from exc
        self._base.update(offsets)

    def offset_lag(self) -> dict[str, int]:
        """AWS's ``OffsetLag`` per assigned partition: records between the last committed
        offset and the partition's end (its high watermark as of the last fetch)."""
        consumer = self._consumer
        if consumer is None:
            return {}
        lag: dict[str, int] = {}
        for tp in consumer.assignment():
            end = consumer.highwater(tp)
            base = self._base.get(tp)
            if end is not None and base is not None:
                lag[partition_name(tp.topic, tp.partition)] = max(0, end - base)
        return lag

    def _not_ours(self, tp: TopicPartition, offset: int) -> None:
        log.warning(
            "%s: not committing %s up to offset %s: the partition is not assigned to "
            "this consumer any more (its new owner delivers from its last commit)",
            self._what,
            partition_name(tp.topic, tp.partition),
            offset,
        )
