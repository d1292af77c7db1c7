"""The events of a serverless.yml function, each as a mapping or a route of the bridge.

``sqs``, ``stream`` (DynamoDB), ``kafka`` and ``msk`` are event source mappings: their
camelCase options are renamed to the properties of ``AWS::Lambda::EventSourceMapping``
(each keeping its line) and mapped as those are
(:func:`bridge.templates.event_sources.event_source`); ``s3`` is a bucket's
notifications; ``schedule`` and ``eventBridge`` are schedules and rules; ``httpApi`` and
``http`` are routes of the service's HTTP or REST API. An option the bridge has no use
for is a ConfigError naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bridge.config_errors import Loc
from bridge.templates.buckets import s3_source
from bridge.templates.derived import Context, Derived, Draft, reject_unknown
from bridge.templates.event_sources import event_source
from bridge.templates.failures import set_on_failure, set_retries
from bridge.templates.routes import REST_PAYLOAD, note_authorizer, route_options
from bridge.templates.rules import CAMEL, set_event_rule, set_schedule, target_input

__all__ = ["EVENTS", "Event"]


@dataclass(frozen=True)
class Event:
    """One event of a function: ``config`` is what the event type names (a mapping, or
    the shorthand the type allows), at ``loc``; ``name`` the name of its mapping."""

    context: Context
    derived: Derived
    provider: Mapping[str, Any]
    service: str
    function: str
    name: str
    config: Any
    loc: Loc

    def draft(self, name: str | None = None) -> Draft:
        """A mapping of the function, named ``name`` or the event's mapping name."""
        return Draft.new(name or self.name, self.function, self.loc)

    def options(self, shorthand: str) -> dict[str, Any]:
        """The event's options; a value that is not a mapping is the option
        ``shorthand`` (``- sqs: arn:...`` is ``{arn: arn:...}``)."""
        return self.config if isinstance(self.config, dict) else {shorthand: self.config}


# ---------------------------------------------------------------- event source mappings

