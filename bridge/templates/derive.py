"""What every template format shares: the derived bridge config, and AWS's properties of
functions, event source mappings, S3 notifications, schedules and rules in the bridge's
terms.

A :class:`Derived` collects ``functions:``, ``mappings:``, ``apis:`` and ``event_buses:``
with, for each key, the template line it came from, so that the normal validation
(:func:`bridge.config.validate_document`) names the template's ``file:line``. Properties
are taken by name: each is mapped, or deliberately left out because it has no meaning
here (IAM, KMS, VPC, tags, metrics), or it is a ConfigError naming the resource and the
property; nothing the bridge would behave differently for is skipped in silence.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.config import destination_of_arn
from bridge.config_errors import Loc, line_of
from bridge.errors import ConfigError
from bridge.templates.intrinsics import NO_VALUE, Resolver
from bridge.templates.loader import Document
from bridge.templates.overlay import Overlay

__all__ = ["Context", "Derived", "Draft"]

#: credentials a function the bridge runs gets from the bridge's environment
CREDENTIAL_VARIABLES = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
]
_ENDPOINT_VARIABLES = {
    "sqs": "AWS_ENDPOINT_URL_SQS",
    "dynamodb": "AWS_ENDPOINT_URL_DYNAMODB",
    "s3": "AWS_ENDPOINT_URL_S3",
    "lambda": "AWS_ENDPOINT_URL_LAMBDA",
}


@dataclass
class Context:
    """One file being converted: its data, how to resolve its values, the overlay."""

    document: Document
    resolver: Resolver
    overlay: Overlay

    @property
    def folder(self) -> Path:
        return self.document.path.parent

    def error(self, loc: Loc, message: str) -> ConfigError:
        return self.document.error(loc, message)

    def value(self, props: Mapping[str, Any], key: str, loc: Loc, default: Any = None) -> Any:
        """``props[key]`` resolved (``loc`` is where ``props`` is), or ``default``."""
        if key not in props:
            return default
        value = self.resolver.resolve(props[key], (*loc, key))
        return default if value is NO_VALUE else value

    def line(self, loc: Loc) -> int:
        return line_of(self.document.lines, loc)

    def path_text(self, path: Path) -> str:
        """A path as the bridge config gives it: relative to the working directory when
        it is below it, else absolute."""
        absolute = Path(os.path.abspath(path))
        try:
            return str(absolute.relative_to(Path.cwd())) or "."
        except ValueError:
            return str(absolute)

    def destination(self, arn: Any, loc: Loc) -> str:
        """The on_failure URI of a destination ARN: the overlay's, else AWS's own queue."""
        if not isinstance(arn, str):
            raise self.error(loc, "expected a destination ARN")
        if arn in self.overlay.destinations:
            return self.overlay.destinations[arn]
        if not arn.startswith("arn:"):
            return arn
        try:
            uri = destination_of_arn(arn)
        except ValueError as exc:
            raise self.error(loc, f"{exc}; or map {arn} in the overlay's destinations") from None
        if uri.startswith("sqs://"):
            return "sqs://" + self.overlay.name(uri.removeprefix("sqs://"))
        return uri


@dataclass
class Draft:
    """One mapping being derived: its options and the template place of each."""

    data: dict[str, Any]
    origin: Loc
    where: dict[tuple[str, ...], Loc] = field(default_factory=dict)

    @classmethod
    def new(cls, name: str, function: str, origin: Loc) -> Draft:
        return cls({"name": name, "function": function, "source": {}}, origin)

    def set(self, path: tuple[str, ...], value: Any, loc: Loc) -> None:
        node = self.data
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
        self.where[path] = loc

    @property
    def source(self) -> dict[str, Any]:
        source: dict[str, Any] = self.data["source"]
        return source


@dataclass
class Derived:
    """The bridge config derived from one file, with the line of every key."""

    context: Context
    functions: dict[str, dict[str, Any]] = field(default_factory=dict)
    mappings: list[dict[str, Any]] = field(default_factory=list)
    apis: dict[str, dict[str, Any]] = field(default_factory=dict)
    buses: dict[str, dict[str, Any]] = field(default_factory=dict)
    lines: dict[Loc, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    used: set[str] = field(default_factory=set)  # functions that events name
    unrunnable: dict[str, ConfigError] = field(default_factory=dict)

    def add_mapping(self, draft: Draft) -> None:
        i = len(self.mappings)
        self.mappings.append(draft.data)
        self.used.add(draft.data["function"])
        line = self.context.line
        self.lines[("mappings", i)] = line(draft.origin)
        for key in ("name", "function", "source"):
            self.lines[("mappings", i, key)] = line(draft.origin)
        for path, loc in draft.where.items():
            self.lines[("mappings", i, *path)] = line(loc)

    def add_function(self, name: str, entry: dict[str, Any] | ConfigError, loc: Loc) -> None:
        """A function, or why the bridge cannot run it (an error only if an event names
        it: see :meth:`settle`)."""
        if isinstance(entry, ConfigError):
            self.unrunnable[name] = entry
            return
        self.functions[name] = entry
        self.lines[("functions", name)] = self.context.line(loc)

    def settle(self) -> None:
        """Raise the error of the first function that cannot run and that an event names;
        the others are left out, with a note."""
        for name, error in self.unrunnable.items():
            if name in self.used:
                raise error
            self.notes.append(f"function {name} left out (no event names it): {error.message}")

    def add_route(
        self, api: str, route: str, function: str, loc: Loc, options: Mapping[str, Any]
    ) -> None:
        """Route ``route`` of API ``api`` to ``function``; ``options`` (payload version,
        stage, timeout...) must agree with the API's other routes."""
        entry = self.apis.setdefault(api, {"name": api, "routes": {}})
        for key, value in options.items():
            if key in entry and entry[key] != value:
                raise self.context.error(
                    loc,
                    f"{key} {value!r} differs from {entry[key]!r} of another route of "
                    f"API {api}; the bridge takes one per API",
                )
            entry[key] = value
        if route in entry["routes"]:
            raise self.context.error(loc, f"route {route!r} of API {api} is given twice")
        entry["routes"][route] = function
        self.used.add(function)
        self.lines.setdefault(("apis", api), self.context.line(loc))

    def add_bus(self, name: str, loc: Loc) -> None:
        if name not in self.buses:
            self.buses[name] = {"name": name}
            self.lines[("event_buses", name)] = self.context.line(loc)

    def document(self) -> tuple[dict[str, Any], dict[Loc, int]]:
        """The bridge config document and the template line of its keys (lists of APIs and
        buses indexed as the document has them)."""
        overlay = self.context.overlay
        data: dict[str, Any] = {
            **overlay.bridge,
            "region": overlay.region,
            "account_id": overlay.account_id,
            "functions": self.functions,
            "mappings": self.mappings,
        }
        lines = {k: v for k, v in self.lines.items() if k[0] in ("functions", "mappings")}
        for section, named, extra in (
            ("apis", self.apis, overlay.apis),
            ("event_buses", self.buses, overlay.event_buses),
        ):
            if named:
                data[section] = [{**entry, **extra.get(name, {})} for name, entry in named.items()]
                for i, name in enumerate(named):
                    lines[(section, i)] = self.lines.get((section, name), 1)
        return data, lines


