"""SAM's ``AWS::Serverless::Function``: the function and each of its ``Events``.

Event types and what they become (property names as SAM documents them):

- ``SQS`` (``Queue``), ``DynamoDB`` (``Stream``), ``MSK`` (``Stream``, ``Topics``),
  ``SelfManagedKafka`` (``KafkaBootstrapServers``, ``Topics``): an event source mapping,
  with the options of ``AWS::Lambda::EventSourceMapping``
- ``S3`` (``Bucket``, ``Events``, ``Filter``): an ``s3`` (or ``local_dir``) mapping
- ``Schedule`` (``Schedule``), ``ScheduleV2`` (``ScheduleExpression``,
  ``ScheduleExpressionTimezone``): a ``schedule`` mapping
- ``EventBridgeRule``, ``CloudWatchEvent`` (``Pattern``, ``EventBusName``, ``Input``,
  ``InputPath``, ``InputTransformer``): an ``eventbridge`` mapping and its bus
- ``Api`` (REST, payload 1.0) and ``HttpApi`` (payload 2.0 by default): a route of an API

Any other type (Kinesis, SNS, MQ, DocumentDB, IoTRule, Cognito...) is a ConfigError naming
the event and its ``Type``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bridge.config_errors import Loc
from bridge.errors import ConfigError
from bridge.templates.derive import (
    Context,
    Derived,
    Draft,
    bus_name,
    event_source,
    function_entry,
    invoke_config,
    json_input,
    retry_policy,
    s3_source,
    state_enabled,
    unknown,
)

__all__ = ["EVENT_TYPES", "sam_function"]

#: SAM's implicit APIs (when an event names no API of its own)
REST_API, HTTP_API = "ServerlessRestApi", "ServerlessHttpApi"


def sam_function(
    context: Context, derived: Derived, name: str, props: Mapping[str, Any], loc: Loc
) -> None:
    """Derive the function ``name`` (``props``: its Properties merged with the template's
    ``Globals.Function``) and its events."""
    ploc = (*loc, "Properties")
    value = context.value
    code_problem = None
    code: Path | None = context.folder
    code_uri = value(props, "CodeUri", ploc)
    if "InlineCode" in props:
        code, code_problem = None, "InlineCode is not written out by the bridge"
    elif value(props, "PackageType", ploc) == "Image":
        code, code_problem = None, "a container image (PackageType: Image) is not run by the bridge"
    elif isinstance(code_uri, str) and not code_uri.startswith("s3://"):
        code = context.folder / code_uri
    elif code_uri is not None:
        code, code_problem = None, f"CodeUri {code_uri!r} is not a local folder"
    env = (value(props, "Environment", ploc) or {}).get("Variables") or {}
    entry: dict[str, Any] | ConfigError
    try:
        entry = function_entry(
            context,
            name,
            runtime=value(props, "Runtime", ploc),
            handler=value(props, "Handler", ploc),
            code=code,
            env=env,
            timeout=value(props, "Timeout", ploc),
            memory_size=value(props, "MemorySize", ploc),
            loc=loc,
            runtime_loc=(*ploc, "Runtime") if "Runtime" in props else loc,
            code_problem=code_problem,
        )
    except ConfigError as exc:
        entry = exc
    events = props.get("Events") or {}
    eloc = (*ploc, "Events")
    for event_name, event in events.items():
        where = (*eloc, event_name)
        kind = event.get("Type") if isinstance(event, dict) else None
        derive_event = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
        if derive_event is None:
            raise context.error(
                (*where, "Type"),
                f"event type {kind!r}: the bridge has no such trigger (it maps "
                f"{', '.join(EVENT_TYPES)})",
            )
        event_props = event.get("Properties") or {}
        derive_event(context, derived, name, props, event_name, event_props, (*where, "Properties"))
    derived.add_function(name, entry, loc)


def _pull(kind: str, arn_key: str | None) -> Callable[..., None]:
    def derive(
        context: Context,
        derived: Derived,
        function: str,
        _function_props: Mapping[str, Any],
        event: str,
        props: Mapping[str, Any],
        loc: Loc,
    ) -> None:
        draft = Draft.new(f"{function}-{event}", function, loc)
        event_source(context, draft, props, loc, arn_key=arn_key, kind=kind)
        derived.add_mapping(draft)

    return derive


def _s3(
    context: Context,
    derived: Derived,
    function: str,
    function_props: Mapping[str, Any],
    event: str,
    props: Mapping[str, Any],
    loc: Loc,
) -> None:
    draft = Draft.new(f"{function}-{event}", function, loc)
    rules = ((context.value(props, "Filter", loc) or {}).get("S3Key") or {}).get("Rules")
    s3_source(
        context,
        draft,
        context.value(props, "Bucket", loc),
        context.value(props, "Events", loc),
        rules,
        loc,
        bucket_loc=(*loc, "Bucket"),
        events_loc=(*loc, "Events"),
        rules_loc=(*loc, "Filter", "S3Key", "Rules"),
    )
    _async(context, draft, function_props, loc)
    unknown(context, props, loc, {"Bucket", "Events", "Filter"})
    derived.add_mapping(draft)


def _async(context: Context, draft: Draft, function_props: Mapping[str, Any], loc: Loc) -> None:
    """The function's EventInvokeConfig, for a mapping delivered as asynchronous invocation."""
    if "EventInvokeConfig" in function_props:
        config = context.resolver.resolve(function_props["EventInvokeConfig"], loc)
        invoke_config(context, draft, config, loc)


