"""The SQS event record, exactly as Lambda's SQS event source mapping sends it."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from typing import Any

from bridge.errors import NormalizeError
from bridge.events import dumps, envelope
from bridge.filtering import NotJson

__all__ = ["filter_view", "sample_event", "sqs_record"]


def _attribute(value: dict[str, Any]) -> dict[str, Any]:
    """A message attribute in Lambda's spelling: camelCase, binary as base64, and the
    (always empty) list fields."""
    out: dict[str, Any] = {}
    if "StringValue" in value:
        out["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        out["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
    out["stringListValues"] = list(value.get("StringListValues", []))
    out["binaryListValues"] = [
        base64.b64encode(v).decode() for v in value.get("BinaryListValues", [])
    ]
    out["dataType"] = value["DataType"]
    return out


def sqs_record(message: dict[str, Any], *, queue_arn: str, region: str) -> dict[str, Any]:
    """One record of ``{"Records": [...]}`` from a ReceiveMessage message."""
    try:
        record: dict[str, Any] = {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": {k: str(v) for k, v in message.get("Attributes", {}).items()},
            "messageAttributes": {
                name: _attribute(value)
                for name, value in message.get("MessageAttributes", {}).items()
            },
        }
        if "MD5OfMessageAttributes" in message:
            record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
        record["md5OfBody"] = message["MD5OfBody"]
    except (KeyError, TypeError) as exc:
        raise NormalizeError(f"SQS message without {exc}: {str(message)[:200]}") from exc
    record["eventSource"] = "aws:sqs"
    record["eventSourceARN"] = queue_arn
    record["awsRegion"] = region
    return record


def filter_view(event: dict[str, Any]) -> dict[str, Any]:
    """What filter patterns see: the record, with ``body`` decoded when it is JSON, else
    as ``NotJson`` text (as Lambda does: a pattern on body fields never matches a
    plain-text body, not even ``exists: false``; string patterns on the body do)."""
    body = event.get("body")
    if not isinstance(body, str):
        return event
    try:
        decoded: Any = json.loads(body)
    except ValueError:
        decoded = NotJson(body)
    return {**event, "body": decoded}


def sample_event(
    *,
    queue: str = "my-queue",
    body: str = '{"hello": "world"}',
    region: str = "us-east-1",
    account: str = "000000000000",
) -> dict[str, Any]:
    """The event of one message of ``queue`` (the ``sample_event`` hook): a name ending
    in ``.fifo`` is a FIFO queue, whose messages also carry their group, deduplication id
    and sequence number."""
    now = str(int(time.time() * 1000))
    digest = hashlib.md5(body.encode(), usedforsecurity=False).hexdigest()
    attributes = {"ApproximateReceiveCount": "1", "SentTimestamp": now}
    if queue.endswith(".fifo"):
        attributes |= {"SequenceNumber": "18849496460467696128", "MessageGroupId": "group-1"}
    attributes["SenderId"] = "AIDAIENQZJOLO23YVJ4VO"
    if queue.endswith(".fifo"):
        attributes["MessageDeduplicationId"] = digest
    attributes["ApproximateFirstReceiveTimestamp"] = now
    message = {
        "MessageId": str(uuid.uuid4()),
        "ReceiptHandle": base64.b64encode(uuid.uuid4().bytes * 2).decode(),
        "MD5OfBody": digest,
        "Body": body,
        "Attributes": attributes,
    }
    arn = f"arn:aws:sqs:{region}:{account}:{queue}"
    record = sqs_record(message, queue_arn=arn, region=region)
    event: dict[str, Any] = json.loads(envelope([dumps(record)]))
    return event
