"""The AWS S3 event notification shape, shared by every object-store source.

``s3_record(...)`` builds one record of ``{"Records": [...]}`` exactly as Amazon S3
sends it to Lambda (eventVersion 2.1): the key URL-encoded the way S3 does it
(``application/x-www-form-urlencoded``: a space becomes ``+``, ``/`` stays), the
ETag without quotes, ``size`` and ``eTag`` only for ObjectCreated events,
``versionId`` only for versioned buckets, and the bucket ARN.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import quote_plus

from bridge.connector import FailureContext
from bridge.events import async_failure_record, dumps, envelope, iso_timestamp

__all__ = [
    "ASYNC_INVOCATION_DEFAULTS",
    "check_async_invocation",
    "check_event_types",
    "encode_key",
    "s3_async_failure_record",
    "s3_record",
    "sample_event",
]

# S3 invokes functions asynchronously, one record per event: AWS retries twice and
# keeps an event for up to 6 hours
ASYNC_INVOCATION_DEFAULTS: dict[str, Any] = {
    "batch_size": 1,
    "maximum_batching_window_seconds": 0.0,
    "maximum_retry_attempts": 2,
    "maximum_record_age_seconds": 21600,
    "maximum_concurrency": 10,
}


def check_async_invocation(
    options: dict[str, Any],
    *,
    max_retries: int = 2,
    max_age: int = 21600,
    what: str = "asynchronous invocation",
) -> list[tuple[str, str]]:
    """What AWS rejects in an asynchronous invocation configuration (PutFunctionEventInvokeConfig:
    MaximumRetryAttempts 0 to 2, MaximumEventAgeInSeconds at most 21600), for the sources
    whose delivery is asynchronous invocation's; an EventBridge target's RetryPolicy allows
    0 to 185 and 86400 (``max_retries``, ``max_age``). Ages under AWS's 60 s minimum are
    allowed: tests and local runs want short ones."""
    problems: list[tuple[str, str]] = []
    retries = options.get("maximum_retry_attempts")
    if (
        isinstance(retries, int)
        and not isinstance(retries, bool)
        and not 0 <= retries <= max_retries
    ):
        problems.append(("maximum_retry_attempts", f"must be between 0 and {max_retries} ({what})"))
    age = options.get("maximum_record_age_seconds")
    if isinstance(age, int) and not isinstance(age, bool) and not 0 < age <= max_age:
        problems.append(
            ("maximum_record_age_seconds", f"must be between 1 and {max_age} seconds ({what})")
        )
    return problems


# the engine's stream-style conditions, in the words of asynchronous invocation
_ASYNC_CONDITIONS = {
    "RetryAttemptsExhausted": "RetriesExhausted",
    "RecordAgeExceeded": "EventAgeExceeded",
}


def s3_async_failure_record(ctx: FailureContext) -> dict[str, Any]:
    """The on-failure record of an asynchronous (S3) invocation."""
    condition = _ASYNC_CONDITIONS.get(ctx.condition, ctx.condition)
    return async_failure_record(replace(ctx, condition=condition), time.time())


def check_event_types(events: Sequence[str], allowed: Sequence[str]) -> list[str]:
    """Validate a source's ``events`` option (for a pydantic validator)."""
    for event in events:
        if event not in allowed:
            raise ValueError(f"unknown event type {event!r} (expected one of {tuple(allowed)})")
    if not events:
        raise ValueError("needs at least one event type")
    return list(events)


def encode_key(key: str) -> str:
    """``my photos/été.jpg`` -> ``my+photos/%C3%A9t%C3%A9.jpg``. Keys are bytes to S3: a
    file name that is not UTF-8 (undecodable bytes kept as surrogates, as Python's file
    APIs give them) is encoded byte for byte, ``bad\\udcff.txt`` -> ``bad%FF.txt``."""
    return quote_plus(key.encode("utf-8", "surrogateescape"), safe="/")


def s3_record(
    *,
    event_name: str,
    bucket: str,
    key: str,
    sequencer: str,
    event_time: float,
    region: str,
    size: int | None = None,
    etag: str | None = None,
    version_id: str | None = None,
    principal: str = "trigger-bridge",
    source_ip: str = "127.0.0.1",
    request_id: str = "",
    configuration_id: str = "trigger-bridge",
) -> dict[str, Any]:
    obj: dict[str, Any] = {"key": encode_key(key)}
    if event_name.startswith("ObjectCreated"):
        obj["size"] = size if size is not None else 0
        if etag is not None:
            obj["eTag"] = etag.strip('"')
    if version_id:
        obj["versionId"] = version_id
    obj["sequencer"] = sequencer
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": region,
        "eventTime": iso_timestamp(event_time),
        "eventName": event_name,
        "userIdentity": {"principalId": principal},
        "requestParameters": {"sourceIPAddress": source_ip},
        "responseElements": {
            "x-amz-request-id": request_id or sequencer[-16:],
            "x-amz-id-2": f"trigger-bridge/{sequencer}",
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": configuration_id,
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": principal},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": obj,
        },
    }


def sample_event(
    *,
    bucket: str = "example-bucket",
    key: str = "uploads/hello world.txt",
    event_name: str = "ObjectCreated:Put",
    size: int = 1024,
    region: str = "us-east-1",
) -> dict[str, Any]:
    """The event of one object change (the ``sample_event`` hook of the object-store
    sources): ``key`` as the object is named (it is URL-encoded in the event, as S3 does),
    ``event_name`` as AWS spells it without ``s3:`` (``ObjectRemoved:Delete``...), ``size``
    in bytes (ObjectCreated events only)."""
    if not event_name.startswith(("ObjectCreated:", "ObjectRemoved:")):
        raise ValueError(
            f"event_name {event_name!r}: an S3 object event, e.g. ObjectCreated:Put or "
            "ObjectRemoved:Delete"
        )
    now = time.time()
    record = s3_record(
        event_name=event_name,
        bucket=bucket,
        key=key,
        sequencer=f"{time.time_ns():016X}",
        event_time=now,
        region=region,
        size=size,
        etag="0123456789abcdef0123456789abcdef",
    )
    event: dict[str, Any] = json.loads(envelope([dumps(record)]))
    return event
