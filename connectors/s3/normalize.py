"""What the ``s3`` source knows about one change, and how it becomes an AWS S3 event.

A ``Change`` is the dialect-free form of one object change, whichever way it was
seen: a MinIO notification record (push stream or webhook, parsed by
``from_minio``) or a difference found by a listing (built by the reconcile). The
AWS shape itself is ``connectors.s3_events.s3_record``: one place for every
object-store source.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus

__all__ = ["AWS_EVENT_NAMES", "Change", "ObjectState", "from_minio"]

#: the object events S3 sends; MinIO also files tagging, retention and no-op deletes
#: under ObjectCreated/ObjectRemoved (``ObjectCreated:PutTagging``...), AWS never does
AWS_EVENT_NAMES = frozenset(
    {
        "ObjectCreated:Put",
        "ObjectCreated:Post",
        "ObjectCreated:Copy",
        "ObjectCreated:CompleteMultipartUpload",
        "ObjectRemoved:Delete",
        "ObjectRemoved:DeleteMarkerCreated",
    }
)


@dataclass(frozen=True, slots=True)
class ObjectState:
    """The version of an object an event was emitted for.

    Two states are the same object when their ETags match and, where both are
    known, their version ids match (a listing has no version id).
    """

    etag: str
    size: int
    last_modified: float | None = None
    version_id: str | None = None

    def same_as(self, other: ObjectState) -> bool:
        if self.etag != other.etag:
            return False
        return not (self.version_id and other.version_id and self.version_id != other.version_id)

    def dumps(self) -> str:
        return json.dumps([self.etag, self.size, self.last_modified, self.version_id])

    @classmethod
    def loads(cls, text: str) -> ObjectState:
        etag, size, last_modified, version_id = json.loads(text)
        return cls(str(etag), int(size), last_modified, version_id)


@dataclass(frozen=True, slots=True)
class Change:
    """One object change. ``event`` is AWS's name without ``s3:``
    (``ObjectCreated:Put``); ``key`` is the decoded object key."""

    event: str
    key: str
    sequencer: str
    time: float
    size: int | None = None
    etag: str | None = None
    version_id: str | None = None
    principal: str = "trigger-bridge"
    source_ip: str = "127.0.0.1"
    request_id: str = ""

    @property
    def created(self) -> bool:
        return self.event.startswith("ObjectCreated")

    @property
    def state(self) -> ObjectState | None:
        """The object state after this change; None when it removed the object."""
        if not self.created:
            return None
        return ObjectState(self.etag or "", self.size or 0, self.time, self.version_id)


def from_minio(record: Mapping[str, Any], *, key_escaped: bool) -> tuple[str, Change]:
    """``(bucket, change)`` from one record of a MinIO notification.

    MinIO writes ``eventVersion`` 2.0, ``eventSource`` ``minio:s3`` and an ``s3:``
    prefix on ``eventName``. Its notification targets (webhook...) URL-encode keys
    (``url.QueryEscape``: ``/`` as ``%2F``), its listen stream does not:
    ``key_escaped`` says which. The key is kept decoded here and encoded the AWS way
    when the event is built, exactly once. Raises ``ValueError`` for a record that is
    not an object event.
    """
    try:
        s3 = record["s3"]
        obj = s3["object"]
        name = str(record["eventName"]).removeprefix("s3:")
        if not name.startswith(("ObjectCreated:", "ObjectRemoved:")):
            raise ValueError(f"not an object event: {name}")
        when = datetime.fromisoformat(str(record["eventTime"])).timestamp()
        size = obj.get("size")
        change = Change(
            event=name,
            key=unquote_plus(str(obj["key"])) if key_escaped else str(obj["key"]),
            sequencer=str(obj.get("sequencer") or ""),
            time=when,
            size=int(size) if size is not None else None,
            etag=str(obj["eTag"]).strip('"') if obj.get("eTag") else None,
            version_id=str(obj["versionId"]) if obj.get("versionId") else None,
            principal=str(record.get("userIdentity", {}).get("principalId") or "trigger-bridge"),
            source_ip=str(
                record.get("requestParameters", {}).get("sourceIPAddress") or "127.0.0.1"
            ),
            request_id=str(record.get("responseElements", {}).get("x-amz-request-id") or ""),
        )
        return str(s3["bucket"]["name"]), change
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"malformed notification record: {exc!r}") from exc