# ---------------------------------------------------------------- functions


def function_entry(
    context: Context,
    name: str,
    *,
    runtime: Any,
    handler: Any,
    code: Path | None,
    env: Mapping[str, Any],
    timeout: Any,
    memory_size: Any,
    loc: Loc,
    runtime_loc: Loc,
    code_problem: str | None = None,
) -> dict[str, Any]:
    """The ``functions:`` entry of a function of the template: a ``runtime`` function
    running a Python handler under awslambdaric in its code folder, unless the overlay
    says otherwise (a ``type``, an ``endpoint_url`` or a ``url``). ``code_problem`` says
    why the code is not a local folder."""
    override = dict(context.overlay.functions.get(name, {}))
    if "type" in override:
        return override
    if "endpoint_url" in override:
        return {"type": "lambda", "function_name": name, **override}
    if "url" in override:
        return {"type": "http", **override}
    entry: dict[str, Any] = {"type": "runtime"}
    if "command" not in override:
        if not (isinstance(runtime, str) and runtime.startswith("python")):
            raise context.error(
                runtime_loc,
                f"function {name}: runtime {runtime!r} is not run by the bridge (it runs "
                "Python runtimes under awslambdaric); give the overlay "
                f"functions: {{{name}: {{endpoint_url: ...}}}} (where it runs) or a command",
            )
        if code_problem:
            raise context.error(
                loc,
                f"function {name}: {code_problem}; give the overlay functions: "
                f"{{{name}: {{cwd: ...}}}} (a folder with the code) or an endpoint_url",
            )
        if not isinstance(handler, str) or not handler:
            raise context.error(loc, f"function {name}: no Handler")
        entry["command"] = f"python -m awslambdaric {shlex.quote(handler)}"
        entry["handler"] = handler
    if code is not None:
        entry["cwd"] = context.path_text(code)
    variables = {str(k): "" if v is None else _text(v) for k, v in env.items()}
    for service, endpoint in context.overlay.endpoints.items():
        variables.setdefault(_ENDPOINT_VARIABLES[service], endpoint)
    if variables:
        entry["env"] = variables
    entry["inherit_env"] = list(CREDENTIAL_VARIABLES)
    if timeout is not None:
        entry["timeout"] = timeout
    if memory_size is not None:
        entry["memory_size"] = memory_size
    env_override = override.pop("env", None)
    entry.update(override)
    if isinstance(env_override, dict):
        entry["env"] = {**entry.get("env", {}), **env_override}
    return entry


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


