"""Configuration of the front door: the ``apis:`` list, API Gateway's options in snake_case.

An HTTP API (``type: http``) or a WebSocket API (``type: websocket``) listens on
``host:port`` and sends each request or message to the function its route names. Route
keys are API Gateway's (``"GET /items/{id}"``, ``"ANY /static/{proxy+}"``, ``$default``;
``$connect``, ``$disconnect``, ``$default`` and custom keys for WebSocket APIs); limits and
timeouts default to API Gateway's.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bridge.config_errors import did_you_mean

__all__ = ["ApiConfig", "Cors", "EventBusConfig", "HttpApi", "WebSocketApi", "api_id"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def api_id(name: str) -> str:
    """A stable API id in AWS's shape (10 lower-case letters and digits) for an API name."""
    digest = hashlib.sha256(name.encode()).digest()
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(alphabet[b % len(alphabet)] for b in digest[:10])


class Cors(_Model):
    """An HTTP API's CORS configuration (``CorsConfiguration``)."""

    allow_origins: list[str] = Field(default_factory=list, description='e.g. ["*"]')
    allow_methods: list[str] = Field(default_factory=list, description='e.g. ["GET", "POST"]')
    allow_headers: list[str] = Field(default_factory=list)
    expose_headers: list[str] = Field(default_factory=list)
    max_age: int | None = Field(None, ge=0, le=86400, description="seconds")
    allow_credentials: bool = False

    @model_validator(mode="after")
    def _credentials(self) -> Cors:
        if self.allow_credentials and "*" in self.allow_origins:
            raise ValueError("allow_credentials cannot be true with allow_origins '*' (as AWS)")
        return self


class _Api(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(0, ge=0, le=65535, description="0 picks a free port (logged)")
    domain_name: str | None = Field(
        None,
        description="requestContext.domainName; default host:port as clients reach it "
        "(127.0.0.1 for a wildcard host)",
    )
    api_id: str | None = Field(None, pattern=r"^[a-z0-9]{10}$", description="default: from name")
    routes: dict[str, str] = Field(
        description="route key -> function name (checked with the functions, see BridgeConfig)"
    )

    def id(self) -> str:
        return self.api_id or api_id(self.name)


class HttpApi(_Api):
    """An API Gateway HTTP API: requests are answered with the function's response."""

    type: Literal["http"]
    payload_format_version: Literal["1.0", "2.0"] = "2.0"
    stage: str = Field("$default", description="requestContext.stage")
    stage_variables: dict[str, str] = Field(default_factory=dict)
    timeout_in_millis: int = Field(
        30000, ge=50, le=30000, description="integration timeout (HTTP APIs: 30 s at most)"
    )
    throttling_burst_limit: int | None = Field(
        None, ge=0, description="requests at once beyond the rate (429 past it); none: no limit"
    )
    throttling_rate_limit: float | None = Field(None, ge=0, description="requests per second")
    cors: Cors | None = None

    @field_validator("payload_format_version", mode="before")
    @classmethod
    def _version_text(cls, v: object) -> object:
        return str(v) if isinstance(v, float | int) else v  # YAML reads 2.0 as a float

    @model_validator(mode="after")
    def _throttling(self) -> HttpApi:
        if (self.throttling_rate_limit is None) != (self.throttling_burst_limit is None):
            raise ValueError("throttling_burst_limit and throttling_rate_limit go together")
        return self


class WebSocketApi(_Api):
    """An API Gateway WebSocket API, with the ``@connections`` API for callbacks."""

    type: Literal["websocket"]
    stage: str = Field("dev", pattern=r"^[A-Za-z0-9_-]{1,128}$")
    route_selection_expression: str = "$request.body.action"
    timeout_in_millis: int = Field(29000, ge=50, le=29000, description="integration timeout")
    two_way: bool | list[str] = Field(
        True,
        description="routes whose function's answer body goes back to the client (routes "
        "with a $default route response in API Gateway): true for all, or a list of route "
        "keys; false for none, API Gateway's default for a route made without one",
    )
    idle_timeout_seconds: float = Field(600, gt=0, le=600, description="API Gateway: 10 min")
    max_connection_seconds: float = Field(7200, gt=0, le=7200, description="API Gateway: 2 h")

    @model_validator(mode="after")
    def _routes(self) -> WebSocketApi:
        from bridge.front.ws_events import validate_selection_expression

        validate_selection_expression(self.route_selection_expression)
        predefined = ("$connect", "$disconnect", "$default")
        for key in self.routes:
            if key.startswith("$") and key not in predefined:
                raise ValueError(
                    f"route {key!r}: the predefined routes are $connect, $disconnect, $default"
                    + did_you_mean(key, predefined)
                )
            if not key or len(key) > 128:
                raise ValueError(f"route {key!r}: 1 to 128 characters")
        if isinstance(self.two_way, list):
            unknown = [key for key in self.two_way if key not in self.routes]
            if unknown:
                hint = did_you_mean(unknown[0], self.routes) if len(unknown) == 1 else ""
                raise ValueError(f"two_way: {', '.join(unknown)} not among the routes{hint}")
        return self

    def is_two_way(self, route: str) -> bool:
        """Whether ``route``'s answer body goes back to the client."""
        return self.two_way if isinstance(self.two_way, bool) else route in self.two_way


ApiConfig = Annotated[HttpApi | WebSocketApi, Field(discriminator="type")]


class EventBusConfig(_Model):
    """An EventBridge-compatible event bus: the bridge serves ``PutEvents`` (and
    ``ListRules``, ``DescribeRule``) on ``host:port``; ``eventbridge`` mappings naming it
    are its rules."""

    name: str = Field(pattern=r"^[\.\-_A-Za-z0-9]{1,256}$", description='e.g. "default"')
    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(0, ge=0, le=65535, description="0 picks a free port (logged)")
    spool_max_bytes: int = Field(
        256 * 1024 * 1024,
        ge=64 * 1024,
        description="per rule: events stored and not yet delivered; while a rule's spool "
        "holds this much, PutEvents entries for it fail with ThrottlingException",
    )
