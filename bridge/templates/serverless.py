"""A Serverless Framework ``serverless.yml`` as a bridge config.

``functions.<name>`` (``handler``, ``runtime``, ``environment``, ``timeout``,
``memorySize``, with ``provider``'s as defaults: Python runtimes, 6 s, 1024 MB) and each
of its ``events``: ``sqs``, ``stream`` (DynamoDB), ``kafka``, ``msk``, ``s3``,
``schedule``, ``eventBridge``, ``httpApi`` and ``http``. ``resources.Resources`` are
CloudFormation resources for ``Ref`` and ``Fn::GetAtt``. The Framework's variables
``${self:...}``, ``${opt:stage}`` / ``${sls:stage}`` (``provider.stage``, default
``dev``), ``${opt:region}`` / ``${aws:region}``, ``${aws:accountId}`` and
``${env:NAME}`` (each with its ``, default``) are resolved; others (``${ssm:...}``,
``${cf:...}``, ``${file(...)}``) are an error where they are used.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from bridge.config_errors import Loc
from bridge.errors import ConfigError
from bridge.templates.cloudformation import pseudo_parameters
from bridge.templates.derive import (
    Context,
    Derived,
    Draft,
    bus_name,
    event_source,
    function_entry,
    json_input,
    s3_source,
    unknown,
)
from bridge.templates.intrinsics import Resolver
from bridge.templates.loader import Document
from bridge.templates.overlay import Overlay

__all__ = ["derive_serverless"]

_VARIABLE = re.compile(
    r"\$\{(self|opt|sls|env|aws|ssm|cf|s3|file|param|strToBool)([:(][^,}]*)?(?:,\s*([^}]*))?\}"
)


class _ServerlessResolver(Resolver):
    """CloudFormation's functions plus the Framework's ``${...}`` variables."""

    def __init__(
        self, document: Document, overlay: Overlay, options: Mapping[str, str], **kwargs: Any
    ) -> None:
        super().__init__(document, **kwargs)
        self.overlay = overlay
        self.options = options  # ${opt:NAME}: the CLI options of `serverless deploy`
        provider = document.data.get("provider") or {}
        self.stage = "dev"
        stage = provider.get("stage") if isinstance(provider, dict) else None
        self.stage = str(
            options.get("stage") or self.resolve(stage, ("provider", "stage")) or "dev"
        )

    def resolve(self, value: Any, loc: Loc) -> Any:
        if isinstance(value, str) and "${" in value:
            value = self._variables(value, loc)
        return super().resolve(value, loc)

    def _variables(self, text: str, loc: Loc) -> Any:
        whole = _VARIABLE.fullmatch(text.strip())
        if whole:
            return self._variable(whole, loc)
        return _VARIABLE.sub(lambda m: str(self._variable(m, loc)), text)

    def _variable(self, match: re.Match[str], loc: Loc) -> Any:
        source, rest, default = match.group(1), (match.group(2) or "")[1:], match.group(3)
        value: Any = None
        if source == "self":
            value = self.document.data
            for part in rest.split(".") if rest else []:
                value = value.get(part) if isinstance(value, dict) else None
            if isinstance(value, str) and "${" in value:
                value = self._variables(value, loc)
        elif source == "opt":
            value = self.options.get(rest)
            if value is None and rest == "region":
                value = self.overlay.region
        elif source == "sls" and rest == "stage":
            value = self.stage
        elif source == "aws" and rest == "region":
            value = self.overlay.region
        elif source == "aws" and rest == "accountId":
            value = self.overlay.account_id
        elif source == "env":
            value = os.environ.get(rest)
        if value is None and default is not None:
            value = default.strip().strip("'\"")
        if value is None:
            raise self.document.error(
                loc,
                f"{match.group(0)}: cannot be resolved here (self:, opt:stage, "
                "opt:region, sls:stage, aws:region, aws:accountId, env: can)",
            )
        return value


def derive_serverless(
    document: Document, overlay: Overlay, overrides: Mapping[str, str]
) -> Derived:
    """The bridge config of a serverless.yml; ``overrides`` (and the overlay's
    ``parameters``) are the CLI options ``${opt:NAME}`` reads (``stage``, ``region``...)."""
    data = document.data
    if not isinstance(data, dict) or not isinstance(data.get("functions"), dict):
        raise ConfigError("not a serverless.yml: no functions", where=str(document.path))
    resources = ((data.get("resources") or {}).get("Resources")) or {}
    service = str(data.get("service") or document.path.resolve().parent.name)
    resolver = _ServerlessResolver(
        document,
        overlay,
        {**{k: str(v) for k, v in overlay.parameters.items()}, **overrides},
        resources=resources,
        parameters={},
        pseudo=pseudo_parameters(overlay, overlay.stack_name or service),
        names=overlay.names,
        sqs_endpoint=overlay.endpoints.get("sqs"),
        resources_loc=("resources", "Resources"),
    )
    context = Context(document, resolver, overlay)
    derived = Derived(context)
    provider = data.get("provider") or {}
    for name, function in data["functions"].items():
        loc: Loc = ("functions", name)
        if not isinstance(function, dict):
            raise context.error(loc, "expected a mapping")
        _function(context, derived, provider, service, name, function, loc)
    derived.settle()
    return derived


def _function(
    context: Context,
    derived: Derived,
    provider: Mapping[str, Any],
    service: str,
    name: str,
    function: Mapping[str, Any],
    loc: Loc,
) -> None:
    value = context.value
    env = {
        **(value(provider, "environment", ("provider",)) or {}),
        **(value(function, "environment", loc) or {}),
    }
    runtime_loc = (*loc, "runtime") if "runtime" in function else ("provider", "runtime")
    entry: dict[str, Any] | ConfigError
    try:
        entry = function_entry(
            context,
            name,
            runtime=value(function, "runtime", loc) or value(provider, "runtime", ("provider",)),
            handler=value(function, "handler", loc),
            code=context.folder,
            env=env,
            timeout=value(function, "timeout", loc) or value(provider, "timeout", ("provider",), 6),
            memory_size=value(function, "memorySize", loc)
            or value(provider, "memorySize", ("provider",), 1024),
            loc=loc,
            runtime_loc=runtime_loc,
            code_problem="a container image is not run by the bridge"
            if "image" in function
            else None,
        )
    except ConfigError as exc:
        entry = exc
    for i, event in enumerate(function.get("events") or []):
        eloc = (*loc, "events", i)
        if not isinstance(event, dict) or len(event) != 1:
            raise context.error(eloc, "expected one event type: {sqs: ...}, {http: ...}...")
        ((kind, config),) = event.items()
        derive_event = _EVENTS.get(kind)
        if derive_event is None:
            raise context.error(
                (*eloc, kind),
                f"event type {kind!r}: the bridge has no such trigger (it maps "
                f"{', '.join(_EVENTS)})",
            )
        draft_name = f"{name}-{kind}-{i + 1}"
        derive_event(context, derived, provider, service, name, draft_name, config, (*eloc, kind))
    derived.add_function(name, entry, loc)


def _aws_props(
    context: Context, config: Mapping[str, Any], loc: Loc, names: Mapping[str, str]
) -> dict[str, Any]:
    """The Framework's camelCase options as the PascalCase properties of an event source
    mapping (each keeps its line); an option not in ``names`` is an error."""
    props: dict[str, Any] = {}
    for key, item in config.items():
        if key not in names:
            raise context.error((*loc, key), "not supported by the bridge")
        aws = names[key]
        if not aws:
            continue
        props[aws] = item
        context.document.lines.setdefault((*loc, aws), context.line((*loc, key)))
    return props


_COMMON = {
    "arn": "",
    "batchSize": "BatchSize",
    "enabled": "Enabled",
    "maximumBatchingWindow": "MaximumBatchingWindowInSeconds",
    "filterPatterns": "FilterCriteria",
    "functionResponseType": "FunctionResponseTypes",
}


def _esm_props(context: Context, config: Any, loc: Loc, names: Mapping[str, str]) -> dict[str, Any]:
    config = {"arn": config} if not isinstance(config, dict) else config
    props = _aws_props(context, config, loc, names)
    if "FilterCriteria" in props:
        patterns = context.value(props, "FilterCriteria", loc) or []
        props["FilterCriteria"] = {"Filters": [{"Pattern": p} for p in patterns]}
    if "FunctionResponseTypes" in props:
        props["FunctionResponseTypes"] = [props["FunctionResponseTypes"]]
    return props


def _sqs(
    context: Context,
    derived: Derived,
    _p: Any,
    _s: str,
    function: str,
    name: str,
    config: Any,
    loc: Loc,
) -> None:
    props = _esm_props(
        context, config, loc, {**_COMMON, "maximumConcurrency": "MaximumConcurrency"}
    )
    if "MaximumConcurrency" in props:
        props["ScalingConfig"] = {"MaximumConcurrency": props.pop("MaximumConcurrency")}
    props["Queue"] = config["arn"] if isinstance(config, dict) else config
    draft = Draft.new(name, function, loc)
    event_source(context, draft, props, loc, arn_key="Queue", kind="SQS")
    derived.add_mapping(draft)


def _stream(
    context: Context,
    derived: Derived,
    _p: Any,
    _s: str,
    function: str,
    name: str,
    config: Any,
    loc: Loc,
) -> None:
    names = {
        **_COMMON,
        "type": "",
        "batchWindow": "MaximumBatchingWindowInSeconds",
        "startingPosition": "StartingPosition",
        "startingPositionTimestamp": "StartingPositionTimestamp",
        "maximumRetryAttempts": "MaximumRetryAttempts",
        "maximumRecordAgeInSeconds": "MaximumRecordAgeInSeconds",
        "bisectBatchOnFunctionError": "BisectBatchOnFunctionError",
        "parallelizationFactor": "ParallelizationFactor",
        "tumblingWindowInSeconds": "TumblingWindowInSeconds",
        "destinations": "DestinationConfig",
    }
    props = _esm_props(context, config, loc, names)
    props.setdefault("StartingPosition", "TRIM_HORIZON")  # the Framework's default
    if "DestinationConfig" in props:
        failure = (context.value(props, "DestinationConfig", loc) or {}).get("onFailure")
        arn = failure.get("arn") if isinstance(failure, dict) else failure
        props["DestinationConfig"] = {"OnFailure": {"Destination": arn}}
    props["Stream"] = config["arn"] if isinstance(config, dict) else config
    draft = Draft.new(name, function, loc)
    event_source(context, draft, props, loc, arn_key="Stream", kind="DynamoDB")
    derived.add_mapping(draft)


def _kafka(managed: bool) -> Callable[..., None]:
    def derive(
        context: Context,
        derived: Derived,
        _p: Any,
        _s: str,
        function: str,
        name: str,
        config: Any,
        loc: Loc,
    ) -> None:
        names = {
            **_COMMON,
            "topic": "Topics",
            "startingPosition": "StartingPosition",
            "startingPositionTimestamp": "StartingPositionTimestamp",
            "consumerGroupId": "ConsumerGroupId",
            "accessConfigurations": "",  # credentials: the overlay's kafka
            "saslScram512": "",
        }
        if not managed:
            names["bootstrapServers"] = "KafkaBootstrapServers"
        props = _esm_props(context, config, loc, names)
        props.setdefault("StartingPosition", "TRIM_HORIZON")  # the Framework's default
        if "Topics" in props:
            props["Topics"] = [props["Topics"]]
        if managed:
            props["Stream"] = config.get("arn") if isinstance(config, dict) else None
        draft = Draft.new(name, function, loc)
        kind = "MSK" if managed else "SelfManagedKafka"
        event_source(context, draft, props, loc, arn_key="Stream" if managed else None, kind=kind)
        derived.add_mapping(draft)

    return derive


def _s3(
    context: Context,
    derived: Derived,
    _p: Any,
    _s: str,
    function: str,
    name: str,
    config: Any,
    loc: Loc,
) -> None:
    config = {"bucket": config} if not isinstance(config, dict) else config
    unknown(context, config, loc, {"bucket", "event", "rules", "existing", "forceDeploy"})
    rules = [
        {"Name": kind, "Value": value}
        for rule in context.value(config, "rules", loc) or []
        for kind, value in rule.items()
    ]
    draft = Draft.new(name, function, loc)
    s3_source(
        context,
        draft,
        context.value(config, "bucket", loc),
        context.value(config, "event", loc, "s3:ObjectCreated:*"),
        rules,
        loc,
        bucket_loc=(*loc, "bucket"),
        events_loc=(*loc, "event"),
        rules_loc=(*loc, "rules"),
    )
    derived.add_mapping(draft)


def _schedule(
    context: Context,
    derived: Derived,
    _p: Any,
    _s: str,
    function: str,
    name: str,
    config: Any,
    loc: Loc,
) -> None:
    config = {"rate": config} if not isinstance(config, dict) else config
    unknown(
        context,
        config,
        loc,
        {
            "rate",
            "enabled",
            "name",
            "description",
            "input",
            "inputPath",
            "inputTransformer",
            "method",
            "timezone",
        },
    )
    rates = context.value(config, "rate", loc)
    rates = [rates] if isinstance(rates, str) else rates or []
    for n, rate in enumerate(rates):
        draft = Draft.new(name if len(rates) == 1 else f"{name}-{n + 1}", function, loc)
        draft.set(("source", "type"), "schedule", loc)
        draft.set(("source", "expression"), rate, (*loc, "rate"))
        if "timezone" in config:
            draft.set(
                ("source", "timezone"), context.value(config, "timezone", loc), (*loc, "timezone")
            )
        if "name" in config:
            draft.set(("source", "rule_name"), context.value(config, "name", loc), (*loc, "name"))
        _target_input(context, draft, config, loc)
        if "enabled" in config:
            draft.set(("enabled",), bool(context.value(config, "enabled", loc)), (*loc, "enabled"))
        derived.add_mapping(draft)


def _target_input(context: Context, draft: Draft, config: Mapping[str, Any], loc: Loc) -> None:
    if "input" in config:
        value = json_input(context, context.value(config, "input", loc), (*loc, "input"))
        draft.set(("source", "input"), value, (*loc, "input"))
    if "inputPath" in config:
        draft.set(
            ("source", "input_path"), context.value(config, "inputPath", loc), (*loc, "inputPath")
        )
    if "inputTransformer" in config:
        transformer = context.value(config, "inputTransformer", loc) or {}
        draft.set(
            ("source", "input_transformer"),
            {
                "input_paths_map": transformer.get("inputPathsMap") or {},
                "input_template": transformer.get("inputTemplate"),
            },
            (*loc, "inputTransformer"),
        )


def _event_bridge(
    context: Context,
    derived: Derived,
    _p: Any,
    _s: str,
    function: str,
    name: str,
    config: Any,
    loc: Loc,
) -> None:
    if not isinstance(config, dict):
        raise context.error(loc, "expected a mapping (pattern: or schedule:)")
    known = {"eventBus", "schedule", "pattern", "input", "inputPath", "inputTransformer", "name"}
    unknown(
        context,
        config,
        loc,
        known | {"enabled", "retryPolicy", "deadLetterQueueArn", "description"},
    )
    draft = Draft.new(str(context.value(config, "name", loc) or name), function, loc)
    if "schedule" in config:
        draft.set(("source", "type"), "schedule", loc)
        draft.set(
            ("source", "expression"), context.value(config, "schedule", loc), (*loc, "schedule")
        )
    else:
        bus = bus_name(context.value(config, "eventBus", loc))
        draft.set(("source", "type"), "eventbridge", loc)
        draft.set(("source", "event_bus_name"), bus, (*loc, "eventBus"))
        draft.set(
            ("source", "event_pattern"), context.value(config, "pattern", loc), (*loc, "pattern")
        )
        derived.add_bus(bus, loc)
    _target_input(context, draft, config, loc)
    if "enabled" in config:
        draft.set(("enabled",), bool(context.value(config, "enabled", loc)), (*loc, "enabled"))
    policy = context.value(config, "retryPolicy", loc) or {}
    for key, option in (
        ("maximumRetryAttempts", "maximum_retry_attempts"),
        ("maximumEventAge", "maximum_record_age_seconds"),
    ):
        if key in policy:
            draft.set((option,), policy[key], (*loc, "retryPolicy", key))
    if "deadLetterQueueArn" in config:
        dloc = (*loc, "deadLetterQueueArn")
        draft.set(
            ("on_failure",),
            context.destination(context.value(config, "deadLetterQueueArn", loc), dloc),
            dloc,
        )
    derived.add_mapping(draft)


def _api(http_api: bool) -> Callable[..., None]:
    def derive(
        context: Context,
        derived: Derived,
        provider: Mapping[str, Any],
        service: str,
        function: str,
        _name: str,
        config: Any,
        loc: Loc,
    ) -> None:
        if isinstance(config, dict):
            method, path = config.get("method"), config.get("path")
            if "authorizer" in config:
                derived.notes.append(
                    f"{context.document.where(loc)}: authorizer not enforced "
                    "(the bridge has no authorizers)"
                )
        elif str(config).strip() == "*":
            method, path = "*", "*"
        else:
            method, _, path = str(config).strip().partition(" ")
        if not path:
            raise context.error(loc, "expected 'METHOD /path' or {method, path}")
        verb = "ANY" if str(method).strip() in ("*", "any", "ANY") else str(method).upper()
        if http_api:
            route = "$default" if path == "*" else f"{verb} {path}"
            version = ((provider.get("httpApi") or {}).get("payload")) or "2.0"
            options = {"type": "http", "payload_format_version": str(version), "stage": "$default"}
            api = f"{service}-httpApi"
        else:
            route = f"{verb} /{str(path).lstrip('/')}"
            stage = str(provider.get("stage") or "dev")
            options = {"type": "http", "payload_format_version": "1.0", "stage": stage}
            api = f"{service}-http"
        derived.add_route(api, route, function, loc, options)

    return derive


_EVENTS: dict[str, Callable[..., None]] = {
    "sqs": _sqs,
    "stream": _stream,
    "kafka": _kafka(managed=False),
    "msk": _kafka(managed=True),
    "s3": _s3,
    "schedule": _schedule,
    "eventBridge": _event_bridge,
    "httpApi": _api(http_api=True),
    "http": _api(http_api=False),
}
