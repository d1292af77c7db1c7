"""Dead letters and Kafka (see :mod:`bridge.dlq`): reading a ``kafka://`` destination
topic back, re-reading a Kafka source's dead-lettered offsets, and putting records back
into their source topic.

Every read here uses a consumer without a group (partitions assigned, offsets sought),
so no mapping's committed offsets move. Kafka's errors are translated as the source
does (``SourceUnavailable`` naming the servers).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bridge.dlq import CannotReplay, StoredLetter, dedupe, parse_document, stable_id
from bridge.errors import ConfigError, SourceUnavailable
from bridge.events import dumps
from bridge.filtering import FilterSet
from connectors.kafka.client import client_options, translate_errors
from connectors.kafka.config import KafkaSource
from connectors.kafka.normalize import envelope, filter_view, kafka_record

__all__ = ["KafkaDeadLetters", "put_back", "reread"]

_STALL_SECONDS = 30.0  # a read that gets nothing this long, short of its end, gives up


@contextlib.asynccontextmanager
async def _consumer(source: KafkaSource, what: str) -> AsyncIterator[AIOKafkaConsumer]:
    servers = ",".join(source.bootstrap_servers)
    consumer = AIOKafkaConsumer(**client_options(source), group_id=None, enable_auto_commit=False)
    try:
        with translate_errors(what, servers):
            await asyncio.wait_for(consumer.start(), source.request_timeout_seconds)
            yield consumer
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()


async def _read_range(
    consumer: AIOKafkaConsumer, tp: TopicPartition, first: int, end: int
) -> list[Any]:
    """The records of ``tp`` from offset ``first`` up to (not including) ``end``."""
    consumer.assign([tp])
    consumer.seek(tp, first)
    out: list[Any] = []
    last_progress = time.monotonic()
    while await consumer.position(tp) < end:
        got = await consumer.getmany(tp, timeout_ms=500, max_records=500)
        batch = [m for m in got.get(tp, []) if m.offset < end]
        if batch:
            out.extend(batch)
            last_progress = time.monotonic()
        elif time.monotonic() - last_progress > _STALL_SECONDS:
            raise SourceUnavailable(f"{tp.topic}-{tp.partition}: no records for 30 s")
    return out


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    """The partitions of ``topic`` now (none: no such topic). A consumer without a
    subscription tracks no topic's metadata, so it is fetched (the private client, as
    health.py reads it: aiokafka has no public call for it)."""
    cluster = await consumer._client.fetch_all_metadata()
    return set(cluster.partitions_for_topic(topic) or ())


async def _bounds(consumer: AIOKafkaConsumer, tp: TopicPartition) -> tuple[int, int]:
    start = (await consumer.beginning_offsets([tp]))[tp]
    end = (await consumer.end_offsets([tp]))[tp]
    return int(start), int(end)


class KafkaDeadLetters:
    """The messages of a ``kafka://`` destination topic, on the mapping's cluster, each
    a failure record (``location`` ``<topic>-<partition>@<offset>``). A topic that does
    not exist yet holds no dead letters. Messages stay in the topic after a replay."""

    def __init__(self, uri: str, *, source: Any = None, **_: Any) -> None:
        if not isinstance(source, KafkaSource):
            raise ConfigError(f"{uri}: a kafka:// destination belongs to a kafka source")
        self.uri = uri
        self.topic = uri.removeprefix("kafka://")
        self._source = source

    async def read(self) -> list[StoredLetter]:
        letters: list[StoredLetter] = []
        async with _consumer(self._source, f"dead letters {self.uri}") as consumer:
            for partition in sorted(await _partitions(consumer, self.topic)):
                tp = TopicPartition(self.topic, partition)
                start, end = await _bounds(consumer, tp)
                for m in await _read_range(consumer, tp, start, end) if end > start else []:
                    value = m.value or b""
                    location = f"{self.topic}-{partition}@{m.offset}"
                    document, error = parse_document(value, location)
                    letters.append(StoredLetter(stable_id(value), location, document, error))
        return dedupe(letters)

    async def remove(self, letter: StoredLetter) -> None:
        return None

    async def aclose(self) -> None:
        return None


async def reread(
    document: dict[str, Any], *, source: Any, region: str, filters: FilterSet | None
) -> list[bytes]:
    """The event of a Kafka failure record's ``KafkaBatchInfo.recordsInfo`` offset
    ranges, read again from the source topics, with the records that pass ``filters``
    (as the mapping delivers them); an empty list when none does. Raise CannotReplay
    when a range is no longer (or not) in its partition."""
    if not isinstance(source, KafkaSource):
        raise CannotReplay("the failure record is a Kafka one, the mapping's source is not")
    ranges = document["KafkaBatchInfo"]["recordsInfo"]
    groups: list[tuple[str, list[bytes]]] = []
    async with _consumer(source, "replay: re-reading Kafka records") as consumer:
        for name, info in ranges.items():
            topic, _, number = name.rpartition("-")
            try:
                first, last = int(info["firstRecordOffset"]), int(info["lastRecordOffset"])
                tp = TopicPartition(topic, int(number))
            except (KeyError, TypeError, ValueError) as exc:
                raise CannotReplay(f"recordsInfo {name!r} is malformed: {exc}") from None
            if tp.partition not in await _partitions(consumer, topic):
                servers = ",".join(source.bootstrap_servers)
                raise CannotReplay(f"{name}: no such topic partition at {servers}")
            start, end = await _bounds(consumer, tp)
            if first < start:
                raise CannotReplay(
                    f"{name} offsets {first}..{last} are no longer retained "
                    f"(the partition now starts at offset {start})"
                )
            if last >= end:
                raise CannotReplay(
                    f"{name} offsets {first}..{last} are not in the partition "
                    f"(it ends at offset {end}: was the topic recreated?)"
                )
            encoded = []
            for m in await _read_range(consumer, tp, first, last + 1):
                record = kafka_record(m)
                if filters is None or filters.matches(filter_view(record)):
                    encoded.append(dumps(record))
            if encoded:
                groups.append((name, encoded))
    if not groups:
        return []
    return [envelope(",".join(source.bootstrap_servers), groups)]


def _b64(value: Any) -> bytes | None:
    return None if value is None else base64.b64decode(value)


async def put_back(event: bytes, *, source: Any, region: str) -> None:
    """Produce the records of a Kafka event back to their topic and partition, with their
    key, value and headers (``acks=all``; a new timestamp, so retention and
    ``maximum_record_age_seconds`` count from now). Raise CannotReplay for a record of
    a topic the mapping does not read."""
    if not isinstance(source, KafkaSource):
        raise CannotReplay("the records are Kafka ones, the mapping's source is not")
    records = [r for rs in json.loads(event)["records"].values() for r in rs]
    for r in records:
        if r["topic"] not in source.topics:
            raise CannotReplay(f"topic {r['topic']!r} is not a topic of the mapping's source")
    servers = ",".join(source.bootstrap_servers)
    producer = AIOKafkaProducer(**client_options(source), acks="all")
    try:
        with translate_errors("replay: putting records back", servers):
            await asyncio.wait_for(producer.start(), source.request_timeout_seconds)
            for r in records:
                headers = [
                    (name, None if value is None else bytes(value))
                    for header in r.get("headers", [])
                    for name, value in header.items()
                ]
                await producer.send_and_wait(
                    r["topic"],
                    value=_b64(r.get("value")),
                    key=_b64(r.get("key")),
                    partition=r["partition"],
                    headers=headers,
                )
    finally:
        with contextlib.suppress(Exception):
            await producer.stop()
