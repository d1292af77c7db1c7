"""The connector contract: how an event source plugs into the engine.

Data flows one way: ``read()`` yields records, the engine normalizes, filters,
batches and delivers them, and hands settled records back through ``commit()``.
A connector never sees targets, retries or batches; the engine never sees a
source's client library.
"""

from __future__ import annotations

import asyncio
import builtins
import time
from collections import deque
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Hashable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel

from bridge.checkpoints import CheckpointNamespace
from bridge.leases import Leases

__all__ = [
    "BaseConnector",
    "Connector",
    "ConnectorContext",
    "FailureContext",
    "Feed",
    "PartitionControl",
    "Record",
]


T = TypeVar("T")


@dataclass(slots=True, eq=False)
class Record:
    """One change read from a source.

    ``partition`` groups records that must stay in order (a Kafka partition, a
    DynamoDB shard, an object key); ``position`` is the connector's own opaque
    marker (offset, sequence number, object state) handed back on ``commit``.
    ``data`` is the raw item for ``normalize``. ``arrived`` (epoch seconds) is when
    the source says the record was written; ``maximum_record_age_seconds`` counts
    from it. ``encoded`` (the AWS-shaped record as JSON) is filled in by the engine;
    it stays empty for a record that could not be shaped.

    The remaining fields are the engine's bookkeeping; connectors leave them alone.
    """

    partition: str
    position: Any
    data: Any
    arrived: float = field(default_factory=time.time)
    encoded: bytes = b""
    seq: int = 0  # its ordinal in its partition, from 1, in read order
    mark: int = field(default=0, repr=False)  # bytes read of its partition up to it
    state: int = field(default=0, repr=False)  # per-record acks: live, settled, done
    lane: Any = field(default=None, repr=False)  # the engine's state of its partition
    trailer: Record | None = field(default=None, repr=False)  # filtered records after it
    window: int = field(default=0, repr=False)  # its tumbling window (when the mapping has)


class PartitionControl:
    """The channel between the engine and a connector about partitions.

    Connector -> engine:

    - ``await revoke(partitions)``: the source lost these partitions (a Kafka
      rebalance). Returns once nothing of them is in flight any more: records not yet
      dispatched are dropped (they were never committed; the new owner reads them
      again); batches in flight get the shutdown timeout to finish and are then
      cancelled; what settled is committed (``commit()`` is called) before it returns,
      so the connector lets go only after its commits. No invocation for a revoked
      partition starts after it returned.
    - ``reading(partitions)`` / ``finished(partitions)``: the source starts reading
      these partitions / read them to their end (a shard opened or closed, partitions
      assigned). Partitions being read share the read-ahead from the start.
    - ``room(partition)``: how many more records of ``partition`` the engine takes now
      (0 while it is paused); ``await wait_room(partition)`` waits until it is not
      paused. Sources that read partition by partition (DynamoDB shards) ask before
      each read, so nothing is read that the engine would have to hold.

    """

    def __init__(self) -> None:
        self._revoke: Callable[[Collection[str]], Awaitable[None]] | None = None
        self._engine: Any = None

    def bind(self, revoke: Callable[[Collection[str]], Awaitable[None]], lanes: Any = None) -> None:
        """(The engine.) ``lanes`` has ``reading``, ``finished``, ``room_for`` and
        ``wait_room_for`` (``bridge.lanes.Lanes``)."""
        self._revoke = revoke
        self._engine = lanes

    async def revoke(self, partitions: Collection[str]) -> None:
        if self._revoke is not None and partitions:
            await self._revoke(partitions)

    def reading(self, partitions: Collection[str]) -> None:
        if self._engine is not None:
            self._engine.reading(partitions)

    def finished(self, partitions: Collection[str]) -> None:
        if self._engine is not None:
            self._engine.finished(partitions)

    def room(self, partition: str) -> int:
        return int(self._engine.room_for(partition)) if self._engine is not None else 1 << 30

    async def wait_room(self, partition: str) -> None:
        if self._engine is not None:
            await self._engine.wait_room_for(partition)


