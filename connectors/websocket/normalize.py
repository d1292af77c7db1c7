"""The websocket event: a batch of feed messages, in the style of the Kinesis event::

    {"eventSource": "trigger-bridge:websocket",
     "eventSourceUrl": "wss://feed.example.com/v1",
     "records": [{"sequenceNumber": "42",
                  "partitionKey": "AAPL",
                  "approximateArrivalTimestamp": 1764495000.123,
                  "connection": 3,
                  "frameType": "text",
                  "data": "{\"symbol\": \"AAPL\", \"price\": 1}",
                  "isBase64Encoded": false}]}

AWS has no websocket event source, so this shape is the bridge's own, documented here and
in the README. ``sequenceNumber`` is the message's place in the mapping's spool (a string
of digits, as Kinesis's, growing by one per message received, across reconnects and
restarts), and it is the ``itemIdentifier`` of a partial batch response.
``partitionKey`` is the value of the source's ``partition_key`` field (a string; JSON
numbers and booleans as their JSON text), null without one. ``approximateArrivalTimestamp``
is when the bridge received it (epoch seconds, as Kinesis). ``connection`` counts the
mapping's connections to the feed: a message's neighbours with another number came over
another connection, and what the feed sent in between was not received. A text frame's
``data`` is its text, a binary frame's its bytes in base64 (``isBase64Encoded: true``).
``eventSourceUrl`` is the feed's URL without its query string (which may hold tokens).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bridge.events import dumps
from bridge.filtering import UNREADABLE, NotJson

__all__ = [
    "EVENT_SOURCE",
    "envelope",
    "filter_view",
    "key_of",
    "public_url",
    "sample_event",
    "websocket_record",
]

EVENT_SOURCE = "trigger-bridge:websocket"
NO_KEY = "-"  # the engine's partition of messages without a partition key


def public_url(url: str) -> str:
    """``url`` without its query string and user info: it goes into every event."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def field_of(payload: bytes, path: str) -> Any:
    """The value at dotted ``path`` of a JSON object message, or None (not JSON, not an
    object, no such field)."""
    try:
        value: Any = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    for name in path.split("."):
        if not isinstance(value, dict) or name not in value:
            return None
        value = value[name]
    return value


def key_of(payload: bytes, path: str | None) -> str | None:
    """The partition key of a message: its field's value as text, or None."""
    if path is None:
        return None
    value = field_of(payload, path)
    if value is None or isinstance(value, dict | list):
        return None
    return value if isinstance(value, str) else json.dumps(value)


def websocket_record(
    *,
    seq: int,
    payload: bytes,
    binary: bool,
    received: float,
    connection: int,
    key: str | None,
) -> dict[str, Any]:
    """One entry of ``records``."""
    if binary:
        data, encoded = base64.b64encode(payload).decode("ascii"), True
    else:
        data, encoded = payload.decode("utf-8", errors="replace"), False
    return {
        "sequenceNumber": str(seq),
        "partitionKey": key,
        "approximateArrivalTimestamp": round(received, 3),
        "connection": connection,
        "frameType": "binary" if binary else "text",
        "data": data,
        "isBase64Encoded": encoded,
    }


def envelope(url: str, encoded: Sequence[bytes]) -> bytes:
    """The event from already-encoded records."""
    head = b'{"eventSource":"' + EVENT_SOURCE.encode() + b'","eventSourceUrl":'
    return head + dumps(url) + b',"records":[' + b",".join(encoded) + b"]}"


def filter_view(record: dict[str, Any]) -> dict[str, Any]:
    """What filter patterns see: the record with ``data`` decoded, as Lambda filters
    Kinesis and Kafka data: JSON when it is JSON, else its text as ``NotJson`` (string
    patterns match it, a pattern on its contents never does); binary data that is not
    UTF-8 is ``UNREADABLE`` and matches no pattern on ``data``."""
    data = record.get("data")
    if not isinstance(data, str):
        return record
    text = data
    if record.get("isBase64Encoded"):
        try:
            text = base64.b64decode(data).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return {**record, "data": UNREADABLE}
    try:
        decoded: Any = json.loads(text)
    except ValueError:
        decoded = NotJson(text)
    return {**record, "data": decoded}


def sample_event(
    *,
    url: str = "wss://feed.example.com/v1",
    data: str = '{"symbol": "AAPL", "price": 187.5}',
    partition_key: str = "symbol",
    frame_type: str = "text",
    seq: int = 42,
) -> dict[str, Any]:
    """The event of one feed message (the ``sample_event`` hook): ``data`` received as a
    ``frame_type`` ``text`` or ``binary`` frame (its UTF-8 bytes, base64 in the event),
    keyed by the field ``partition_key`` of its JSON (empty: none), as the source's
    option of that name."""
    if frame_type not in ("text", "binary"):
        raise ValueError(f"frame_type {frame_type!r}: text or binary")
    payload = data.encode()
    record = websocket_record(
        seq=seq,
        payload=payload,
        binary=frame_type == "binary",
        received=time.time(),
        connection=1,
        key=key_of(payload, partition_key or None),
    )
    event: dict[str, Any] = json.loads(envelope(public_url(url), [dumps(record)]))
    return event
