"""The listing side of the ``s3`` source: what is in the bucket, page by page.

``list_objects`` walks ListObjectsV2 (1000 keys a page, in key order) and yields each
page as ``{key: ObjectState}``. The connector diffs that against the state whose events
were emitted; this works on any S3-compatible store, push API or not. A listing has
no version id, and judges "changed" by the ETag: an overwrite with identical bytes
in an unversioned bucket is not a change to a listing (push still reports it).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from connectors.aws import translate_errors
from connectors.s3.normalize import Change, ObjectState

__all__ = ["created_change", "list_objects", "removed_change"]


async def list_objects(
    client: Any, *, bucket: str, prefix: str, what: str
) -> AsyncIterator[dict[str, ObjectState]]:
    """Pages of the bucket's objects under ``prefix``; errors translated with ``what``."""
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": 1000}
        if token:
            kwargs["ContinuationToken"] = token
        with translate_errors(what):
            page = await client.list_objects_v2(**kwargs)
        yield {
            obj["Key"]: ObjectState(
                etag=str(obj.get("ETag", "")).strip('"'),
                size=int(obj.get("Size", 0)),
                last_modified=obj["LastModified"].timestamp() if "LastModified" in obj else None,
            )
            for obj in page.get("Contents", [])
        }
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            return


def created_change(key: str, state: ObjectState, sequencer: str) -> Change:
    """A listing found ``key`` new or changed: S3 would have said ``ObjectCreated:Put``."""
    return Change(
        event="ObjectCreated:Put",
        key=key,
        sequencer=sequencer,
        time=state.last_modified or time.time(),
        size=state.size,
        etag=state.etag,
    )


def removed_change(key: str, sequencer: str) -> Change:
    """A listing no longer has ``key``: ``ObjectRemoved:Delete``."""
    return Change(event="ObjectRemoved:Delete", key=key, sequencer=sequencer, time=time.time())
