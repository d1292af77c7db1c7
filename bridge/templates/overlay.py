"""The overlay: where a template's AWS resources are on this machine.

A small YAML file (``--overlay local.yaml``)::

    region: us-east-1
    endpoints: {sqs: http://127.0.0.1:4566, dynamodb: http://127.0.0.1:8000, s3: http://127.0.0.1:9000}
    kafka: {bootstrap_servers: [127.0.0.1:9092]}

Everything is optional: without an endpoint a source talks to AWS itself. Credentials are
the usual AWS environment variables (or profile) of the bridge, and functions the bridge
runs get them too. ``${VAR}`` and ``${VAR:-default}`` read the environment, as in
``bridge.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bridge._yaml import load_yaml
from bridge.config_errors import describe, report
from bridge.errors import ConfigError

__all__ = ["Overlay", "load_overlay"]

Service = Literal["sqs", "dynamodb", "s3", "lambda"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaOverlay(_Model):
    """The cluster that stands for the template's (MSK clusters, self-managed servers)."""

    bootstrap_servers: list[str] | None = Field(
        None, description="replaces the template's servers; required for MSK events"
    )
    sasl: dict[str, Any] | None = Field(None, description="as the kafka source's sasl")
    tls: dict[str, Any] | bool | None = Field(None, description="as the kafka source's tls")

    @field_validator("bootstrap_servers", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        return [s.strip() for s in v.split(",") if s.strip()] if isinstance(v, str) else v


class Overlay(_Model):
    region: str = "us-east-1"
    account_id: str = Field("000000000000", pattern=r"^\d{12}$")
    stack_name: str | None = Field(None, description="AWS::StackName; default: the folder's name")
    endpoints: dict[Service, str] = Field(
        default_factory=dict, description="service -> endpoint URL (LocalStack, MinIO...)"
    )
    kafka: KafkaOverlay | None = None
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="template parameters (--parameter-overrides win)"
    )
    names: dict[str, str] = Field(
        default_factory=dict,
        description="logical id or name -> the resource's name here (a queue, table, bucket)",
    )
    local_dirs: dict[str, str] = Field(
        default_factory=dict, description="bucket (logical id or name) -> a folder standing for it"
    )
    destinations: dict[str, str] = Field(
        default_factory=dict, description="destination ARN -> on_failure URI (file://, sqs://...)"
    )
    functions: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="function -> a functions: entry (with type), or options merged into the "
        "derived one; endpoint_url alone makes it a lambda function, url an http one",
    )
    apis: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="API -> options merged into it (host, port...)"
    )
    event_buses: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="bus -> options merged into it (host, port...)"
    )
    bridge: dict[str, Any] = Field(
        default_factory=dict,
        description="top-level keys of the bridge config (state_dir, admin, retry_backoff...)",
    )

    def name(self, name: str) -> str:
        """The local name of a resource named ``name`` in the template."""
        return self.names.get(name, name)


def load_overlay(path: str | Path | None) -> Overlay:
    """The overlay file's content (an empty overlay for None); ConfigError names file:line."""
    if path is None:
        return Overlay()
    filename = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read overlay: {exc.strerror}", where=filename) from exc
    data, lines = load_yaml(text, filename)
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping (region:, endpoints:, ...)", where=filename)
    try:
        return Overlay.model_validate(data)
    except ValidationError as exc:
        problems = [describe(err, data, Overlay) for err in exc.errors()]
        raise report(problems, filename, lines) from None
