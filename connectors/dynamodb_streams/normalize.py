"""The DynamoDB stream event record and on-failure record, exactly as Lambda's DynamoDB
event source mapping sends them.

botocore hands back typed attribute values with Python types inside (``{"B": bytes}``,
``{"BS": [bytes]}``) and a ``datetime`` for ``ApproximateCreationDateTime``; Lambda
renders binary values as base64 strings and the creation time as epoch seconds (a JSON
number, rounded down to the second as DynamoDB Streams defines it).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from bridge.errors import NormalizeError
from bridge.events import dumps, envelope

__all__ = ["batch_info", "creation_seconds", "keys_json", "sample_event", "stream_record"]

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


def keys_json(raw: dict[str, Any]) -> bytes:
    """The record's ``dynamodb.Keys`` as canonical JSON (Lambda's form, names sorted, no
    spaces): the same bytes for every change of one item, in every process. Raises
    ``KeyError``/``TypeError`` for a record without keys."""
    keys = _item(raw["dynamodb"]["Keys"])
    return json.dumps(keys, sort_keys=True, separators=(",", ":")).encode()


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


def _typed(value: Any) -> dict[str, Any]:
    """A plain JSON value as a typed attribute value (``101`` -> ``{"N": "101"}``)."""
    if isinstance(value, bool):
        return {"BOOL": value}
    if value is None:
        return {"NULL": True}
    if isinstance(value, int | float):
        return {"N": json.dumps(value)}
    if isinstance(value, list):
        return {"L": [_typed(v) for v in value]}
    if isinstance(value, dict):
        return {"M": {k: _typed(v) for k, v in value.items()}}
    return {"S": str(value)}


_SAMPLE_IMAGES = {"INSERT": ("NewImage",), "MODIFY": ("NewImage", "OldImage"),
                  "REMOVE": ("OldImage",)}  # fmt: skip


def sample_event(
    *,
    table: str = "ExampleTable",
    event_name: str = "INSERT",
    keys: dict[str, Any] | None = None,
    new_image: dict[str, Any] | None = None,
    old_image: dict[str, Any] | None = None,
    region: str = "us-east-1",
    account: str = "000000000000",
) -> dict[str, Any]:
    """The event of one change of an item of ``table`` (the ``sample_event`` hook), of a
    stream with view type NEW_AND_OLD_IMAGES: ``event_name`` INSERT (new image), MODIFY
    (both) or REMOVE (old image). ``keys`` and the images are plain JSON objects (typed in
    the event: ``{"Id": 101}`` is ``{"Id": {"N": "101"}}``), by default ``{"Id": 101}`` and
    the keys plus a message. ``SizeBytes`` is an estimate."""
    images = _SAMPLE_IMAGES.get(event_name)
    if images is None:
        raise ValueError(f"event_name {event_name!r}: one of INSERT, MODIFY, REMOVE")
    keys = {"Id": 101} if keys is None else keys
    for name, value in (("keys", keys), ("new_image", new_image), ("old_image", old_image)):
        if value is not None and not isinstance(value, dict):
            raise ValueError(f'{name}: a JSON object of attributes, e.g. {{"Id": 101}}')
    given = {
        "NewImage": {**keys, "Message": "New item!"} if new_image is None else new_image,
        "OldImage": {**keys, "Message": "Old item"} if old_image is None else old_image,
    }
    now = time.time()
    body: dict[str, Any] = {
        "ApproximateCreationDateTime": datetime.fromtimestamp(now, UTC),
        "Keys": _typed(keys)["M"],
    }
    for image in images:
        body[image] = _typed(given[image])["M"]
    body["SequenceNumber"] = str(int(now * 1_000_000))
    body["SizeBytes"] = len(dumps([keys, *(given[i] for i in images)]))
    body["StreamViewType"] = "NEW_AND_OLD_IMAGES"
    raw = {
        "eventID": hashlib.md5(dumps(body["SequenceNumber"]), usedforsecurity=False).hexdigest(),
        "eventName": event_name,
        "dynamodb": body,
    }
    label = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    arn = f"arn:aws:dynamodb:{region}:{account}:table/{table}/stream/{label}"
    record = stream_record(raw, stream_arn=arn, region=region)
    event: dict[str, Any] = json.loads(envelope([dumps(record)]))
    return event
