"""Options of the ``local_dir`` source: a folder that behaves like an S3 bucket."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from connectors.s3_events import check_event_types

EVENT_TYPES = (
    "s3:ObjectCreated:*",
    "s3:ObjectCreated:Put",
    "s3:ObjectRemoved:*",
    "s3:ObjectRemoved:Delete",
)


class LocalDirSource(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["local_dir"]
    path: str = Field(description="the folder to watch; relative to the working directory")
    bucket: str | None = Field(None, description="bucket name in events; default: folder name")
    prefix: str = Field("", description="only keys starting with this")
    suffix: str = Field("", description="only keys ending with this")
    events: list[str] = Field(
        default_factory=lambda: ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
        description="S3 event types to emit",
    )
    include_hidden: bool = Field(False, description="also files/folders whose name starts with .")
    create: bool = Field(True, description="create the folder if it does not exist")
    force_polling: bool = Field(False, description="poll instead of inotify (network mounts)")
    rescan_interval_seconds: float = Field(
        30.0, ge=0, description="full rescan period, a safety net under the watcher; 0: never"
    )

    @field_validator("events")
    @classmethod
    def _known_events(cls, v: list[str]) -> list[str]:
        return check_event_types(v, EVENT_TYPES)
