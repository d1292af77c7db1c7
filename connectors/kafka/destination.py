"""``kafka://topic``: failure records produced to a Kafka topic of the mapping's own
cluster (AWS requires the same cluster, and a topic that is not a source topic).

As AWS does for a Kafka on-failure destination, every failed record becomes one message:
AWS's failure metadata with ``KafkaBatchInfo`` for that record (``batchSize`` 1,
``recordInfo`` with its offset and timestamp) and the record itself as ``payload`` (the
event Lambda would have sent with that one record), keyed with the record's own key (no
key: Kafka's default partitioner spreads them). Other documents (e.g. a record that could
not be normalized) are produced as they are, one message each.

A message larger than the topic (or broker) accepts is sent again without its ``payload``,
the failure metadata only, as AWS drops the payload for a destination's size limit; the
record itself stays in the source topic at its offset. ``write`` returns once the broker
acknowledged every message (``acks=all``); any other failure raises ``DestinationError``
and the engine retries, so nothing is settled unwritten. A
producer is started for each write and stopped after it: dead letters are rare, and the
engine does not close destinations, so no connection is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError

from bridge.destinations import DestinationError
from bridge.errors import ConfigError, SourceUnavailable
from bridge.events import dumps, iso_timestamp
from connectors.kafka.client import client_options, translate_errors
from connectors.kafka.config import KafkaSource
from connectors.kafka.normalize import envelope

__all__ = ["FailedRecord", "KafkaDestination", "KafkaFailureDocument"]

log = logging.getLogger(__name__)


def _trimmed(doc: dict[str, Any]) -> bytes:
    """A plain failure document (a record that could not be shaped) with its error
    message cut to 1 KB, for a topic that refuses the whole one."""
    message = doc.get("errorMessage")
    if isinstance(message, str) and len(message) > 1024:
        doc = {**doc, "errorMessage": message[:1024] + "..."}
    return dumps(doc)


@dataclass(frozen=True, slots=True)
class FailedRecord:
    """A dead-lettered record as the destination needs it: where it was, its key, and
    its event record as already encoded for the invocation."""

    partition: str
    offset: int
    timestamp: int
    key: bytes | None
    encoded: bytes


class KafkaFailureDocument(dict[str, Any]):
    """A Kafka source's failure record (a plain dict for every other destination) that
    also carries the failed records, so ``kafka://`` can write one message per record."""

    def __init__(
        self, doc: dict[str, Any], *, records: Sequence[FailedRecord], bootstrap_servers: str
    ) -> None:
        super().__init__(doc)
        self.records = list(records)
        self.bootstrap_servers = bootstrap_servers

    def messages(self) -> list[_Message]:
        """Each per-record message, AWS's Kafka destination shape, with the same message
        without its payload for when that one is too large."""
        base = {k: v for k, v in self.items() if k != "KafkaBatchInfo"}
        out = []
        for r in self.records:
            payload = envelope(self.bootstrap_servers, [(r.partition, [r.encoded])])
            meta = dumps(
                {
                    **base,
                    "KafkaBatchInfo": {
                        "batchSize": 1,
                        "bootstrapServers": self.bootstrap_servers,
                        "payloadSize": len(payload),
                        "recordInfo": {
                            "offset": str(r.offset),
                            "timestamp": iso_timestamp(r.timestamp / 1000),
                        },
                    },
                }
            )
            value = meta[:-1] + b',"payload":' + payload + b"}"
            out.append(_Message(r.key, value, smaller=meta))
        return out


@dataclass(frozen=True, slots=True)
class _Message:
    key: bytes | None
    value: bytes
    smaller: bytes | None = None  # the same without its payload


class KafkaDestination:
    def __init__(self, uri: str, *, source: Any = None, context: Any = None) -> None:
        self.uri = uri
        self.topic = uri.removeprefix("kafka://")
        if not re.match(r"^[A-Za-z0-9._\-]{1,249}$", self.topic):
            raise ConfigError(f"on_failure {uri!r}: not a valid Kafka topic name")
        if not isinstance(source, KafkaSource):
            raise ConfigError(
                f"on_failure {uri!r}: a Kafka topic destination needs a kafka source "
                "(it is written on the source's own cluster)"
            )
        self._source = source
        self._servers = ",".join(source.bootstrap_servers)
        self._lock = asyncio.Lock()

    async def write(self, documents: Sequence[dict[str, Any]]) -> None:
        messages: list[_Message] = []
        for doc in documents:
            if isinstance(doc, KafkaFailureDocument):
                messages.extend(doc.messages())
            else:
                messages.append(_Message(None, dumps(doc), smaller=_trimmed(doc)))
        timeout = self._source.request_timeout_seconds
        async with self._lock:
            producer = AIOKafkaProducer(**client_options(self._source), acks="all")
            try:
                with translate_errors(f"on_failure {self.uri}", self._servers):
                    await asyncio.wait_for(producer.start(), timeout)
                    too_large = await self._send(producer, messages, timeout)
                    if too_large:
                        log.warning(
                            "on_failure %s: %d failure records are larger than the topic "
                            "accepts; sent without their payload",
                            self.uri,
                            len(too_large),
                        )
                        smaller = [_Message(m.key, m.smaller) for m in too_large if m.smaller]
                        if await self._send(producer, smaller, timeout):
                            raise DestinationError(
                                f"on_failure {self.uri}: even without its payload a failure "
                                "record is larger than the topic accepts (max.message.bytes)"
                            )
            except SourceUnavailable as exc:
                raise DestinationError(str(exc)) from exc
            finally:
                with contextlib.suppress(Exception):  # the write's own outcome counts
                    await asyncio.wait_for(producer.stop(), timeout)

    async def _send(
        self, producer: AIOKafkaProducer, messages: list[_Message], timeout: float
    ) -> list[_Message]:
        """Send and wait for every message; return those refused as too large (when they
        have a smaller form). Any other failure raises."""
        refused: list[_Message] = []
        sent: list[tuple[_Message, asyncio.Future[Any]]] = []
        for m in messages:
            try:
                sent.append((m, await producer.send(self.topic, value=m.value, key=m.key)))
            except MessageSizeTooLargeError:  # over the producer's own max_request_size
                refused.append(m)
        outcomes = await asyncio.wait_for(
            asyncio.gather(*(f for _, f in sent), return_exceptions=True), timeout
        )
        for (m, _), outcome in zip(sent, outcomes, strict=True):
            if isinstance(outcome, MessageSizeTooLargeError):
                refused.append(m)
            elif isinstance(outcome, BaseException):
                raise outcome
        if any(m.smaller is None for m in refused):
            raise DestinationError(
                f"on_failure {self.uri}: a failure record is larger than the topic accepts "
                "(max.message.bytes)"
            )
        return refused

    async def aclose(self) -> None:
        return None