# ---------------------------------------------------------------- event source mappings

#: CreateEventSourceMapping's properties that are mapping options of the same meaning
ESM_OPTIONS = {
    "BatchSize": "batch_size",
    "Enabled": "enabled",
    "MaximumBatchingWindowInSeconds": "maximum_batching_window_seconds",
    "MaximumRetryAttempts": "maximum_retry_attempts",
    "MaximumRecordAgeInSeconds": "maximum_record_age_seconds",
    "BisectBatchOnFunctionError": "bisect_batch_on_function_error",
    "FunctionResponseTypes": "function_response_types",
}
#: engine options: passed on when not AWS's default (the validation says if the bridge
#: lacks one)
_ESM_ENGINE = {
    "ParallelizationFactor": ("parallelization_factor", 1),
    "TumblingWindowInSeconds": ("tumbling_window_in_seconds", 0),
}
#: no meaning for the bridge: encryption, networking, metrics, provisioning, tags
ESM_IGNORED = {
    "KmsKeyArn",
    "MetricsConfig",
    "LoggingConfig",
    "ProvisionedPollerConfig",
    "Tags",
    "SecretsManagerKmsKeyId",
    "SourceAccessConfigurations",  # credentials come from the overlay's kafka
}


def event_source(
    context: Context,
    draft: Draft,
    props: Mapping[str, Any],
    loc: Loc,
    *,
    arn_key: str | None,
    kind: str,
) -> None:
    """Fill ``draft`` from the properties of an event source mapping (a SAM pull event or
    an ``AWS::Lambda::EventSourceMapping``): ``kind`` is ``SQS``, ``DynamoDB``, ``MSK``,
    ``SelfManagedKafka`` or ``ARN`` (the ARN under ``arn_key`` says)."""
    done = {arn_key, "FunctionName"} | ESM_IGNORED
    if kind == "SelfManagedKafka" or "SelfManagedEventSource" in props:
        kafka_source(context, draft, props, loc, managed=False)
    else:
        if arn_key is None or arn_key not in props:
            raise context.error(loc, f"{arn_key or 'EventSourceArn'}: required")
        arn = context.value(props, arn_key, loc)
        source_of_arn(context, draft, arn, (*loc, arn_key), props, loc)
    if draft.source.get("type") == "kafka":
        done |= {
            "Topics",
            "ConsumerGroupId",
            "KafkaBootstrapServers",
            "SelfManagedEventSource",
            "SelfManagedKafkaEventSourceConfig",
            "AmazonManagedKafkaEventSourceConfig",
            "StartingPositionTimestamp",
        }
    for aws, option in ESM_OPTIONS.items():
        if aws in props:
            draft.set((option,), context.value(props, aws, loc), (*loc, aws))
    for aws, (option, default) in _ESM_ENGINE.items():
        value = context.value(props, aws, loc)
        if value is not None and value != default:
            draft.set((option,), value, (*loc, aws))
    if "StartingPosition" in props:
        value = context.value(props, "StartingPosition", loc)
        draft.set(("source", "starting_position"), value, (*loc, "StartingPosition"))
    if "FilterCriteria" in props:
        draft.set(
            ("filter_criteria",),
            filter_criteria(context, context.value(props, "FilterCriteria", loc), loc),
            (*loc, "FilterCriteria"),
        )
    if "DestinationConfig" in props:
        dloc = (*loc, "DestinationConfig")
        config = context.value(props, "DestinationConfig", loc) or {}
        for key in sorted(set(config) - {"OnFailure"}):
            raise context.error((*dloc, key), "not supported by the bridge (only OnFailure)")
        failure = config.get("OnFailure") or {}
        if "Destination" in failure:
            uri = context.destination(failure["Destination"], (*dloc, "OnFailure", "Destination"))
            draft.set(("on_failure",), uri, (*dloc, "OnFailure", "Destination"))
    if "ScalingConfig" in props:
        config = context.value(props, "ScalingConfig", loc) or {}
        if "MaximumConcurrency" in config:
            draft.set(
                ("maximum_concurrency",),
                config["MaximumConcurrency"],
                (*loc, "ScalingConfig", "MaximumConcurrency"),
            )
    handled = set(ESM_OPTIONS) | set(_ESM_ENGINE)
    handled |= {"StartingPosition", "FilterCriteria", "DestinationConfig", "ScalingConfig"}
    unknown(context, props, loc, handled | done)


