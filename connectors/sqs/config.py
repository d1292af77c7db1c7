"""Options of the ``sqs`` source."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from connectors.aws import AwsClientOptions


class SqsSource(AwsClientOptions):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["sqs"]
    queue_url: str | None = Field(None, description="the queue's URL")
    queue_name: str | None = Field(None, description="or its name, looked up at endpoint_url")
    wait_time_seconds: int = Field(20, ge=0, le=20, description="long polling")
    visibility_timeout: int | None = Field(
        None,
        ge=1,
        le=43200,
        description="seconds a received message stays hidden and is extended by while "
        "its batch is delivered; default: the queue's own",
    )
    pollers: int = Field(2, ge=1, le=50, description="concurrent ReceiveMessage calls")

    @model_validator(mode="after")
    def _one_queue(self) -> SqsSource:
        if bool(self.queue_url) == bool(self.queue_name):
            raise ValueError("give exactly one of queue_url or queue_name")
        return self