_SCHEDULE_IGNORED = {
    "Description",
    "FlexibleTimeWindow",  # "within the window": on time is within it
    "GroupName",
    "KmsKeyArn",
    "RoleArn",
    "PermissionsBoundary",
    "OmitName",
    "Target",
}


def _schedule(
    context: Context,
    derived: Derived,
    function: str,
    function_props: Mapping[str, Any],
    event: str,
    props: Mapping[str, Any],
    loc: Loc,
) -> None:
    v2 = "ScheduleExpression" in props
    key = "ScheduleExpression" if v2 else "Schedule"
    draft = Draft.new(f"{function}-{event}", function, loc)
    draft.set(("source", "type"), "schedule", loc)
    draft.set(("source", "expression"), context.value(props, key, loc), (*loc, key))
    if "ScheduleExpressionTimezone" in props:
        zone = context.value(props, "ScheduleExpressionTimezone", loc)
        draft.set(("source", "timezone"), zone, (*loc, "ScheduleExpressionTimezone"))
    if "Input" in props:
        value = json_input(context, context.value(props, "Input", loc), (*loc, "Input"))
        draft.set(("source", "input"), value, (*loc, "Input"))
    for rule_key in ("Name", "RuleName"):
        if rule_key in props:
            draft.set(
                ("source", "rule_name"), context.value(props, rule_key, loc), (*loc, rule_key)
            )
    enabled = state_enabled(context, props, loc)
    if enabled is not None:
        draft.set(("enabled",), enabled, loc)
    _async(context, draft, function_props, loc)
    retry_policy(context, draft, props, loc)
    known = {key, "ScheduleExpressionTimezone", "Input", "Name", "RuleName", "State", "Enabled"}
    unknown(context, props, loc, known | _SCHEDULE_IGNORED | {"RetryPolicy", "DeadLetterConfig"})
    derived.add_mapping(draft)


def _rule(
    context: Context,
    derived: Derived,
    function: str,
    function_props: Mapping[str, Any],
    event: str,
    props: Mapping[str, Any],
    loc: Loc,
) -> None:
    name = context.value(props, "RuleName", loc) or f"{function}-{event}"
    draft = Draft.new(str(name), function, loc)
    bus = bus_name(context.value(props, "EventBusName", loc))
    draft.set(("source", "type"), "eventbridge", loc)
    draft.set(("source", "event_bus_name"), bus, (*loc, "EventBusName"))
    if "Pattern" not in props:
        raise context.error(loc, "Pattern: required (the bridge's rules match a pattern)")
    draft.set(("source", "event_pattern"), context.value(props, "Pattern", loc), (*loc, "Pattern"))
    if "Input" in props:
        value = json_input(context, context.value(props, "Input", loc), (*loc, "Input"))
        draft.set(("source", "input"), value, (*loc, "Input"))
    if "InputPath" in props:
        draft.set(
            ("source", "input_path"), context.value(props, "InputPath", loc), (*loc, "InputPath")
        )
    if "InputTransformer" in props:
        transformer = context.value(props, "InputTransformer", loc) or {}
        draft.set(
            ("source", "input_transformer"),
            {
                "input_paths_map": transformer.get("InputPathsMap") or {},
                "input_template": transformer.get("InputTemplate"),
            },
            (*loc, "InputTransformer"),
        )
    enabled = state_enabled(context, props, loc)
    if enabled is not None:
        draft.set(("enabled",), enabled, loc)
    _async(context, draft, function_props, loc)
    retry_policy(context, draft, props, loc)
    known = {"EventBusName", "Pattern", "Input", "InputPath", "InputTransformer", "RuleName"}
    known |= {"State", "Enabled", "RetryPolicy", "DeadLetterConfig", "Target", "Description"}
    unknown(context, props, loc, known)
    derived.add_bus(bus, loc)
    derived.add_mapping(draft)