@dataclass(slots=True, frozen=True)
class ConnectorContext:
    """What the engine gives a connector when it builds it."""

    mapping: str
    checkpoints: CheckpointNamespace
    region: str = "us-east-1"
    account_id: str = "000000000000"
    partitions: PartitionControl = field(default_factory=PartitionControl)
    state_dir: str | None = None  # the bridge's; sources keep files there (a spool...)
    # the mapping's parallelization_factor (1-10): a parallelizable source spreads each
    # partition's records over this many sub-partitions by partition key
    parallelization_factor: int = 1
    # the mapping's leases when the state store is shared by several bridges (None: it is
    # not, and the source reads every partition itself): a source that can split its
    # partitions (DynamoDB shards) reads and commits only those it holds (bridge/leases.py)
    leases: Leases | None = None
    # which member of a mapping with ``parallelism`` (0 to N-1; each in its own process)
    member: int = 0


@dataclass(slots=True, frozen=True)
class FailureContext:
    """Why a set of records is being dead-lettered, for building AWS failure records.

    ``condition`` is AWS's word (``RetryAttemptsExhausted``, ``RecordAgeExceeded``,
    ``MaximumPayloadSizeExceeded``, ``NormalizeFailed``...). ``status_code``,
    ``function_error`` and ``response`` describe the last invocation (if any).
    """

    condition: str
    function_arn: str
    request_id: str
    attempts: int
    status_code: int | None = None
    function_error: str | None = None
    error_message: str | None = None
    response: bytes = b""
    payload: bytes = b""