#: the Framework's options of every event source mapping -> AWS's property ("": none)
_COMMON = {
    "arn": "",
    "batchSize": "BatchSize",
    "enabled": "Enabled",
    "maximumBatchingWindow": "MaximumBatchingWindowInSeconds",
    "filterPatterns": "FilterCriteria",
    "functionResponseType": "FunctionResponseTypes",
}
_SQS = {**_COMMON, "maximumConcurrency": "MaximumConcurrency"}
_STREAM = {
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
_MSK = {
    **_COMMON,
    "topic": "Topics",
    "startingPosition": "StartingPosition",
    "startingPositionTimestamp": "StartingPositionTimestamp",
    "consumerGroupId": "ConsumerGroupId",
    "accessConfigurations": "",  # credentials: the overlay's kafka
    "saslScram512": "",
}
_KAFKA = {**_MSK, "bootstrapServers": "KafkaBootstrapServers"}


def _esm_props(event: Event, names: Mapping[str, str]) -> dict[str, Any]:
    """The event's options as the properties of an event source mapping (each keeps its
    line); an option not in ``names`` is a ConfigError."""
    context, loc = event.context, event.loc
    props: dict[str, Any] = {}
    for key, item in event.options("arn").items():
        if key not in names:
            raise context.error((*loc, key), "not supported by the bridge")
        aws = names[key]
        if not aws:
            continue
        props[aws] = item
        context.document.lines.setdefault((*loc, aws), context.line((*loc, key)))
    if "FilterCriteria" in props:
        patterns = context.value(props, "FilterCriteria", loc) or []
        props["FilterCriteria"] = {"Filters": [{"Pattern": p} for p in patterns]}
    if "FunctionResponseTypes" in props:
        props["FunctionResponseTypes"] = [props["FunctionResponseTypes"]]
    return props


def _map_source(event: Event, props: Mapping[str, Any], *, kind: str, arn_key: str | None) -> None:
    draft = event.draft()
    event_source(event.context, draft, props, event.loc, arn_key=arn_key, kind=kind)
    event.derived.add_mapping(draft)


def _arn(event: Event) -> Any:
    """The event's ``arn`` (or its shorthand), as the file has it."""
    return event.config["arn"] if isinstance(event.config, dict) else event.config


def _sqs(event: Event) -> None:
    props = _esm_props(event, _SQS)
    if "MaximumConcurrency" in props:
        props["ScalingConfig"] = {"MaximumConcurrency": props.pop("MaximumConcurrency")}
    props["Queue"] = _arn(event)
    _map_source(event, props, kind="SQS", arn_key="Queue")


def _stream(event: Event) -> None:
    props = _esm_props(event, _STREAM)
    props.setdefault("StartingPosition", "TRIM_HORIZON")  # the Framework's default
    if "DestinationConfig" in props:
        config = event.context.value(props, "DestinationConfig", event.loc) or {}
        failure = config.get("onFailure")
        arn = failure.get("arn") if isinstance(failure, dict) else failure
        props["DestinationConfig"] = {"OnFailure": {"Destination": arn}}
    props["Stream"] = _arn(event)
    _map_source(event, props, kind="DynamoDB", arn_key="Stream")


def _kafka(managed: bool) -> Callable[[Event], None]:
    """``msk`` (the cluster's ``arn``) or ``kafka`` (its ``bootstrapServers``)."""

    def derive(event: Event) -> None:
        props = _esm_props(event, _MSK if managed else _KAFKA)
        props.setdefault("StartingPosition", "TRIM_HORIZON")  # the Framework's default
        if "Topics" in props:
            props["Topics"] = [props["Topics"]]
        if not managed:
            _map_source(event, props, kind="SelfManagedKafka", arn_key=None)
            return
        props["Stream"] = event.config.get("arn") if isinstance(event.config, dict) else None
        _map_source(event, props, kind="MSK", arn_key="Stream")

    return derive


# ---------------------------------------------------------------- S3, schedules, rules


def _s3(event: Event) -> None:
    context, loc = event.context, event.loc
    config = event.options("bucket")
    reject_unknown(context, config, loc, {"bucket", "event", "rules", "existing", "forceDeploy"})
    rules = [
        {"Name": kind, "Value": value}
        for rule in context.value(config, "rules", loc) or []
        for kind, value in rule.items()
    ]
    draft = event.draft()
    s3_source(
        context,
        draft,
        context.value(config, "bucket", loc),
        context.value(config, "event", loc, "s3:ObjectCreated:*"),
        rules,
        bucket_loc=(*loc, "bucket"),
        events_loc=(*loc, "event"),
        rules_loc=(*loc, "rules"),
    )
    event.derived.add_mapping(draft)


_SCHEDULE = {"rate", "enabled", "name", "description", "method", "timezone"}


def _schedule(event: Event) -> None:
    """A ``schedule`` mapping for each of its rates (``-1``, ``-2``... when several)."""
    context, loc = event.context, event.loc
    config = event.options("rate")
    reject_unknown(context, config, loc, _SCHEDULE | _input_keys())
    rates = context.value(config, "rate", loc)
    rates = [rates] if isinstance(rates, str) else rates or []
    for n, rate in enumerate(rates):
        draft = event.draft(event.name if len(rates) == 1 else f"{event.name}-{n + 1}")
        set_schedule(draft, rate, loc=loc, expression_loc=(*loc, "rate"))
        for key, option in (("timezone", "timezone"), ("name", "rule_name")):
            if key in config:
                draft.set(("source", option), context.value(config, key, loc), (*loc, key))
        target_input(context, draft, config, loc, CAMEL)
        _set_enabled(context, draft, config, loc)
        event.derived.add_mapping(draft)


_EVENT_BRIDGE = {"eventBus", "schedule", "pattern", "name", "enabled", "description"}
#: the Framework's names of a rule target's retry limits
_RETRIES = (
    ("maximumRetryAttempts", "maximum_retry_attempts"),
    ("maximumEventAge", "maximum_record_age_seconds"),
)


def _event_bridge(event: Event) -> None:
    """A rule on a bus (``pattern``) or a schedule (``schedule``), with its target's
    input, retries and dead-letter queue."""
    context, config, loc = event.context, event.config, event.loc
    if not isinstance(config, dict):
        raise context.error(loc, "expected a mapping (pattern: or schedule:)")
    known = _EVENT_BRIDGE | _input_keys() | {"retryPolicy", "deadLetterQueueArn"}
    reject_unknown(context, config, loc, known)
    draft = event.draft(str(context.value(config, "name", loc) or ""))
    if "schedule" in config:
        expression = context.value(config, "schedule", loc)
        set_schedule(draft, expression, loc=loc, expression_loc=(*loc, "schedule"))
    else:
        set_event_rule(
            context, event.derived, draft, config, loc, bus_key="eventBus", pattern_key="pattern"
        )
    target_input(context, draft, config, loc, CAMEL)
    _set_enabled(context, draft, config, loc)
    policy = context.value(config, "retryPolicy", loc) or {}
    set_retries(draft, policy, (*loc, "retryPolicy"), _RETRIES)
    if "deadLetterQueueArn" in config:
        arn = context.value(config, "deadLetterQueueArn", loc)
        set_on_failure(context, draft, arn, (*loc, "deadLetterQueueArn"))
    event.derived.add_mapping(draft)


def _input_keys() -> set[str]:
    return {CAMEL.input, CAMEL.path, CAMEL.transformer}


def _set_enabled(context: Context, draft: Draft, config: Mapping[str, Any], loc: Loc) -> None:
    if "enabled" in config:
        draft.set(("enabled",), bool(context.value(config, "enabled", loc)), (*loc, "enabled"))


# ---------------------------------------------------------------- routes


def _api(http_api: bool) -> Callable[[Event], None]:
    """A route of the service's HTTP API (``httpApi``: ``{service}-httpApi``, stage
    ``$default``) or REST API (``http``: ``{service}-http``, the provider's stage)."""

    def derive(event: Event) -> None:
        method, path = _method_path(event)
        verb = "ANY" if str(method).strip() in ("*", "any", "ANY") else str(method).upper()
        provider = event.provider
        if http_api:
            route = "$default" if path == "*" else f"{verb} {path}"
            version = ((provider.get("httpApi") or {}).get("payload")) or "2.0"
            options = route_options(payload_format_version=str(version), stage="$default")
            api = f"{event.service}-httpApi"
        else:
            route = f"{verb} /{str(path).lstrip('/')}"
            stage = str(provider.get("stage") or "dev")
            options = route_options(payload_format_version=REST_PAYLOAD, stage=stage)
            api = f"{event.service}-http"
        event.derived.add_route(api, route, event.function, event.loc, options)

    return derive


def _method_path(event: Event) -> tuple[Any, Any]:
    """The route's method and path: ``'METHOD /path'``, ``'*'`` or ``{method, path}``."""
    config = event.config
    if isinstance(config, dict):
        if "authorizer" in config:
            note_authorizer(event.derived, event.context.document.where(event.loc))
        method, path = config.get("method"), config.get("path")
    elif str(config).strip() == "*":
        method, path = "*", "*"
    else:
        method, _, path = str(config).strip().partition(" ")
    if not path:
        raise event.context.error(event.loc, "expected 'METHOD /path' or {method, path}")
    return method, path


EVENTS: dict[str, Callable[[Event], None]] = {
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
