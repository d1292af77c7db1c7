"""Configuration: named functions (targets) and event source mappings, from YAML.

Mapping options carry AWS's event-source-mapping names in snake_case
(``BatchSize`` -> ``batch_size``) and AWS's per-source defaults, which each
connector declares in ``defaults``. Unknown keys are errors. Every error names the
file, the line and the key path, and says what was expected.

``load_config(path)`` is the one entry point; it raises ``ConfigError`` (its
message may list several problems, one per line).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from bridge._yaml import load_yaml
from bridge.errors import ConfigError
from bridge.filtering import FilterPatternError, FilterSet
from bridge.front.config import ApiConfig, EventBusConfig, HttpApi, WebSocketApi

__all__ = [
    "BridgeConfig",
    "FunctionConfig",
    "HttpFunction",
    "LambdaFunction",
    "MappingConfig",
    "RuntimeFunction",
    "load_config",
    "parse_config",
]

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # Lambda's synchronous invoke request limit


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- functions (targets)


class LambdaFunction(_Model):
    """The Lambda Invoke API: AWS, LocalStack, or the Runtime Interface Emulator."""

    type: Literal["lambda"]
    function_name: str | None = Field(None, description="defaults to the function's key")
    endpoint_url: str | list[str] | None = Field(
        None, description="base URL(s); several emulator instances share the load"
    )
    region: str | None = None
    qualifier: str | None = None
    emulator: bool = Field(
        False,
        description="the endpoint is aws-lambda-rie: one invocation at a time per endpoint, "
        "errors detected from the body",
    )
    concurrency: int | None = Field(None, ge=1, le=1000)
    timeout: float = Field(900.0, gt=0, description="seconds to wait for one invoke")
    sign_requests: bool | None = Field(
        None, description="SigV4-sign requests; default: only when no endpoint_url is set"
    )
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None


class RuntimeFunction(_Model):
    """The bridge serves the Lambda Runtime API and (optionally) runs the function."""

    type: Literal["runtime"]
    command: list[str] | None = Field(None, description="e.g. python -m awslambdaric app.handler")
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    inherit_env: bool | list[str] = Field(
        False,
        description="also pass the bridge's own environment to the function: true for all "
        "of it, or a list of variable names; by default a function gets only its env, "
        "Lambda's variables, PATH and LANG, as in Lambda",
    )
    handler: str | None = None
    concurrency: int = Field(1, ge=1, le=256, description="function processes")
    timeout: float = Field(3.0, gt=0, le=900, description="seconds, as Lambda's Timeout")
    memory_size: int = Field(128, ge=128, le=10240)
    host: str = "127.0.0.1"
    port: int = Field(
        0, ge=0, le=65535, description="the shared address, only without command; 0 picks one"
    )
    require_key: bool = Field(
        False,
        description="without command: every runtime must use the keyed address (written to "
        "<state_dir>/runtime/<function>.address), even processes of the bridge's own user",
    )

    @model_validator(mode="after")
    def _port_needs_no_command(self) -> RuntimeFunction:
        if self.command and self.port:
            raise ValueError(
                "port: the bridge serves no shared address when it runs the function "
                "(command); each of its processes gets an endpoint of its own"
            )
        return self

    @field_validator("command", mode="before")
    @classmethod
    def _split_command(cls, v: Any) -> Any:
        return shlex.split(v) if isinstance(v, str) else v

    @field_validator("env", mode="before")
    @classmethod
    def _stringify_env(cls, v: Any) -> Any:
        if isinstance(v, Mapping):
            return {str(k): "" if x is None else str(x) for k, x in v.items()}
        return v


class HttpFunction(_Model):
    """A plain webhook (OpenFaaS, Knative, anything that takes a POST)."""

    type: Literal["http"]
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(30.0, gt=0)
    concurrency: int = Field(10, ge=1, le=1000)
    cloudevents: bool = Field(False, description="send as a CloudEvent in binary mode")

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v


FunctionConfig = Annotated[
    LambdaFunction | RuntimeFunction | HttpFunction, Field(discriminator="type")
]


# ---------------------------------------------------------------- mappings


class FilterConfig(_Model):
    pattern: str | dict[str, Any]


class FilterCriteria(_Model):
    filters: list[FilterConfig] = Field(default_factory=list, max_length=10)

    @model_validator(mode="after")
    def _compile(self) -> FilterCriteria:
        for i, f in enumerate(self.filters):
            try:
                FilterSet([f.pattern])
            except FilterPatternError as exc:
                raise ValueError(f"filters[{i}].pattern: {exc}") from exc
        return self

    def compile(self) -> FilterSet:
        return FilterSet([f.pattern for f in self.filters])


class OnFailure(_Model):
    destination: str

    @field_validator("destination")
    @classmethod
    def _known_scheme(cls, v: str) -> str:
        from bridge.destinations import destination_factory

        try:
            destination_factory(v)
        except ConfigError as exc:
            raise ValueError(exc.message) from None
        return v


class MappingConfig(_Model):
    """One event source mapping. ``None`` options take the source's AWS default."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
    function: str
    source: dict[str, Any]
    enabled: bool = True
    batch_size: int | None = Field(None, ge=1, le=10000)
    maximum_batching_window_seconds: float | None = Field(None, ge=0, le=300)
    maximum_retry_attempts: int | None = Field(None, ge=-1, le=10000)
    maximum_record_age_seconds: int | None = Field(None, ge=-1, le=604800)
    bisect_batch_on_function_error: bool = False
    function_response_types: list[Literal["ReportBatchItemFailures"]] = Field(default_factory=list)
    filter_criteria: FilterCriteria | None = None
    on_failure: OnFailure | None = None
    maximum_concurrency: int | None = Field(None, ge=1, le=1000)

    @field_validator("on_failure", mode="before")
    @classmethod
    def _destination_shorthand(cls, v: Any) -> Any:
        return {"destination": v} if isinstance(v, str) else v

    @field_validator("maximum_record_age_seconds")
    @classmethod
    def _age(cls, v: int | None) -> int | None:
        if v == 0:
            raise ValueError("must be -1 (no limit) or a number of seconds >= 1")
        return v

    @field_validator("source")
    @classmethod
    def _source_type(cls, v: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(v.get("type"), str):
            raise ValueError("needs a 'type' (local_dir, s3, kafka, sqs, dynamodb_streams ...)")
        return v

    @property
    def report_batch_item_failures(self) -> bool:
        return "ReportBatchItemFailures" in self.function_response_types


class RetryBackoff(_Model):
    """Backoff between retries: jittered, doubling from ``initial_seconds`` up to
    ``max_seconds``."""

    initial_seconds: float = Field(0.5, gt=0, le=60)
    max_seconds: float = Field(30.0, gt=0, le=3600)


class BridgeConfig(_Model):
    """The whole file."""

    state_dir: str = ".trigger-bridge"
    retry_backoff: RetryBackoff = Field(default_factory=RetryBackoff)
    region: str = "us-east-1"
    account_id: str = Field("000000000000", pattern=r"^\d{12}$")
    shutdown_timeout_seconds: float = Field(30.0, ge=0)
    functions: dict[str, FunctionConfig] = Field(default_factory=dict)
    mappings: list[MappingConfig] = Field(default_factory=list)
    apis: list[ApiConfig] = Field(default_factory=list)
    event_buses: list[EventBusConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> BridgeConfig:
        seen: set[str] = set()
        for i, m in enumerate(self.mappings):
            if m.function not in self.functions:
                known = ", ".join(sorted(self.functions)) or "none defined"
                raise _KeyedError(
                    ("mappings", i, "function"),
                    f"unknown function {m.function!r} (functions: {known})",
                )
            if m.name in seen:
                raise _KeyedError(("mappings", i, "name"), f"duplicate mapping name {m.name!r}")
            seen.add(m.name)
        self._check_apis()
        self._check_buses()
        return self

    def _check_buses(self) -> None:
        names: set[str] = set()
        taken = {(api.host, api.port) for api in self.apis if api.port}
        for i, bus in enumerate(self.event_buses):
            if bus.name in names:
                raise _KeyedError(("event_buses", i, "name"), f"duplicate bus name {bus.name!r}")
            names.add(bus.name)
            if bus.port and (bus.host, bus.port) in taken:
                raise _KeyedError(("event_buses", i, "port"), f"{bus.host}:{bus.port} is taken")
            taken.add((bus.host, bus.port))
        for i, m in enumerate(self.mappings):
            if m.source.get("type") != "eventbridge":
                continue
            bus = m.source.get("event_bus_name", "default")
            if bus not in names:
                known = ", ".join(sorted(names)) or "none defined"
                raise _KeyedError(
                    ("mappings", i, "source", "event_bus_name"),
                    f"unknown event bus {bus!r} (event_buses: {known})",
                )

    def _check_apis(self) -> None:
        from bridge.front.routing import RouteTable

        names: set[str] = set()
        ports: set[tuple[str, int]] = set()
        for i, api in enumerate(self.apis):
            if api.name in names:
                raise _KeyedError(("apis", i, "name"), f"duplicate API name {api.name!r}")
            names.add(api.name)
            if api.port and (api.host, api.port) in ports:
                raise _KeyedError(("apis", i, "port"), f"{api.host}:{api.port} is taken")
            ports.add((api.host, api.port))
            for key, function in api.routes.items():
                if function not in self.functions:
                    known = ", ".join(sorted(self.functions)) or "none defined"
                    raise _KeyedError(
                        ("apis", i, "routes", key),
                        f"unknown function {function!r} (functions: {known})",
                    )
                if api.type == "http":
                    try:
                        RouteTable({key: function})
                    except ValueError as exc:
                        raise _KeyedError(("apis", i, "routes", key), str(exc)) from None
            if api.type == "http":
                try:
                    RouteTable(api.routes)  # together: ambiguous keys
                except ValueError as exc:
                    raise _KeyedError(("apis", i, "routes"), str(exc)) from None

    def source_config(self, mapping: MappingConfig) -> BaseModel:
        """The mapping's validated source options (its connector's model)."""
        from bridge.registry import connector_class

        model: type[BaseModel] = connector_class(mapping.source["type"]).config_model
        return model.model_validate(mapping.source)


class _KeyedError(ValueError):
    """A cross-field error that knows which key it is about."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


# ---------------------------------------------------------------- loading


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> BridgeConfig:
    """Read, interpolate and validate a config file; raise ConfigError naming file:line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config: {exc.strerror}", where=str(path)) from exc
    return parse_config(text, str(path), env)


def parse_config(text: str, filename: str, env: Mapping[str, str] | None = None) -> BridgeConfig:
    data, lines = load_yaml(text, filename, env)
    if not isinstance(data, dict):
        raise ConfigError(
            "expected a mapping with 'functions:' and 'mappings:' or 'apis:'", where=filename
        )
    problems: list[str] = []
    try:
        config = BridgeConfig.model_validate(data)
    except ValidationError as exc:
        problems.extend(_describe(err, data, lines, filename) for err in exc.errors())
        raise ConfigError("\n".join(problems)) from None
    # the source options are validated by their connector's own model
    from bridge.registry import UnknownConnector, connector_class

    for i, mapping in enumerate(config.mappings):
        base: tuple[str | int, ...] = ("mappings", i, "source")
        try:
            model = connector_class(mapping.source["type"]).config_model
        except UnknownConnector as exc:
            problems.append(_at(filename, lines, (*base, "type"), str(exc)))
            continue
        try:
            model.model_validate(mapping.source)
        except ValidationError as exc:
            for err in exc.errors():
                located = {**err, "loc": (*base, *err["loc"])}
                problems.append(_describe(located, data, lines, filename, model))
        check = getattr(connector_class(mapping.source["type"]), "check_mapping", None)
        for key, problem in check(data["mappings"][i]) if check else ():
            problems.append(_at(filename, lines, ("mappings", i, key), problem))
    if problems:
        raise ConfigError("\n".join(problems))
    return config


def _at(
    filename: str, lines: dict[tuple[str | int, ...], int], loc: tuple[Any, ...], msg: str
) -> str:
    return f"{filename}:{_line(lines, loc)}: {_dotted(loc)}: {msg}"


def _describe(
    err: Mapping[str, Any],
    data: Any,
    lines: dict[tuple[str | int, ...], int],
    filename: str,
    source_model: type[BaseModel] | None = None,
) -> str:
    loc = _data_path(tuple(err["loc"]), data, missing=err["type"] == "missing")
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc = (*loc, "type")
    ctx_error = (err.get("ctx") or {}).get("error")
    if isinstance(ctx_error, _KeyedError):
        return _at(filename, lines, ctx_error.loc, ctx_error.message)
    kind = err["type"]
    msg = str(err["msg"]).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        expected = _allowed_keys(loc[:-1], data, source_model)
        msg = f"unknown key {loc[-1]!r}" + (f" (expected one of: {expected})" if expected else "")
    elif kind == "missing":
        msg = "required key is missing"
    elif (
        "input" in err
        and not isinstance(err["input"], dict | list)
        and not (loc and _is_secret(loc[-1]))  # never echo a password, token or key
    ):
        msg = f"{msg} (got {json.dumps(err['input'], default=str)})"
    return _at(filename, lines, loc, msg)


_SECRET_WORDS = ("password", "secret", "token", "authorization", "private", "credential")


def _is_secret(key: str | int) -> bool:
    """Whether a key names a secret (``sasl.password``, ``aws_secret_access_key``,
    ``auth_token``, an ``Authorization`` header...), whose value an error must not show."""
    name = str(key).lower()
    return any(word in name for word in _SECRET_WORDS)


def _data_path(loc: tuple[Any, ...], data: Any, *, missing: bool) -> tuple[str | int, ...]:
    """The key path in the data of a pydantic error location: union tags and type
    names are dropped; a missing key is kept as the last part."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and part < len(node)
        ):
            path.append(part)
            node = node[part]
    if missing and loc and loc[-1] not in path[-1:]:
        path.append(loc[-1])
    return tuple(path)


def _allowed_keys(
    parent: tuple[str | int, ...], data: Any, source_model: type[BaseModel] | None
) -> str:
    model: Any = None
    if len(parent) >= 3 and parent[0] == "mappings" and parent[2] == "source":
        model = source_model if len(parent) == 3 else None
    elif len(parent) == 2 and parent[0] == "mappings":
        model = MappingConfig
    elif len(parent) == 2 and parent[0] == "functions":
        node = data.get("functions", {}).get(parent[1], {})
        kind = node.get("type") if isinstance(node, dict) else None
        model = {"lambda": LambdaFunction, "runtime": RuntimeFunction, "http": HttpFunction}.get(
            str(kind)
        )
    elif len(parent) == 2 and parent[0] == "apis":
        apis, index = data.get("apis"), parent[1]
        found = isinstance(apis, list) and isinstance(index, int) and index < len(apis)
        node = apis[index] if found else {}
        kind = node.get("type") if isinstance(node, dict) else None
        model = {"http": HttpApi, "websocket": WebSocketApi}.get(str(kind))
    elif len(parent) == 2 and parent[0] == "event_buses":
        model = EventBusConfig
    elif parent == ():
        model = BridgeConfig
    if model is None:
        return ""
    return ", ".join(model.model_fields)


def _line(lines: dict[tuple[str | int, ...], int], loc: tuple[Any, ...]) -> int:
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return 1


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"
