"""Options of the ``websocket`` source: a client connection to a websocket feed."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["RESUME_TOKEN", "WebSocketResume", "WebSocketSource", "WebSocketSpool", "WebSocketTls"]

RESUME_TOKEN = "{resume}"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WebSocketTls(_Model):
    """TLS of a ``wss://`` feed, as the Kafka source's. Files are PEM."""

    ca_file: str | None = Field(None, description="CA bundle; default: the system's")
    cert_file: str | None = Field(None, description="client certificate (mutual TLS)")
    key_file: str | None = Field(None, description="the client certificate's private key")
    key_password: str | None = Field(None, repr=False)
    check_hostname: bool = Field(True, description="verify the server's host name")

    @model_validator(mode="after")
    def _pair(self) -> WebSocketTls:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("cert_file and key_file go together")
        return self


class WebSocketResume(_Model):
    """Resuming a feed that supports it: ``{resume}`` in ``url`` or ``open_messages`` is
    replaced, on every connect, by ``field`` of the newest message spooled (a JSON
    message's field, dotted for nested ones), or by ``initial`` before there is one."""

    field: str = Field(min_length=1, description='e.g. "seq" or "meta.offset"')
    initial: str = Field("", description="the value before any message had the field")


class WebSocketSpool(_Model):
    """The local durable log every frame is written to before the next is read."""

    max_bytes: int = Field(
        256 * 1024 * 1024,
        ge=64 * 1024,
        description="when the spool holds this much, reading pauses until deliveries free it",
    )
    fsync: Literal["frame", "batch", "interval", "never"] = Field(
        "batch",
        description="against a power cut (a kill -9 loses nothing in any mode): each frame "
        "synced before the next is read; one fsync at a time for all frames written since "
        "the last (group commit); every fsync_interval_ms; or never",
    )
    fsync_interval_ms: int = Field(100, ge=1, le=60000)


class WebSocketSource(_Model):
    type: Literal["websocket"]
    url: str = Field(description="ws:// or wss://")
    headers: dict[str, str] = Field(default_factory=dict, description="sent on every connect")
    subprotocols: list[str] = Field(default_factory=list)
    open_messages: list[str] = Field(
        default_factory=list, description="text frames sent after every connect, in order"
    )
    partition_key: str | None = Field(
        None,
        description="a field of JSON messages (dotted for nested ones): messages with the "
        "same value are delivered in order, different values in parallel; none: the whole "
        "feed is one partition",
    )
    resume: WebSocketResume | None = None
    heartbeat_seconds: float = Field(
        30.0, gt=0, description="ping this often; no pong within half of it reconnects"
    )
    connect_timeout_seconds: float = Field(10.0, gt=0)
    reconnect_initial_seconds: float = Field(0.5, gt=0)
    reconnect_max_seconds: float = Field(30.0, gt=0)
    max_message_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024, description="a bigger message reconnects"
    )
    tls: WebSocketTls | None = None
    spool: WebSocketSpool = Field(default_factory=WebSocketSpool)

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if not v.startswith(("ws://", "wss://")):
            raise ValueError("must start with ws:// or wss://")
        return v

    @model_validator(mode="after")
    def _checks(self) -> WebSocketSource:
        if self.tls is not None and not self.url.startswith("wss://"):
            raise ValueError("tls options need a wss:// url")
        uses_token = RESUME_TOKEN in self.url or any(RESUME_TOKEN in m for m in self.open_messages)
        if self.resume is not None and not uses_token:
            raise ValueError(f"resume: put {RESUME_TOKEN} in url or open_messages")
        if self.reconnect_max_seconds < self.reconnect_initial_seconds:
            raise ValueError("reconnect_max_seconds is less than reconnect_initial_seconds")
        return self