@runtime_checkable
class Connector(Protocol):
    """A source of records, built as ``cls(config, context)`` from an instance of its
    ``config_model`` and a ``ConnectorContext``.

    Class attributes:
      ``type``: the name used in ``source.type``;
      ``config_model``: the pydantic model of the source options;
      ``ordered``: True when records of one partition must be delivered in order (one
      batch in flight per partition); an instance may override it once built (an SQS
      FIFO queue is ordered, a standard one not);
      ``redelivery``: ``"bridge"`` (streams, async sources): the engine retries failed
      records itself, within the mapping's retry limits, then dead-letters them;
      ``"source"`` (queues): records the function failed are handed back with
      ``abandon()`` and the source redelivers them by its own policy (SQS: after the
      visibility timeout; its redrive policy moves them to the queue's DLQ);
      ``pausable``: True when the source asks ``context.partitions.room(p)`` before it
      reads partition ``p`` and reads no more than that, so a partition that holds its
      share of the read-ahead stops being read while the others go on;
      ``parallelizable`` (optional, default False): True when the source takes the
      mapping's ``parallelization_factor`` (``context.parallelization_factor``, else
      refused by the config check): it spreads each partition's records over that many
      partitions of its own (by partition key, one key always in the same one), answers
      ``room`` for a partition from theirs, and commits a position only once everything
      of the partition before it settled in whichever of them it went to;
      ``windowable`` (optional, default False): True when the source takes the mapping's
      ``tumbling_window_in_seconds`` (the engine does the windows, :mod:`bridge.windows`;
      ``encode_event([])`` must give the envelope of a window's final invocation, and a
      connector may have a ``stream_arn`` for the events' ``eventSourceARN``);
      ``group_members`` (optional, default False): True when several connectors of one
      mapping, each in its own process, share the source's partitions among themselves
      (Kafka's consumer group; leases, ``context.leases``, for DynamoDB Streams), so the
      mapping takes ``parallelism`` (:mod:`bridge.placement`);
      ``singleton`` (optional, default False): True when, among bridges sharing their
      state (``state: {type: dynamodb}``), only one may run the mapping at a time (a
      schedule, a bucket, a feed): it runs where its lease is held
      (:class:`bridge.leases.MappingLease`), ``standby`` elsewhere;
      ``in_daemon`` (optional, default False): True when the mapping must run in the
      daemon's own process, not in a worker (an event bus rule reads the spool the bus
      in the daemon writes);
      ``defaults``: AWS's defaults of mapping options for this kind of source
      (``batch_size``, ``maximum_batching_window_seconds``, ``maximum_retry_attempts``...),
      and ``maximum_retry_attempts_with_on_failure``: what -1 (infinite) becomes when the
      mapping has an ``on_failure`` destination (Kafka: 10, as AWS caps it).
      ``check_mapping(options)`` (optional classmethod): the mapping's options as given
      (a dict) -> a list of ``(key, problem)`` AWS would reject for this kind of source.
      ``sample_event(**params)`` (optional static- or classmethod): a sample of what this
      kind of source sends a function (one invocation's whole payload, in its envelope),
      for ``trigger-bridge generate-event <type>``; built with the connector's own event
      builders, so it is exactly what the connector sends. Its keyword-only parameters,
      each with a default, are the command's options (``event_name``: ``--event-name``);
      a value typed there is converted to the parameter's annotation (``str`` as is,
      ``int``, ``float``, ``bool``, anything else parsed as JSON). Raises ``ValueError``
      for a value it cannot use.

    Two ways of acknowledging:
      *frontier* (``ordered`` and ``redelivery = "bridge"``: a partition is a log):
      ``commit([record])`` gets the newest record of one partition such that it and
      everything read before it in that partition is settled (filtered-out and
      dead-lettered records included). Commit its position; everything before it is
      covered.
      *per record* (``redelivery = "source"``, queues; and any unordered source):
      ``commit(records)`` gets settled records (any partitions) to acknowledge one by
      one (SQS: delete them).

    Methods:
      ``open()``: connect; a transient failure raises ``SourceUnavailable`` (the
      supervisor retries), bad settings raise ``ConfigError`` (not retried).
      ``read()``: an async iterator of record chunks; the engine pulls the next chunk
      only when it has room, and may cancel it at any await.
      ``normalize(record)``: pure; the AWS-shaped event record (a dict); raises
      ``NormalizeError`` for a record that cannot be shaped.
      ``encode(record)`` (optional): ``dumps(normalize(record))``, the same bytes, which
      a connector may build without the dict; the engine uses it when the mapping has
      no filters (without it, it encodes ``normalize``'s dict). Raises
      ``NormalizeError`` as ``normalize`` does.
      ``filter_view(event)``: the dict FilterCriteria are matched against (e.g. with a
      JSON body decoded); default: the event itself.
      ``encode_event(records)``: the invocation payload (bytes) for a batch of
      normalized records of one mapping, in AWS's envelope.
      ``item_identifier(record)`` / ``identifier_key(obj)``: how ``batchItemFailures``
      entries name a record (a hashable key); ``identifier_key`` returns None for an
      identifier that is malformed.
      ``failure_record(records, ctx)``: the AWS-shaped on-failure document.
      ``commit(records)``: see above. Idempotent. Raises ``CheckpointError`` if it could
      not be made durable (it is called again later, possibly with a newer record).
      ``release(records)``: (per-record sources) make unsettled records redeliverable
      now (shutdown). Frontier sources reread everything after their commit anyway.
      ``abandon(records)``: (``redelivery = "source"``) the function failed on these;
      leave them to the source's own redelivery. The engine forgets them.
      ``aclose()``: idempotent; frees everything.
      ``offset_lag()`` (optional): ``{partition: records}`` between the last commit and
      the end of each partition read (AWS's ``OffsetLag``; Kafka); for ``/metrics``.
      ``backlog()`` (optional): how many changes the source has found and not yet
      handed to ``read()`` (buckets and folders); for ``/metrics``. Both are cheap,
      synchronous and never fail.
    """

    type: ClassVar[str]
    config_model: ClassVar[builtins.type[BaseModel]]
    ordered: ClassVar[bool]
    redelivery: ClassVar[Literal["bridge", "source"]]
    pausable: ClassVar[bool]
    defaults: ClassVar[Mapping[str, Any]]

    async def open(self) -> None: ...

    def read(self) -> AsyncIterator[Sequence[Record]]: ...

    def normalize(self, record: Record) -> dict[str, Any]: ...

    def filter_view(self, event: dict[str, Any]) -> Mapping[str, Any]: ...

    def encode_event(self, records: Sequence[Record]) -> bytes: ...

    def item_identifier(self, record: Record) -> Hashable: ...

    def identifier_key(self, identifier: Any) -> Hashable | None: ...

    def failure_record(self, records: Sequence[Record], ctx: FailureContext) -> dict[str, Any]: ...

    async def commit(self, records: Sequence[Record]) -> None: ...

    async def release(self, records: Sequence[Record]) -> None: ...

    async def abandon(self, records: Sequence[Record]) -> None: ...

    async def aclose(self) -> None: ...


