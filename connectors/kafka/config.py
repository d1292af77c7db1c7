"""Options of the ``kafka`` source: a self-managed Apache Kafka cluster, with the knobs of
Lambda's self-managed Kafka event source mapping (``SelfManagedEventSource``,
``SelfManagedKafkaEventSourceConfig``, ``SourceAccessConfigurations``) in snake_case."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["KafkaSasl", "KafkaSource", "KafkaTls"]

_HOST_PORT = r"^[A-Za-z0-9]([A-Za-z0-9.\-]*[A-Za-z0-9])?:[0-9]{1,5}$"


class KafkaSasl(BaseModel):
    """SASL authentication (AWS: ``BASIC_AUTH``, ``SASL_SCRAM_256_AUTH``,
    ``SASL_SCRAM_512_AUTH``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        description="SASL mechanism"
    )
    username: str = Field(min_length=1)
    password: str = Field(min_length=1, repr=False)


class KafkaTls(BaseModel):
    """TLS to the brokers (AWS: ``SERVER_ROOT_CA_CERTIFICATE``,
    ``CLIENT_CERTIFICATE_TLS_AUTH``). Files are PEM."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ca_file: str | None = Field(None, description="CA bundle; default: the system's")
    cert_file: str | None = Field(None, description="client certificate (mutual TLS)")
    key_file: str | None = Field(None, description="the client certificate's private key")
    key_password: str | None = Field(None, repr=False)
    check_hostname: bool = Field(True, description="verify the broker's host name")

    @model_validator(mode="after")
    def _pair(self) -> KafkaTls:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("cert_file and key_file go together")
        return self


class KafkaSource(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["kafka"]
    bootstrap_servers: list[str] = Field(
        min_length=1,
        max_length=10,
        description="host:port of brokers to bootstrap from (a list or a comma-separated string)",
    )
    topics: list[str] = Field(min_length=1, description="one or more topics")
    consumer_group_id: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="consumer group; default: trigger-bridge-<mapping name> (unique per "
        "mapping, stable across restarts, as AWS uses the mapping's UUID)",
    )
    starting_position: Literal["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"] = Field(
        "TRIM_HORIZON",
        description="where a partition without a committed offset in the group starts",
    )
    starting_position_timestamp: datetime | float | None = Field(
        None, description="AT_TIMESTAMP only: ISO 8601 or epoch seconds"
    )
    client_id: str = Field("trigger-bridge", min_length=1)
    sasl: KafkaSasl | None = None
    tls: KafkaTls | bool | None = Field(
        None, description="true, or TLS options; default: plaintext"
    )
    request_timeout_seconds: float = Field(
        30.0, gt=0, le=300, description="broker calls (connect, commit, metadata)"
    )
    group_instance_id: str | bool = Field(
        True,
        description="static group membership (KIP-345): true (the default) derives an id "
        "stable for this host, state_dir and mapping, so a restarted bridge takes its "
        "partitions back at once; a string is used as it is (unique per bridge process!); "
        "false: dynamic membership",
        examples=[True, False, "orders-bridge-1"],
    )
    session_timeout_seconds: float = Field(
        10.0,
        ge=1,
        le=1800,
        description="seconds without a heartbeat before the group gives a member's "
        "partitions to the others (the broker allows 6 to 1800 by default): how long a "
        "crashed bridge's partitions wait for it (a graceful stop leaves the group at once)",
    )

    @field_validator("bootstrap_servers", mode="before")
    @classmethod
    def _split_servers(cls, v: object) -> object:
        if isinstance(v, str):
            return [s.strip() for s in v.split(",") if s.strip()]
        return v

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_port(cls, v: list[str]) -> list[str]:
        for server in v:
            if not re.match(_HOST_PORT, server):
                raise ValueError(f"{server!r} is not host:port")
        return v

    @field_validator("topics", mode="before")
    @classmethod
    def _one_topic(cls, v: object) -> object:
        return [v] if isinstance(v, str) else v

    @field_validator("topics")
    @classmethod
    def _topic_names(cls, v: list[str]) -> list[str]:
        for topic in v:
            if not re.match(r"^[A-Za-z0-9._\-]{1,249}$", topic):
                raise ValueError(f"{topic!r} is not a valid topic name")
        if len(set(v)) != len(v):
            raise ValueError("topics are listed twice")
        return v

    @field_validator("group_instance_id")
    @classmethod
    def _instance_id(cls, v: str | bool) -> str | bool:
        if isinstance(v, str) and not re.match(r"^[A-Za-z0-9._\-]{1,249}$", v):
            raise ValueError(f"{v!r}: letters, digits, '.', '_' and '-' only, 1 to 249")
        return v

    @model_validator(mode="after")
    def _timestamp(self) -> KafkaSource:
        given = self.starting_position_timestamp is not None
        if self.starting_position == "AT_TIMESTAMP" and not given:
            raise ValueError("starting_position AT_TIMESTAMP needs starting_position_timestamp")
        if self.starting_position != "AT_TIMESTAMP" and given:
            raise ValueError("starting_position_timestamp goes with starting_position AT_TIMESTAMP")
        return self

    @property
    def timestamp_ms(self) -> int | None:
        """``starting_position_timestamp`` in epoch milliseconds."""
        ts = self.starting_position_timestamp
        if ts is None:
            return None
        seconds = ts.timestamp() if isinstance(ts, datetime) else float(ts)
        return int(seconds * 1000)

    def group_id(self, mapping: str) -> str:
        return self.consumer_group_id or f"trigger-bridge-{mapping}"
