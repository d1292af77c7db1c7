"""Configuration: named functions (targets) and event source mappings, from YAML.

Mapping options carry AWS's event-source-mapping names in snake_case
(``BatchSize`` -> ``batch_size``) and AWS's per-source defaults, which each
connector declares in ``defaults``. Unknown keys are errors. Every error names the
file, the line and the key path, and says what was expected, and for a misspelt key
or name the close match (:mod:`bridge.config_errors`).

``load_config(path)`` is the one entry point; it raises one ``ConfigError`` listing
every independent problem of the file, one per line, ordered by line. Checks across
sections (unknown functions, duplicate names) are in :mod:`bridge.config_references`;
what the file names on this machine, in :mod:`bridge.config_checks` (``validate --deep``).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bridge._yaml import load_yaml
from bridge.config_errors import Loc, Problem, describe, did_you_mean, dotted, report
from bridge.config_references import reference_problems
from bridge.errors import ConfigError
from bridge.filtering import FilterPatternError, FilterSet
from bridge.front.config import ApiConfig, EventBusConfig
from bridge.state import SqliteState, StateConfig

__all__ = [
    "BridgeConfig",
    "FunctionConfig",
    "HttpFunction",
    "LambdaFunction",
    "MappingConfig",
    "RuntimeFunction",
    "load_config",
    "parse_config",
    "validate_document",
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
    concurrency: int = Field(
        1, ge=1, le=256, description="reserved concurrency: the most instances at once"
    )
    min_instances: int = Field(
        0, ge=0, le=256, description="instances kept warm (provisioned concurrency); 0: none"
    )
    idle_timeout_seconds: float = Field(
        300.0, gt=0, le=86400, description="an instance without work this long is stopped"
    )
    layers: list[str] = Field(
        default_factory=list,
        description="folders laid out as Lambda layers (python/, lib/, bin/), later first",
    )
    timeout: float = Field(3.0, gt=0, le=900, description="seconds, as Lambda's Timeout")
    memory_size: int = Field(
        128, ge=128, le=10240, description="MB; an instance using more is ended (OutOfMemory)"
    )
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
    def _instances_within_concurrency(self) -> RuntimeFunction:
        if self.min_instances > self.concurrency:
            raise ValueError(
                f"min_instances ({self.min_instances}) may not exceed concurrency "
                f"({self.concurrency}), the most instances the function may have"
            )
        return self

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


def destination_of_arn(arn: str) -> str:
    """The on-failure URI of an AWS destination ARN: ``arn:aws:sqs:REGION:ACCOUNT:NAME`` is
    ``sqs://NAME`` (the queue of that name where the mapping's SQS endpoint is, else on
    AWS), ``arn:aws:s3:::BUCKET`` is ``s3://BUCKET`` where the bridge has an ``s3://``
    destination. Raise ValueError for other ARNs."""
    from bridge.destinations import SCHEMES

    parts = arn.split(":", 5)
    service = parts[2] if len(parts) == 6 else ""
    if service == "sqs" and parts[5]:
        return f"sqs://{parts[5]}"
    if service == "s3" and parts[5]:
        if "s3" not in SCHEMES:
            raise ValueError(
                "the bridge has no S3 on-failure destination (it has "
                f"{', '.join(f'{s}://' for s in SCHEMES)}); name another"
            )
        return f"s3://{parts[5]}"
    raise ValueError("of AWS's ARNs, only an SQS queue's names an on-failure destination")


class OnFailure(_Model):
    destination: str

    @field_validator("destination", mode="before")
    @classmethod
    def _from_arn(cls, v: Any) -> Any:
        return destination_of_arn(v) if isinstance(v, str) and v.startswith("arn:") else v

    @field_validator("destination")
    @classmethod
    def _known_scheme(cls, v: str) -> str:
        from bridge.destinations import SCHEMES, destination_factory

        try:
            destination_factory(v)
        except ConfigError as exc:
            scheme, sep, _ = v.partition("://")
            known = [f"{s}://" for s in SCHEMES]
            hint = did_you_mean(f"{scheme}://", known, cutoff=0.75) if sep else ""
            raise ValueError(exc.message + hint) from None
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
    # logs (Kafka, DynamoDB Streams, buckets, folders): commit at most this often per
    # partition; a crash may deliver again what settled in the last interval
    commit_interval_seconds: float | None = Field(None, ge=0, le=60)
    # streams: batches of one shard at once, in order per partition key (DynamoDB's Keys);
    # Kafka too (an extension: AWS refuses it there), in order per record key
    parallelization_factor: int | None = Field(None, ge=1, le=10)
    # streams: the state a function returns is passed to its next invocation in the window
    tumbling_window_in_seconds: int | None = Field(None, ge=0, le=900)
    # Kafka: members of the mapping's consumer group, each in its own worker process
    parallelism: int | None = Field(None, ge=1, le=64)

    @model_validator(mode="before")
    @classmethod
    def _aws_spelling(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            problems = aws_names(data)
            if problems:
                raise ValueError(f"{dotted(problems[0][0])}: {problems[0][1]}")
        return data

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
        from bridge.registry import connector_types

        if not isinstance(v.get("type"), str):
            raise ValueError(f"needs a 'type' (one of: {', '.join(connector_types())})")
        return v

    @model_validator(mode="after")
    def _window_or_parallel(self) -> MappingConfig:
        if (self.parallelization_factor or 1) > 1 and self.tumbling_window_in_seconds:
            raise ValueError(
                "tumbling_window_in_seconds keeps one state per shard, so it cannot go with "
                "parallelization_factor above 1 (batches of one shard at once)"
            )
        return self

    @property
    def report_batch_item_failures(self) -> bool:
        return "ReportBatchItemFailures" in self.function_response_types


#: AWS's snake_case names (CreateEventSourceMapping's, as the CLI and SDKs spell them) of
#: the options whose names here are shorter; the others are spelt as AWS spells them
AWS_NAMES: dict[str, str] = {
    "maximum_batching_window_in_seconds": "maximum_batching_window_seconds",
    "maximum_record_age_in_seconds": "maximum_record_age_seconds",
    "destination_config": "on_failure",  # {on_failure: {destination: ...}}
    "scaling_config": "maximum_concurrency",  # {maximum_concurrency: N}
}
_AWS_NESTED = {"destination_config": "on_failure", "scaling_config": "maximum_concurrency"}


def aws_names(mapping: dict[str, Any]) -> list[tuple[Loc, str]]:
    """Rename AWS's spellings of a mapping's options (:data:`AWS_NAMES`) to the short ones,
    in place; return the problems as (key path in the mapping, message): both spellings
    given, or a ``destination_config``/``scaling_config`` with other keys than the one
    the bridge has."""
    problems: list[tuple[Loc, str]] = []
    for aws, short in AWS_NAMES.items():
        if aws not in mapping:
            continue
        if short in mapping:
            problems.append(((aws,), f"give either {aws} (AWS's name) or {short}, not both"))
            continue
        value = mapping[aws]
        inner = _AWS_NESTED.get(aws)
        if inner is not None:
            extra = sorted(set(value) - {inner}) if isinstance(value, dict) else []
            if extra:
                problems.append(((aws, extra[0]), f"not supported (the bridge has {inner})"))
                continue
            if not isinstance(value, dict) or inner not in value:
                problems.append(((aws,), f"expected a mapping with {inner!r}"))
                continue
            value = value[inner]
        mapping[short] = value
        del mapping[aws]
    return problems


def _aws_names_in(data: dict[str, Any]) -> tuple[list[Problem], dict[Loc, Loc]]:
    """:func:`aws_names` on every mapping of a file's data; the problems, and where each
    renamed option was written (short key path -> AWS key path)."""
    problems: list[Problem] = []
    written: dict[Loc, Loc] = {}
    mappings = data.get("mappings")
    for i, mapping in enumerate(mappings if isinstance(mappings, list) else []):
        if not isinstance(mapping, dict):
            continue
        given = [aws for aws in AWS_NAMES if aws in mapping]
        for loc, message in aws_names(mapping):
            problems.append(Problem(("mappings", i, *loc), message))
            mapping.pop(str(loc[0]), None)  # reported once, not again by the model
        for aws in given:
            if aws not in mapping and AWS_NAMES[aws] in mapping:  # renamed
                written[("mappings", i, AWS_NAMES[aws])] = (
                    ("mappings", i, aws, _AWS_NESTED[aws])
                    if aws in _AWS_NESTED
                    else ("mappings", i, aws)
                )
    return problems, written


def _as_written(problem: Problem, written: Mapping[Loc, Loc]) -> Problem:
    for short, aws in written.items():
        if problem.loc[: len(short)] == short:
            return problem._replace(loc=aws + problem.loc[len(short) :])
    return problem


class RetryBackoff(_Model):
    """Backoff between retries: jittered, doubling from ``initial_seconds`` up to
    ``max_seconds``."""

    initial_seconds: float = Field(0.5, gt=0, le=60)
    max_seconds: float = Field(30.0, gt=0, le=3600)


class AdminConfig(_Model):
    """The admin HTTP server (``/healthz``, ``/readyz``, ``/metrics``, ``/status``, pause,
    resume, reload). ``port: 0`` takes any free port; the address in use is written to
    ``<state_dir>/admin.json`` for the command line. ``auth_token``, when set, is required
    (``Authorization: Bearer ...``) by the endpoints that change something."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9470, ge=0, le=65535)
    auth_token: str | None = None


