"""Reading one shard of a DynamoDB stream: iterators, polling pace, and the API errors
that belong to a shard (expired iterators, trimmed data).

``ShardReader.read(shard)`` hands the shard's records, in order, to a queue as lists of
``Record`` (partition = shard id, or its sub-partition with a ``Spread``; position =
sequence number) and returns once it read past the end of a closed shard; on an open
shard it never returns.

Flow control: before each GetRecords the reader waits while the engine has the shard
paused, asks for no more records than the engine has room for in that shard, and hands
them over only once the engine took its previous ones. So a shard whose batches do not
move holds its share of the read-ahead and nothing more, inside the engine or out. (With a
``Spread`` the spread answers for the shard, from its sub-partitions.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

from bridge.connector import Feed, PartitionControl, Record
from bridge.errors import SourceUnavailable
from bridge.spread import Spread
from connectors.aws import translate_errors
from connectors.dynamodb_streams.config import DynamoDBStreamsSource
from connectors.dynamodb_streams.normalize import creation_seconds, keys_json

__all__ = ["GONE", "SHARD_PREFIX", "PollPace", "Shard", "ShardReader", "error_code"]

log = logging.getLogger(__name__)

SHARD_PREFIX = "shard:"  # checkpoint keys: shard:<shard id>
GONE = "ResourceNotFoundException"
_GET_RECORDS_LIMIT = 1000  # the most GetRecords returns in one call
_EXPIRED = "ExpiredIteratorException"
_TRIMMED = "TrimmedDataAccessException"
_TRANSIENT_ATTEMPTS = 4


class PollPace:
    """How long a shard reader waits before its next GetRecords.

    ``poll_interval`` while records come and for ``quiet_seconds`` after the last ones: an
    empty answer or two between records is normal (a stream shows writes in bursts) and
    must not slow a busy shard down. After that the shard counts as idle and the wait
    doubles, up to ``max_idle``, to spend fewer calls on it."""

    def __init__(
        self,
        poll_interval: float,
        max_idle: float,
        *,
        quiet_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.poll_interval = poll_interval
        self.max_idle = max_idle
        self.quiet_seconds = quiet_seconds
        self._clock = clock
        self._last_records = clock()
        self._wait = poll_interval

    def next_wait(self, got_records: bool) -> float:
        now = self._clock()
        if got_records or now - self._last_records < self.quiet_seconds:
            if got_records:
                self._last_records = now
            self._wait = self.poll_interval
            return self._wait
        wait, self._wait = self._wait, min(self._wait * 2, self.max_idle)
        return wait


def error_code(exc: BaseException) -> str:
    """The AWS error code behind a translated error ('' when there is none)."""
    cause = exc.__cause__
    response = getattr(cause, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _later(a: str, b: str) -> bool:
    """Sequence numbers are decimal strings, compared as numbers."""
    return int(a) > int(b)


@dataclass(slots=True, eq=False)
class Shard:
    """One shard of the stream and how far it was read, committed and finished."""

    shard_id: str
    parent_id: str | None
    checkpoint: str | None = None  # last committed sequence number
    latest: bool = False  # start at LATEST (no position yet)
    last_read: str | None = None  # last sequence number handed to the engine
    ended: bool = False  # read past the end of the (closed) shard
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @property
    def key(self) -> str:
        return SHARD_PREFIX + self.shard_id

    def state(self, *, done: bool = False) -> str:
        """The checkpoint value: the last committed sequence number, and whether the shard
        is finished or still to start at LATEST."""
        out: dict[str, Any] = {"seq": self.checkpoint}
        if done:
            out["done"] = True
        elif self.latest and self.checkpoint is None:
            out["latest"] = True
        return json.dumps(out)


class ShardReader:
    """Reads shards of one stream with a DynamoDB Streams client (see the module doc)."""

    def __init__(
        self,
        streams: Any,
        *,
        stream_arn: str,
        what: str,
        options: DynamoDBStreamsSource,
        queue: Feed[list[Record]],
        control: PartitionControl | None = None,
        spread: Spread | None = None,
    ) -> None:
        self.streams = streams
        self.stream_arn = stream_arn
        self.what = what
        self.options = options
        self.queue = queue
        self.control = control or PartitionControl()
        self.spread = spread

    async def read(self, shard: Shard) -> None:
        """Read ``shard`` until its end (a closed shard) or forever (an open one)."""
        iterator: str | None = await self._iterator(shard)
        pace = PollPace(
            self.options.poll_interval_seconds, self.options.max_idle_poll_interval_seconds
        )
        gate: PartitionControl | Spread = self.spread or self.control
        while iterator is not None:
            await gate.wait_room(shard.shard_id)
            limit = min(_GET_RECORDS_LIMIT, max(1, gate.room(shard.shard_id)))
            try:
                response = await self.call(
                    self.streams.get_records, ShardIterator=iterator, Limit=limit
                )
            except SourceUnavailable as exc:
                if error_code(exc) == _EXPIRED:
                    iterator = await self._iterator(shard)
                    continue
                if error_code(exc) == _TRIMMED:
                    self._log_gap(shard)
                    iterator = await self._get_iterator(shard, "TRIM_HORIZON")
                    continue
                raise
            raws = response.get("Records", [])
            iterator = response.get("NextShardIterator")
            if raws:
                await self._hand_over(shard, raws)
            if iterator is None:
                return
            if len(raws) >= limit:
                continue  # more is waiting
            await asyncio.sleep(pace.next_wait(bool(raws)))

    async def _hand_over(self, shard: Shard, raws: list[dict[str, Any]]) -> None:
        fresh = []
        for raw in raws:
            seq = raw["dynamodb"]["SequenceNumber"]
            if shard.last_read is not None and not _later(seq, shard.last_read):
                continue  # defensive: never hand a record over twice in one session
            fresh.append((seq, raw))
            shard.last_read = seq
        if not fresh:
            return
        spread = self.spread
        parts: Iterable[str] = (  # handed to the spread before the engine can settle them
            spread.hand(shard.shard_id, [(s, _keys(r)) for s, r in fresh])
            if spread is not None
            else repeat(shard.shard_id)
        )
        records = []
        for (seq, raw), part in zip(fresh, parts, strict=False):  # parts: maybe endless
            seconds = creation_seconds(raw)
            records.append(
                Record(
                    partition=part,
                    position=seq,
                    data=raw,
                    arrived=float(seconds) if seconds is not None else time.time(),
                )
            )
        await self.queue.hand_over(records)

    async def _iterator(self, shard: Shard) -> str | None:
        """An iterator right after what was read (or committed), else at the start."""
        position = shard.last_read or shard.checkpoint
        try:
            if position is not None:
                return await self._get_iterator(shard, "AFTER_SEQUENCE_NUMBER", position)
            return await self._get_iterator(shard, "LATEST" if shard.latest else "TRIM_HORIZON")
        except SourceUnavailable as exc:
            if error_code(exc) != _TRIMMED:
                raise
            self._log_gap(shard)
            return await self._get_iterator(shard, "TRIM_HORIZON")

    async def _get_iterator(self, shard: Shard, kind: str, seq: str | None = None) -> str | None:
        kwargs: dict[str, Any] = {
            "StreamArn": self.stream_arn,
            "ShardId": shard.shard_id,
            "ShardIteratorType": kind,
        }
        if seq is not None:
            kwargs["SequenceNumber"] = seq
        response = await self.call(self.streams.get_shard_iterator, **kwargs)
        iterator = response.get("ShardIterator")
        return str(iterator) if iterator else None

    def _log_gap(self, shard: Shard) -> None:
        log.warning(
            "%s: shard %s: records after %s were trimmed (older than the stream's "
            "retention) before they were read; going on from the oldest record kept",
            self.what,
            shard.shard_id,
            shard.last_read or shard.checkpoint or "its start",
        )

    async def call(self, operation: Callable[..., Awaitable[Any]], **kwargs: Any) -> Any:
        """One API call; transient failures are retried a few times before they raise."""
        for attempt in range(_TRANSIENT_ATTEMPTS):
            try:
                with translate_errors(self.what):
                    return await operation(**kwargs)
            except SourceUnavailable as exc:
                if error_code(exc) in (_EXPIRED, _TRIMMED) or attempt == _TRANSIENT_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover


def _keys(raw: dict[str, Any]) -> bytes | None:
    """A record's ``Keys`` as canonical JSON, its key for a ``Spread`` (None: no keys,
    which the engine dead-letters)."""
    try:
        return keys_json(raw)
    except (KeyError, TypeError, AttributeError, ValueError):
        return None
