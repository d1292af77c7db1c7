"""Helpers for building AWS-shaped JSON: timestamps, ARNs, payload encoding and the
common parts of on-failure records.

AWS's camelCase keys appear here and in the connectors' ``normalize`` modules only.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from bridge.connector import FailureContext

__all__ = [
    "async_failure_record",
    "dumps",
    "envelope",
    "function_arn",
    "iso_timestamp",
    "new_request_id",
    "not_normalized_record",
    "stream_failure_base",
]


# one encoder for every call: json.dumps() with options builds a new JSONEncoder per call,
# which cost as much as the encoding itself on the per-record hot path
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def dumps(obj: Any) -> bytes:
    """Compact JSON as UTF-8 bytes (non-ASCII kept as is, as AWS sends it; a lone
    surrogate, from a file name that is not UTF-8, as its JSON escape)."""
    return _ENCODER.encode(obj).encode("utf-8", "backslashreplace")


def envelope(records: Sequence[bytes], key: str = "Records") -> bytes:
    """``{"Records":[...]}`` from already-encoded records, without re-encoding them."""
    return b'{"' + key.encode() + b'":[' + b",".join(records) + b"]}"


def iso_timestamp(epoch_seconds: float) -> str:
    """``2019-11-14T18:16:05.568Z``: ISO 8601 UTC with milliseconds, as AWS writes it."""
    dt = datetime.fromtimestamp(epoch_seconds, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def eventbridge_time(epoch_seconds: float) -> str:
    """EventBridge's event ``time``: ``2015-10-08T16:53:06Z`` (whole seconds, UTC)."""
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def eventbridge_event(
    *,
    detail_type: str,
    source: str,
    detail: Any,
    account: str,
    region: str,
    moment: float,
    resources: Sequence[str] = (),
) -> dict[str, Any]:
    """An event in EventBridge's envelope, as a bus delivers it to a rule's target (a new
    ``id`` each call; ``moment`` in epoch seconds)."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": account,
        "time": eventbridge_time(moment),
        "region": region,
        "resources": list(resources),
        "detail": detail,
    }


def function_arn(name: str, region: str, account_id: str) -> str:
    return f"arn:aws:lambda:{region}:{account_id}:function:{name}"


def new_request_id() -> str:
    return str(uuid.uuid4())


def _response_context(ctx: FailureContext) -> dict[str, Any]:
    out: dict[str, Any] = {
        "statusCode": ctx.status_code if ctx.status_code is not None else 200,
        "executedVersion": "$LATEST",
    }
    if ctx.function_error:
        out["functionError"] = ctx.function_error
    return out


def stream_failure_base(ctx: FailureContext, now: float) -> dict[str, Any]:
    """The common part of a stream/queue source's on-failure record (Kafka, DynamoDB,
    Kinesis): ``requestContext``, ``responseContext``, ``version``, ``timestamp``.
    The connector adds its ``*BatchInfo`` key."""
    return {
        "requestContext": {
            "requestId": ctx.request_id,
            "functionArn": ctx.function_arn,
            "condition": ctx.condition,
            "approximateInvokeCount": ctx.attempts,
        },
        "responseContext": _response_context(ctx),
        "version": "1.0",
        "timestamp": iso_timestamp(now),
    }


def async_failure_record(ctx: FailureContext, now: float) -> dict[str, Any]:
    """The on-failure record of an asynchronous invocation (S3 notifications):
    ``requestPayload`` is the event, ``responsePayload`` the function's error."""
    record: dict[str, Any] = {
        "version": "1.0",
        "timestamp": iso_timestamp(now),
        "requestContext": {
            "requestId": ctx.request_id,
            "functionArn": ctx.function_arn + ":$LATEST",
            "condition": ctx.condition,
            "approximateInvokeCount": ctx.attempts,
        },
        "requestPayload": _json_or_text(ctx.payload),
        "responseContext": _response_context(ctx),
    }
    if ctx.response:
        record["responsePayload"] = _json_or_text(ctx.response)
    elif ctx.error_message:
        record["responsePayload"] = {"errorMessage": ctx.error_message}
    return record


def _json_or_text(data: bytes) -> Any:
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return data.decode("utf-8", "replace")


def not_normalized_record(
    reason: str, *, function_arn: str, mapping: str, partition: str, position: Any, now: float
) -> dict[str, Any]:
    """The failure record of a record that could not be shaped into an event (it never
    reached the function): AWS's common fields, condition ``RecordNotNormalized``, the
    reason and where the record is in its source."""
    return {
        "version": "1.0",
        "timestamp": iso_timestamp(now),
        "requestContext": {
            "requestId": new_request_id(),
            "functionArn": function_arn,
            "condition": "RecordNotNormalized",
            "approximateInvokeCount": 0,
        },
        "errorMessage": reason,
        "source": {"mapping": mapping, "partition": partition, "position": str(position)},
    }