class BridgeConfig(_Model):
    """The whole file."""

    state_dir: str = ".trigger-bridge"
    retry_backoff: RetryBackoff = Field(default_factory=RetryBackoff)
    region: str = "us-east-1"
    account_id: str = Field("000000000000", pattern=r"^\d{12}$")
    shutdown_timeout_seconds: float = Field(30.0, ge=0)
    admin: AdminConfig = Field(default_factory=AdminConfig)
    # a mapping with a backlog logs a mapping.progress line at most this often; 0: never
    progress_log_seconds: float = Field(30.0, ge=0)
    # where checkpoints (and leases) are kept: this bridge's SQLite file, or a DynamoDB
    # table several bridges share (bridge/state.py)
    state: StateConfig = Field(default_factory=SqliteState)
    # worker processes that run the mappings (bridge/placement.py): "auto" is one per
    # core; 0 runs every mapping in the daemon's own process
    workers: int | Literal["auto"] = Field("auto", ge=0, le=64)
    functions: dict[str, FunctionConfig] = Field(default_factory=dict)
    mappings: list[MappingConfig] = Field(default_factory=list)
    apis: list[ApiConfig] = Field(default_factory=list)
    event_buses: list[EventBusConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self, info: ValidationInfo) -> BridgeConfig:
        if (info.context or {}).get("references") == "deferred":
            return self  # parse_config checks them itself, to report every problem
        problems = reference_problems(self.model_dump())
        if problems:
            raise ValueError(f"{dotted(problems[0].loc)}: {problems[0].message}")
        return self

    def source_config(self, mapping: MappingConfig) -> BaseModel:
        """The mapping's validated source options (its connector's model)."""
        from bridge.registry import connector_class

        model: type[BaseModel] = connector_class(mapping.source["type"]).config_model
        return model.model_validate(mapping.source)


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
    """Validate a config file's text; raise one ConfigError listing every problem, each
    as ``file:line: path: message``, ordered by line. A problem that follows from another
    (the options of a source whose type is unknown) is not reported."""
    data, lines = load_yaml(text, filename, env)
    if not isinstance(data, dict):
        raise ConfigError(
            "expected a mapping with 'functions:' and 'mappings:' or 'apis:'", where=filename
        )
    return validate_document(data, filename, lines)


