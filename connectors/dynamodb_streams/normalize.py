"""The DynamoDB stream event record and on-failure record, exactly as Lambda's DynamoDB
event source mapping sends them.

botocore hands back typed attribute values with Python types inside (``{"B": bytes}``,
``{"BS": [bytes]}``) and a ``datetime`` for ``ApproximateCreationDateTime``; Lambda
renders binary values as base64 strings and the creation time as epoch seconds (a JSON
number, rounded down to the second as DynamoDB Streams defines it).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from bridge.errors import NormalizeError

__all__ = ["batch_info", "creation_seconds", "stream_record"]

_IMAGES = ("NewImage", "OldImage")


def _value(value: dict[str, Any]) -> dict[str, Any]:
    """One typed attribute value in Lambda's JSON form."""
    out: dict[str, Any] = {}
    for kind, v in value.items():
        if kind == "B":
            out[kind] = base64.b64encode(v).decode()
        elif kind == "BS":
            out[kind] = [base64.b64encode(b).decode() for b in v]
        elif kind == "M":
            out[kind] = _item(v)
        elif kind == "L":
            out[kind] = [_value(x) for x in v]
        else:  # S, N, BOOL, NULL, SS, NS are JSON already
            out[kind] = v
    return out


def _item(item: dict[str, Any]) -> dict[str, Any]:
    return {name: _value(value) for name, value in item.items()}


def creation_seconds(raw: dict[str, Any]) -> int | None:
    """``ApproximateCreationDateTime`` of a GetRecords record, in whole epoch seconds."""
    when = raw.get("dynamodb", {}).get("ApproximateCreationDateTime")
    if isinstance(when, datetime):
        return int(when.timestamp())
    if isinstance(when, int | float):
        return int(when)
    return None


def stream_record(raw: dict[str, Any], *, stream_arn: str, region: str) -> dict[str, Any]:
    """One record of ``{"Records": [...]}`` from a GetRecords record."""
    try:
        body = raw["dynamodb"]
        dynamodb: dict[str, Any] = {}
        seconds = creation_seconds(raw)
        if seconds is not None:
            dynamodb["ApproximateCreationDateTime"] = float(seconds)
        dynamodb["Keys"] = _item(body["Keys"])
        for image in _IMAGES:
            if image in body:
                dynamodb[image] = _item(body[image])
        dynamodb["SequenceNumber"] = body["SequenceNumber"]
        dynamodb["SizeBytes"] = body["SizeBytes"]
        dynamodb["StreamViewType"] = body["StreamViewType"]
        record: dict[str, Any] = {
            "eventID": raw["eventID"],
            "eventName": raw["eventName"],
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": region,
            "dynamodb": dynamodb,
            "eventSourceARN": stream_arn,
        }
        identity = raw.get("userIdentity")
        if identity:  # only on deletes made by Time to Live
            record["userIdentity"] = {
                "type": identity["Type"],
                "principalId": identity["PrincipalId"],
            }
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise NormalizeError(f"DynamoDB stream record without {exc}: {str(raw)[:200]}") from exc
    return record


def _arrival(seconds: int | None) -> str:
    # Lambda writes these with second precision, as the stream records carry them
    when = datetime.fromtimestamp(seconds or 0, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def batch_info(raws: Sequence[dict[str, Any]], *, shard_id: str, stream_arn: str) -> dict[str, Any]:
    """The ``DDBStreamBatchInfo`` of an on-failure record for these records (in order)."""
    first, last = raws[0], raws[-1]
    return {
        "shardId": shard_id,
        "startSequenceNumber": first["dynamodb"]["SequenceNumber"],
        "endSequenceNumber": last["dynamodb"]["SequenceNumber"],
        "approximateArrivalOfFirstRecord": _arrival(creation_seconds(first)),
        "approximateArrivalOfLastRecord": _arrival(creation_seconds(last)),
        "batchSize": len(raws),
        "streamArn": stream_arn,
    }
