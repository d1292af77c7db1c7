"""Options of the ``schedule`` source."""

from __future__ import annotations

from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bridge.config_errors import did_you_mean
from connectors.schedule.expressions import ScheduleExpressionError, parse

__all__ = ["ScheduleSource"]


class ScheduleSource(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["schedule"]
    expression: str = Field(
        description="rate(5 minutes), cron(0 2 * * ? *) or at(2026-12-24T18:00:00); "
        "rate() also takes seconds here (an extension: AWS's smallest unit is the minute)"
    )
    timezone: str = Field("UTC", description="IANA name; cron() and at() are read in it")
    input: Any = Field(
        None, description="a JSON value sent instead of the Scheduled Event (as a rule's Input)"
    )
    missed: Literal["skip", "latest", "all"] = Field(
        "latest",
        description="times that came due while the bridge was not running: none of them, "
        "the newest, or every one (oldest first, at most 10,000)",
    )
    rule_name: str | None = Field(
        None,
        pattern=r"^[\.\-_A-Za-z0-9]{1,64}$",
        description="the rule in the event's resources ARN; default: the mapping's name",
    )

    @field_validator("expression")
    @classmethod
    def _expression(cls, v: str) -> str:
        try:
            parse(v, allow_seconds=True)
        except ScheduleExpressionError as exc:
            raise ValueError(str(exc)) from None
        return v

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            hint = did_you_mean(v, available_timezones())
            raise ValueError(
                f"unknown time zone {v!r} (an IANA name, e.g. Europe/Berlin){hint}"
            ) from None
        return v