def unknown(context: Context, props: Mapping[str, Any], loc: Loc, known: Iterable[Any]) -> None:
    """A ConfigError for the first property of ``props`` not in ``known``."""
    for key in props:
        if key not in set(known):
            raise context.error((*loc, key), "not supported by the bridge")


def filter_criteria(context: Context, value: Any, loc: Loc) -> dict[str, Any]:
    filters = value.get("Filters", []) if isinstance(value, dict) else None
    if not isinstance(filters, list):
        raise context.error((*loc, "FilterCriteria"), "expected {Filters: [{Pattern: ...}]}")
    return {
        "filters": [{"pattern": f.get("Pattern") if isinstance(f, dict) else f} for f in filters]
    }


def source_of_arn(
    context: Context,
    draft: Draft,
    arn: Any,
    arn_loc: Loc,
    props: Mapping[str, Any],
    loc: Loc,
) -> None:
    """The source of an event source ARN: an SQS queue, a DynamoDB table's stream or an MSK
    cluster, where the overlay says they are."""
    parts = arn.split(":", 5) if isinstance(arn, str) else []
    if len(parts) != 6 or parts[0] != "arn":
        raise context.error(arn_loc, f"expected an ARN, got {arn!r}")
    service, region, account, resource = parts[2], parts[3], parts[4], parts[5]
    overlay = context.overlay
    source: dict[str, Any]
    if service == "sqs":
        name = overlay.name(resource)
        endpoint = overlay.endpoints.get("sqs")
        if endpoint:
            source = {"type": "sqs", "queue_name": name, "endpoint_url": endpoint}
        else:
            url = f"https://sqs.{region}.amazonaws.com/{account}/{name}"
            source = {"type": "sqs", "queue_url": url}
    elif service == "dynamodb":
        match = re.fullmatch(r"table/([^/]+)(/stream/.*)?", resource)
        if not match:
            raise context.error(arn_loc, f"expected a DynamoDB stream ARN, got {arn!r}")
        # the table's current stream: a local table's stream has a label of its own
        source = {"type": "dynamodb_streams", "table_name": overlay.name(match.group(1))}
        if overlay.endpoints.get("dynamodb"):
            source["endpoint_url"] = overlay.endpoints["dynamodb"]
    elif service == "kafka":
        kafka_source(context, draft, props, loc, managed=True, arn_loc=arn_loc)
        return
    elif service == "kinesis":
        raise context.error(arn_loc, "Kinesis streams: the bridge has no Kinesis source")
    else:
        raise context.error(arn_loc, f"{arn}: the bridge has no source for {service} ARNs")
    if region and region != overlay.region and not source.get("endpoint_url"):
        source["region"] = region
    for key, value in source.items():
        draft.set(("source", key), value, arn_loc)