def _api(http: bool) -> Callable[..., None]:
    def derive(
        context: Context,
        derived: Derived,
        function: str,
        _function_props: Mapping[str, Any],
        _event: str,
        props: Mapping[str, Any],
        loc: Loc,
    ) -> None:
        id_key = "ApiId" if http else "RestApiId"
        api_ref = props.get(id_key)
        api = (
            api_ref["Ref"]
            if isinstance(api_ref, dict) and isinstance(api_ref.get("Ref"), str)
            else context.value(props, id_key, loc) or (HTTP_API if http else REST_API)
        )
        path, method = context.value(props, "Path", loc), context.value(props, "Method", loc)
        if http and path is None and method is None:
            route = "$default"
        elif not path or not method:
            raise context.error(loc, "Path and Method: required")
        else:
            verb = str(method).upper()
            route = f"{'ANY' if verb in ('ANY', 'X-AMAZON-APIGATEWAY-ANY-METHOD') else verb} {path}"
        options: dict[str, Any] = {"type": "http"}
        options["payload_format_version"] = (
            str(context.value(props, "PayloadFormatVersion", loc, "2.0")) if http else "1.0"
        )
        resource = context.resolver.resources.get(api) or {}
        api_props = resource.get("Properties") or {} if isinstance(resource, dict) else {}
        api_loc = (*context.resolver.resources_loc, api, "Properties")
        stage = context.value(api_props, "StageName", api_loc) or ("$default" if http else "Prod")
        options["stage"] = stage
        if "TimeoutInMillis" in props:
            options["timeout_in_millis"] = context.value(props, "TimeoutInMillis", loc)
        cors = context.value(api_props, "CorsConfiguration", api_loc)
        if http and isinstance(cors, dict):
            options["cors"] = {
                option: cors[aws]
                for aws, option in (
                    ("AllowOrigins", "allow_origins"),
                    ("AllowMethods", "allow_methods"),
                    ("AllowHeaders", "allow_headers"),
                    ("ExposeHeaders", "expose_headers"),
                    ("MaxAge", "max_age"),
                    ("AllowCredentials", "allow_credentials"),
                )
                if aws in cors
            }
        auth = context.value(props, "Auth", loc)
        if isinstance(auth, dict) and auth.get("Authorizer") not in (None, "NONE"):
            derived.notes.append(
                f"{context.document.where((*loc, 'Auth'))}: route {route!r} of API {api}: "
                "authorizer not enforced (the bridge has no authorizers)"
            )
        known = {"Path", "Method", id_key, "PayloadFormatVersion", "TimeoutInMillis", "Auth"}
        known |= {"Stage", "RouteSettings", "RequestModel", "RequestParameters"}
        unknown(context, props, loc, known)
        derived.add_route(str(api), route, function, loc, options)

    return derive


EVENT_TYPES: dict[str, Callable[..., None]] = {
    "SQS": _pull("SQS", "Queue"),
    "DynamoDB": _pull("DynamoDB", "Stream"),
    "MSK": _pull("MSK", "Stream"),
    "SelfManagedKafka": _pull("SelfManagedKafka", None),
    "S3": _s3,
    "Schedule": _schedule,
    "ScheduleV2": _schedule,
    "EventBridgeRule": _rule,
    "CloudWatchEvent": _rule,
    "Api": _api(http=False),
    "HttpApi": _api(http=True),
}
