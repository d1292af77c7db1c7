"""``kafka://topic``: failure records produced to a Kafka topic of the mapping's own
cluster (AWS requires the same cluster, and a topic that is not a source topic).

As AWS does for a Kafka on-failure destination, every failed record becomes one message:
AWS's failure metadata with ``KafkaBatchInfo`` for that record (``batchSize`` 1,
``recordInfo`` with its offset and timestamp) and the record itself as ``payload`` (the
event Lambda would have sent with that one record), keyed with the record's own key (no
key: Kafka's default partitioner spreads them). Other documents (e.g. a record that could
not be normalized) are produced as they are, one message each.

``write`` returns once the broker acknowledged every message (``acks=all``); a failure
raises ``DestinationError`` and the engine retries, so nothing is settled unwritten. A
producer is started for each write and stopped after it: dead letters are rare, and the
engine does not close destinations, so no connection is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer

from bridge.destinations import DestinationError
from bridge.errors import ConfigError, SourceUnavailable
from bridge.events import dumps, iso_timestamp
from connectors.kafka.client import client_options, translate_errors
from connectors.kafka.config import KafkaSource
from connectors.kafka.normalize import envelope

__all__ = ["FailedRecord", "KafkaDestination", "KafkaFailureDocument"]


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

    def messages(self) -> list[tuple[bytes | None, bytes]]:
        """(key, value) of each per-record message, AWS's Kafka destination shape."""
        base = {k: v for k, v in self.items() if k != "KafkaBatchInfo"}
        out = []
        for r in self.records:
            payload = envelope(self.bootstrap_servers, [(r.partition, [r.encoded])])
            meta = {
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
            out.append((r.key, dumps(meta)[:-1] + b',"payload":' + payload + b"}"))
        return out


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
        messages: list[tuple[bytes | None, bytes]] = []
        for doc in documents:
            if isinstance(doc, KafkaFailureDocument):
                messages.extend(doc.messages())
            else:
                messages.append((None, dumps(doc)))
        timeout = self._source.request_timeout_seconds
        async with self._lock:
            producer = AIOKafkaProducer(**client_options(self._source), acks="all")
            try:
                with translate_errors(f"on_failure {self.uri}", self._servers):
                    await asyncio.wait_for(producer.start(), timeout)
                    sent = [
                        await producer.send(self.topic, value=value, key=key)
                        for key, value in messages
                    ]
                    await asyncio.wait_for(asyncio.gather(*sent), timeout)
            except SourceUnavailable as exc:
                raise DestinationError(str(exc)) from exc
            finally:
                with contextlib.suppress(Exception):  # the write's own outcome counts
                    await asyncio.wait_for(producer.stop(), timeout)

    async def aclose(self) -> None:
        return None
