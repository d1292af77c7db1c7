"""Options of the ``s3`` source: a bucket of an S3-compatible store (MinIO, Ceph, AWS S3)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from connectors.aws import AwsClientOptions
from connectors.s3_events import check_event_types

__all__ = ["EVENT_TYPES", "S3Source", "WebhookOptions"]

EVENT_TYPES = (
    "s3:ObjectCreated:*",
    "s3:ObjectCreated:Put",
    "s3:ObjectCreated:Post",
    "s3:ObjectCreated:Copy",
    "s3:ObjectCreated:CompleteMultipartUpload",
    "s3:ObjectRemoved:*",
    "s3:ObjectRemoved:Delete",
    "s3:ObjectRemoved:DeleteMarkerCreated",
)


class WebhookOptions(BaseModel):
    """An HTTP receiver for the store's webhook notifications (MinIO ``notify_webhook``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(ge=0, le=65535, description="port to listen on (0: any free port)")
    path: str = Field("/", description="URL path the store POSTs to")
    auth_token: str = Field(
        min_length=1,
        description="bearer token the store sends (MinIO: notify_webhook auth_token); "
        "any other request is answered 401",
    )


class S3Source(AwsClientOptions):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["s3"]
    bucket: str = Field(min_length=1, description="the bucket to watch")
    prefix: str = Field("", description="only keys starting with this")
    suffix: str = Field("", description="only keys ending with this")
    events: list[str] = Field(
        default_factory=lambda: ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
        description="S3 event types to emit",
    )
    push: bool = Field(
        True,
        description="follow MinIO's ListenBucketNotification stream (a MinIO extension); "
        "turn off for stores without it",
    )
    reconcile: bool = Field(
        True,
        description="diff a ListObjectsV2 listing against the checkpointed state at start, "
        "after every reconnect of the push stream and every reconcile_interval_seconds",
    )
    reconcile_interval_seconds: float | None = Field(
        None,
        ge=0,
        description="seconds between two reconcile listings; 0: only at start and after "
        "reconnects; unset: 5 s, or ten times as long as the last listing took when that "
        "is longer (a big bucket is not listed back to back)",
    )
    ping_seconds: int = Field(
        10,
        ge=1,
        le=300,
        description="keep-alive interval asked of the push stream (for proxies; a dead "
        "connection is found by TCP keep-alive)",
    )
    reconnect_max_seconds: float = Field(
        30.0, gt=0, description="upper bound of the push stream's reconnect backoff"
    )
    webhook: WebhookOptions | None = Field(
        None, description="also receive the store's webhook notifications (off by default)"
    )

    @field_validator("events")
    @classmethod
    def _known_events(cls, v: list[str]) -> list[str]:
        return check_event_types(v, EVENT_TYPES)

    @model_validator(mode="after")
    def _some_way_to_see_changes(self) -> S3Source:
        if not (self.push or self.reconcile or self.webhook):
            raise ValueError("push, reconcile and webhook are all off: nothing would be seen")
        return self
