"""The self-managed Kafka event, exactly as Lambda's self-managed Apache Kafka event source
mapping sends it::

    {"eventSource": "SelfManagedKafka",
     "bootstrapServers": "host1:9092,host2:9092",
     "records": {"<topic>-<partition>": [{"topic", "partition", "offset", "timestamp",
                                          "timestampType", "key", "value", "headers"}]}}

``timestamp`` is epoch milliseconds, ``timestampType`` ``CREATE_TIME`` or
``LOG_APPEND_TIME``, ``key``/``value`` base64. As on AWS, a record without a key has no
``key`` field and a record without a value (a tombstone) has ``"value": null``.
``headers`` is a list of one-key objects whose value is the header's bytes as an array of
numbers (``[{"h": [104, 105]}]``), in the record's order (keys may repeat).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from binascii import b2a_base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bridge.errors import NormalizeError
from bridge.events import dumps
from bridge.filtering import UNREADABLE, NotJson

__all__ = [
    "EVENT_SOURCE",
    "RecordEncoder",
    "envelope",
    "filter_view",
    "kafka_record",
    "partition_name",
    "sample_event",
]

EVENT_SOURCE = "SelfManagedKafka"
TIMESTAMP_TYPES = {0: "CREATE_TIME", 1: "LOG_APPEND_TIME"}


class ConsumerRecordLike(Protocol):
    topic: str
    partition: int
    offset: int
    timestamp: int
    timestamp_type: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]]


def partition_name(topic: str, partition: int) -> str:
    """``"<topic>-<partition>"``: the grouping key of ``records`` and the engine's partition."""
    return f"{topic}-{partition}"


def _headers(message: ConsumerRecordLike) -> list[dict[str, list[int] | None]]:
    return [{name: None if value is None else list(value)} for name, value in message.headers]


def kafka_record(message: ConsumerRecordLike) -> dict[str, Any]:
    """One entry of ``records["<topic>-<partition>"]`` from an aiokafka ConsumerRecord."""
    try:
        record: dict[str, Any] = {
            "topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "timestamp": message.timestamp,
            "timestampType": TIMESTAMP_TYPES.get(message.timestamp_type, "NO_TIMESTAMP_TYPE"),
        }
        if message.key is not None:
            record["key"] = base64.b64encode(message.key).decode("ascii")
        record["value"] = (
            None if message.value is None else base64.b64encode(message.value).decode("ascii")
        )
        record["headers"] = _headers(message)
    except (AttributeError, TypeError) as exc:
        raise NormalizeError(f"malformed Kafka record: {exc}") from exc
    return record


class RecordEncoder:
    """``dumps(kafka_record(message))`` without the dict: the same bytes, built directly
    (the hot path of a mapping without filters). Topic names are JSON-encoded once."""

    _TYPES = {k: dumps(v) for k, v in TIMESTAMP_TYPES.items()}
    _NO_TYPE = dumps("NO_TIMESTAMP_TYPE")

    def __init__(self) -> None:
        self._topics: dict[str, bytes] = {}

    def __call__(self, message: ConsumerRecordLike) -> bytes:
        try:
            topic = self._topics.get(message.topic)
            if topic is None:
                topic = self._topics[message.topic] = dumps(message.topic)
            key, value, headers = message.key, message.value, message.headers
            out = b'{"topic":%b,"partition":%d,"offset":%d,"timestamp":%d,"timestampType":%b' % (
                topic,
                message.partition,
                message.offset,
                message.timestamp,
                self._TYPES.get(message.timestamp_type, self._NO_TYPE),
            )
            if key is not None:
                out += b',"key":"' + b2a_base64(key, newline=False) + b'"'
            if value is None:
                out += b',"value":null'
            else:
                out += b',"value":"' + b2a_base64(value, newline=False) + b'"'
            if headers:
                return out + b',"headers":' + dumps(_headers(message)) + b"}"
        except (AttributeError, TypeError):  # not an aiokafka record: the dict path decides
            return dumps(kafka_record(message))  # (and raises NormalizeError if malformed)
        return out + b',"headers":[]}'


def envelope(bootstrap_servers: str, groups: Iterable[tuple[str, Sequence[bytes]]]) -> bytes:
    """The event from already-encoded records, grouped by partition name, without
    re-encoding any record."""
    head = b'{"eventSource":"' + EVENT_SOURCE.encode() + b'","bootstrapServers":'
    parts = [dumps(name) + b":[" + b",".join(encoded) + b"]" for name, encoded in groups]
    return head + dumps(bootstrap_servers) + b',"records":{' + b",".join(parts) + b"}}"


def filter_view(event: dict[str, Any]) -> dict[str, Any]:
    """What filter patterns see: the record with ``value`` decoded, as Lambda filters Kafka
    records on ``value`` after decoding it as UTF-8: JSON when it is JSON, else its text as
    ``NotJson`` (string patterns match it, a pattern on its contents never does); a value
    that is not UTF-8 is ``UNREADABLE`` and matches no pattern on ``value``."""
    value = event.get("value")
    if not isinstance(value, str):
        return event
    try:
        text = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return {**event, "value": UNREADABLE}
    try:
        decoded: Any = json.loads(text)
    except ValueError:
        decoded = NotJson(text)
    return {**event, "value": decoded}


@dataclass(slots=True)
class _Message:
    """A consumed message, as aiokafka's ConsumerRecord has it."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    timestamp_type: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]]


def sample_event(
    *,
    topic: str = "mytopic",
    partition: int = 0,
    offset: int = 15,
    key: str = "key-1",
    value: str = '{"hello": "world"}',
    bootstrap_servers: str = "127.0.0.1:9092",
) -> dict[str, Any]:
    """The event of one message (the ``sample_event`` hook); ``key`` and ``value`` as
    text (base64 in the event), an empty ``key`` for none. Built by the connector's own
    encoder and envelope."""
    message = _Message(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=int(time.time() * 1000),
        timestamp_type=0,
        key=key.encode() or None,
        value=value.encode(),
        headers=[("headerKey", b"headerValue")],
    )
    groups = [(partition_name(topic, partition), [RecordEncoder()(message)])]
    event: dict[str, Any] = json.loads(envelope(bootstrap_servers, groups))
    return event