class BaseConnector:
    """Defaults for the optional parts of the contract; connectors may subclass it.

    ``filter_view`` is the event itself, ``encode_event`` the ``{"Records": [...]}``
    envelope, an identifier is matched by its string form, failed records are retried
    by the engine (``redelivery = "bridge"``), the source does not ask ``room()`` (not
    ``pausable``), and ``release``/``abandon`` do nothing (the source redelivers
    uncommitted records on its own).
    """

    defaults: ClassVar[Mapping[str, Any]] = {}
    redelivery: ClassVar[Literal["bridge", "source"]] = "bridge"
    pausable: ClassVar[bool] = False

    def filter_view(self, event: dict[str, Any]) -> Mapping[str, Any]:
        return event

    def encode_event(self, records: Sequence[Record]) -> bytes:
        from bridge.events import envelope

        return envelope([r.encoded for r in records])

    def identifier_key(self, identifier: Any) -> Hashable | None:
        if isinstance(identifier, str | int) and not isinstance(identifier, bool):
            return str(identifier)
        return None

    async def release(self, records: Sequence[Record]) -> None:
        return None

    async def abandon(self, records: Sequence[Record]) -> None:
        return None


class Feed(Generic[T]):
    """A bounded hand-off from a connector's background tasks to its ``read()``.

    Producers ``await feed.put(item)`` (waiting while ``maxsize`` items are queued, so
    the source is never read further ahead than that), or ``await feed.hand_over(item)``,
    which also waits until ``read()`` yielded the item: a producer that reads its
    partition only after its last item was taken never holds more than one item the
    engine has not seen. ``read()`` does ``async for item in feed.items(tasks)``: it
    yields items in order, forever, and raises the exception of the first of ``tasks``
    that fails (``tasks`` is looked at again on every wait, so tasks may be added
    later; ones that end normally or are cancelled are ignored). Waiting never takes an
    item, so cancelling ``read()`` at any point loses nothing: an item is either still
    in the feed or was yielded.
    """

    def __init__(self, maxsize: int) -> None:
        self._items: deque[tuple[T, asyncio.Future[None] | None]] = deque()
        self._maxsize = maxsize
        self._not_empty = asyncio.Event()
        self._not_full = asyncio.Event()
        self._not_full.set()

    def __len__(self) -> int:
        return len(self._items)

    def queued(self) -> list[T]:
        """The items waiting, oldest first (a copy)."""
        return [item for item, _ in self._items]

    def drop(self, unwanted: Callable[[T], bool]) -> int:
        """Remove the waiting items ``unwanted`` says yes to (a partition given up), so
        ``items()`` never yields them; their ``hand_over`` is cancelled. Returns how many."""
        kept: deque[tuple[T, asyncio.Future[None] | None]] = deque()
        dropped = 0
        for item, taken in self._items:
            if not unwanted(item):
                kept.append((item, taken))
                continue
            dropped += 1
            if taken is not None and not taken.done():
                taken.cancel()
        self._items = kept
        if len(kept) < self._maxsize:
            self._not_full.set()
        return dropped

    async def put(self, item: T) -> None:
        await self._append(item, None)

    async def hand_over(self, item: T) -> None:
        taken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._append(item, taken)
        await taken

    async def _append(self, item: T, taken: asyncio.Future[None] | None) -> None:
        while len(self._items) >= self._maxsize:
            self._not_full.clear()
            await self._not_full.wait()
        self._items.append((item, taken))
        self._not_empty.set()

    async def items(self, tasks: Collection[asyncio.Future[Any]]) -> AsyncIterator[T]:
        while True:
            while self._items:
                item, taken = self._items.popleft()
                self._not_full.set()
                if taken is not None and not taken.done():
                    taken.set_result(None)
                yield item
            self._not_empty.clear()
            for task in list(tasks):
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            waiter = asyncio.ensure_future(self._not_empty.wait())
            try:
                live = {t for t in tasks if not t.done()}
                await asyncio.wait({waiter, *live}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