def validate_document(
    data: dict[str, Any], filename: str, lines: Mapping[Loc, int]
) -> BridgeConfig:
    """Validate a config document already read (``lines``: key path -> line of
    ``filename``, for the errors); raise one ConfigError as :func:`parse_config` does.
    :mod:`bridge.templates` validates what it derives from a template with it."""
    problems, written = _aws_names_in(data)
    config: BridgeConfig | None = None
    try:
        config = BridgeConfig.model_validate(data, context={"references": "deferred"})
    except ValidationError as exc:
        problems += [describe(err, data, BridgeConfig) for err in exc.errors()]
    problems += reference_problems(data)
    problems += _source_problems(data, {p.loc for p in problems})
    if problems or config is None:
        raise report([_as_written(p, written) for p in problems], filename, lines)
    return config


def _source_problems(data: dict[str, Any], taken: set[Loc]) -> list[Problem]:
    """Each mapping's source options, by its connector's own model, and what the
    connector's ``check_mapping`` says of the mapping (but not of a key already wrong)."""
    from bridge.registry import UnknownConnector, connector_class, connector_types

    problems: list[Problem] = []
    mappings = data.get("mappings")
    for i, mapping in enumerate(mappings if isinstance(mappings, list) else []):
        source = mapping.get("source") if isinstance(mapping, dict) else None
        if not isinstance(source, dict) or not isinstance(source.get("type"), str):
            continue  # MappingConfig reports it
        base: Loc = ("mappings", i, "source")
        kind = source["type"]
        try:
            connector = connector_class(kind)
        except UnknownConnector as exc:
            hint = "" if kind in connector_types() else did_you_mean(kind, connector_types())
            problems.append(Problem((*base, "type"), f"{exc}{hint}"))
            continue  # its options cannot be checked
        model: type[BaseModel] = connector.config_model
        try:
            model.model_validate(source)
        except ValidationError as exc:
            problems += [describe(err, source, model, base=base) for err in exc.errors()]
        check = getattr(connector, "check_mapping", None)
        found = list(check(mapping) if check else ())
        found += _stream_option_problems(mapping, kind, connector)
        for key, problem in found:
            if ("mappings", i, key) not in taken:
                problems.append(Problem(("mappings", i, key), problem))
    return problems


#: mapping options only some sources take, and the connector attribute that says so
_STREAM_OPTIONS = {
    "parallelization_factor": ("parallelizable", "DynamoDB Streams (and Kinesis) and Kafka", 1),
    "parallelism": ("group_members", "Kafka and DynamoDB Streams", 1),
    "tumbling_window_in_seconds": ("windowable", "DynamoDB Streams and Kafka", 0),
}


def _stream_option_problems(mapping: dict[str, Any], kind: str, connector: Any) -> list[Any]:
    """``parallelization_factor`` and ``tumbling_window_in_seconds`` on a source whose
    connector does not take them (its ``parallelizable`` / ``windowable`` is not true);
    their AWS defaults (1 and 0) are always accepted."""
    problems = []
    for option, (flag, who, default) in _STREAM_OPTIONS.items():
        value = mapping.get(option)
        if value is None or value == default or getattr(connector, flag, False):
            continue
        problems.append((option, f"applies to {who} only, not to a {kind} source, as on AWS"))
    return problems