def kafka_source(
    context: Context,
    draft: Draft,
    props: Mapping[str, Any],
    loc: Loc,
    *,
    managed: bool,
    arn_loc: Loc | None = None,
) -> None:
    """A kafka source: the overlay's servers (required for MSK), else the template's."""
    kafka = context.overlay.kafka
    draft.set(("source", "type"), "kafka", loc)
    servers: Any = kafka.bootstrap_servers if kafka else None
    servers_loc = loc
    if not servers and not managed:
        if "KafkaBootstrapServers" in props:
            servers = context.value(props, "KafkaBootstrapServers", loc)
            servers_loc = (*loc, "KafkaBootstrapServers")
        else:
            smes = context.value(props, "SelfManagedEventSource", loc) or {}
            servers = (smes.get("Endpoints") or {}).get("KafkaBootstrapServers")
            servers_loc = (*loc, "SelfManagedEventSource")
    if not servers:
        raise context.error(
            arn_loc or loc,
            "the Kafka cluster's bootstrap servers are not known here: give the overlay "
            "kafka: {bootstrap_servers: [host:port]}",
        )
    draft.set(("source", "bootstrap_servers"), servers, servers_loc)
    if "Topics" in props:
        draft.set(("source", "topics"), context.value(props, "Topics", loc), (*loc, "Topics"))
    group = context.value(props, "ConsumerGroupId", loc)
    group_loc = (*loc, "ConsumerGroupId")
    for key in ("SelfManagedKafkaEventSourceConfig", "AmazonManagedKafkaEventSourceConfig"):
        config = context.value(props, key, loc) or {}
        for inner in sorted(set(config) - {"ConsumerGroupId"}):
            raise context.error((*loc, key, inner), "not supported by the bridge")
        if "ConsumerGroupId" in config:
            group, group_loc = config["ConsumerGroupId"], (*loc, key, "ConsumerGroupId")
    if group:
        draft.set(("source", "consumer_group_id"), group, group_loc)
    if "StartingPositionTimestamp" in props:
        value = context.value(props, "StartingPositionTimestamp", loc)
        draft.set(
            ("source", "starting_position_timestamp"), value, (*loc, "StartingPositionTimestamp")
        )
    if kafka and kafka.sasl:
        draft.set(("source", "sasl"), dict(kafka.sasl), loc)
    if kafka and kafka.tls is not None:
        draft.set(("source", "tls"), kafka.tls, loc)


# ---------------------------------------------------------------- asynchronous invocation


def invoke_config(context: Context, draft: Draft, config: Any, loc: Loc) -> None:
    """A function's asynchronous invocation configuration (SAM ``EventInvokeConfig``):
    retries, maximum event age and the on-failure destination of its S3, schedule and
    rule mappings."""
    if not isinstance(config, dict):
        return
    for aws, option in (
        ("MaximumRetryAttempts", "maximum_retry_attempts"),
        ("MaximumEventAgeInSeconds", "maximum_record_age_seconds"),
    ):
        if aws in config:
            draft.set((option,), config[aws], (*loc, aws))
    destinations = config.get("DestinationConfig") or {}
    for key in sorted(set(destinations) - {"OnFailure"}):
        raise context.error(
            (*loc, "DestinationConfig", key), "not supported by the bridge (only OnFailure)"
        )
    failure = destinations.get("OnFailure") or {}
    if "Destination" in failure:
        dloc = (*loc, "DestinationConfig", "OnFailure", "Destination")
        draft.set(("on_failure",), context.destination(failure["Destination"], dloc), dloc)
    unknown(
        context,
        config,
        loc,
        {
            "MaximumRetryAttempts",
            "MaximumEventAgeInSeconds",
            "DestinationConfig",
            "Qualifier",
            "FunctionName",
        },
    )


