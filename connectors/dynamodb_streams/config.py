"""Options of the ``dynamodb_streams`` source."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from connectors.aws import AwsClientOptions


class DynamoDBStreamsSource(AwsClientOptions):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["dynamodb_streams"]
    table_name: str | None = Field(
        None, description="the table; its current stream (LatestStreamArn) is read"
    )
    stream_arn: str | None = Field(None, description="or the stream's ARN")
    starting_position: Literal["TRIM_HORIZON", "LATEST"] = Field(
        description="where a mapping without a checkpoint starts: the oldest record "
        "kept (TRIM_HORIZON) or only records written from now on (LATEST)"
    )
    poll_interval_seconds: float = Field(
        0.25, gt=0, le=60, description="seconds between GetRecords calls on a busy shard"
    )
    max_idle_poll_interval_seconds: float = Field(
        2.0,
        gt=0,
        le=60,
        description="an idle shard is polled less often, doubling up to this many seconds",
    )
    shard_refresh_interval_seconds: float = Field(
        30.0, gt=0, le=3600, description="seconds between DescribeStream calls for new shards"
    )

    @model_validator(mode="after")
    def _one_stream(self) -> DynamoDBStreamsSource:
        if bool(self.table_name) == bool(self.stream_arn):
            raise ValueError("give exactly one of table_name or stream_arn")
        if self.max_idle_poll_interval_seconds < self.poll_interval_seconds:
            raise ValueError("max_idle_poll_interval_seconds must be >= poll_interval_seconds")
        return self
