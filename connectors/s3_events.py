"""The AWS S3 event notification shape, shared by every object-store source.

``s3_record(...)`` builds one record of ``{"Records": [...]}`` exactly as Amazon S3
sends it to Lambda (eventVersion 2.1): the key URL-encoded the way S3 does it
(``application/x-www-form-urlencoded``: a space becomes ``+``, ``/`` stays), the
ETag without quotes, ``size`` and ``eTag`` only for ObjectCreated events,
``versionId`` only for versioned buckets, and the bucket ARN.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote_plus

from bridge.events import iso_timestamp

__all__ = ["encode_key", "s3_record"]


def encode_key(key: str) -> str:
    """``my photos/été.jpg`` -> ``my+photos/%C3%A9t%C3%A9.jpg``."""
    return quote_plus(key, safe="/")


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