def retry_policy(context: Context, draft: Draft, props: Mapping[str, Any], loc: Loc) -> None:
    """EventBridge's ``RetryPolicy`` and ``DeadLetterConfig`` of a rule or schedule target."""
    policy = context.value(props, "RetryPolicy", loc) or {}
    ploc = (*loc, "RetryPolicy")
    for aws, option in (
        ("MaximumRetryAttempts", "maximum_retry_attempts"),
        ("MaximumEventAgeInSeconds", "maximum_record_age_seconds"),
    ):
        if aws in policy:
            draft.set((option,), policy[aws], (*ploc, aws))
    dead = context.value(props, "DeadLetterConfig", loc)
    if isinstance(dead, dict):
        dloc = (*loc, "DeadLetterConfig")
        if "Arn" not in dead:
            raise context.error(
                dloc, "give the queue's Arn (the bridge does not create one: Type: SQS)"
            )
        draft.set(("on_failure",), context.destination(dead["Arn"], (*dloc, "Arn")), (*dloc, "Arn"))


# ---------------------------------------------------------------- S3, schedules, rules


def s3_source(
    context: Context,
    draft: Draft,
    bucket: Any,
    events: Any,
    rules: Any,
    loc: Loc,
    *,
    bucket_loc: Loc,
    events_loc: Loc,
    rules_loc: Loc,
) -> None:
    """A bucket's notifications: an ``s3`` source at the overlay's S3 endpoint, or a
    ``local_dir`` where the overlay's local_dirs has a folder for the bucket."""
    if not isinstance(bucket, str) or not bucket:
        raise context.error(bucket_loc, "expected a bucket name")
    overlay = context.overlay
    name = overlay.name(bucket)
    folder = overlay.local_dirs.get(bucket) or overlay.local_dirs.get(name)
    if folder is not None:
        draft.set(("source", "type"), "local_dir", bucket_loc)
        draft.set(("source", "path"), folder, bucket_loc)
        draft.set(("source", "bucket"), name, bucket_loc)
    else:
        draft.set(("source", "type"), "s3", bucket_loc)
        draft.set(("source", "bucket"), name, bucket_loc)
        if overlay.endpoints.get("s3"):
            draft.set(("source", "endpoint_url"), overlay.endpoints["s3"], bucket_loc)
    if events is not None:
        draft.set(("source", "events"), [events] if isinstance(events, str) else events, events_loc)
    for i, rule in enumerate(rules or []):
        kind = str(rule.get("Name", "")).lower() if isinstance(rule, dict) else ""
        if kind not in ("prefix", "suffix"):
            raise context.error((*rules_loc, i), "expected {Name: prefix|suffix, Value: ...}")
        draft.set(("source", kind), rule.get("Value", ""), (*rules_loc, i))


def state_enabled(context: Context, props: Mapping[str, Any], loc: Loc) -> bool | None:
    """A rule's or schedule's ``State`` (``ENABLED``/``DISABLED``) or ``Enabled``."""
    state = context.value(props, "State", loc)
    if state is not None:
        if str(state).upper() not in ("ENABLED", "DISABLED"):
            raise context.error((*loc, "State"), f"expected ENABLED or DISABLED, got {state!r}")
        return str(state).upper() == "ENABLED"
    enabled = context.value(props, "Enabled", loc)
    return None if enabled is None else bool(enabled)


def json_input(context: Context, value: Any, loc: Loc) -> Any:
    """A target's ``Input``: a JSON text (a value as it is)."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError as exc:
        raise context.error(loc, f"Input is not JSON: {exc}") from None


def bus_name(value: Any) -> str:
    """An event bus's name, from its name or ARN."""
    text = str(value or "default")
    return text.rsplit("event-bus/", 1)[-1] if text.startswith("arn:") else text
