"""Options of the ``eventbridge`` source: a rule of an event bus the bridge serves."""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bridge.filtering import FilterPatternError, compile_pattern

__all__ = ["EventBridgeSource", "InputTransformer", "pattern_text"]

_PATH = re.compile(r"^\$(\.[A-Za-z0-9_\-]+)*$")


def pattern_text(pattern: str | dict[str, Any]) -> str:
    """The pattern as JSON text (as AWS stores ``EventPattern``)."""
    return pattern if isinstance(pattern, str) else json.dumps(pattern, separators=(",", ":"))


class InputTransformer(BaseModel):
    """A rule target's ``InputTransformer``: values picked from the event by
    ``input_paths_map`` (``$.detail.id``...), put into ``input_template`` at ``<name>``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_paths_map: dict[str, str] = Field(default_factory=dict, max_length=100)
    input_template: str = Field(min_length=1, max_length=8192)

    @field_validator("input_paths_map")
    @classmethod
    def _paths(cls, v: dict[str, str]) -> dict[str, str]:
        for name, path in v.items():
            if not re.fullmatch(r"[A-Za-z0-9_\-]{1,256}", name):
                raise ValueError(f"input_paths_map: {name!r} is not a valid name")
            if name.startswith("aws."):
                raise ValueError(f"input_paths_map: {name!r}: names starting aws. are reserved")
            if not _PATH.fullmatch(path):
                raise ValueError(
                    f"input_paths_map.{name}: {path!r} is not a JSON path like $.detail.id"
                )
        return v


class EventBridgeSource(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["eventbridge"]
    event_bus_name: str = Field("default", description="one of the config's event_buses")
    event_pattern: str | dict[str, Any] = Field(
        description="EventBridge's pattern language (JSON text or YAML)"
    )
    input: Any = Field(None, description="a JSON value sent instead of the event")
    input_path: str | None = Field(None, description="the part of the event sent, e.g. $.detail")
    input_transformer: InputTransformer | None = None

    @field_validator("event_pattern")
    @classmethod
    def _pattern(cls, v: str | dict[str, Any]) -> str | dict[str, Any]:
        try:
            compile_pattern(v, dialect="eventbridge")
        except FilterPatternError as exc:
            raise ValueError(str(exc)) from None
        return v

    @field_validator("input_path")
    @classmethod
    def _input_path(cls, v: str | None) -> str | None:
        if v is not None and not _PATH.fullmatch(v):
            raise ValueError(f"{v!r} is not a JSON path like $.detail")
        return v

    @model_validator(mode="after")
    def _one_input(self) -> EventBridgeSource:
        given = [
            self.input is not None,
            self.input_path is not None,
            self.input_transformer is not None,
        ]
        if sum(given) > 1:
            raise ValueError("input, input_path and input_transformer exclude each other")
        return self
