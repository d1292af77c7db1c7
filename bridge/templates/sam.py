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

The S3, schedule and rule mappings take the function's ``EventInvokeConfig`` (retries,
event age, on-failure destination), as AWS invokes them asynchronously. Any other type
(Kinesis, SNS, MQ, DocumentDB, IoTRule, Cognito...) is a ConfigError naming the event and
its ``Type``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.config_errors import Loc
from bridge.templates.buckets import s3_notification
from bridge.templates.derived import Context, Derived, Draft, reject_unknown
from bridge.templates.event_sources import event_source
from bridge.templates.failures import invoke_config, retry_policy
from bridge.templates.functions import properties_entry
from bridge.templates.routes import (
    REST_PAYLOAD,
    cors_options,
    note_authorizer,
    route_options,
)
from bridge.templates.rules import (
    set_event_rule,
    set_input,
    set_schedule,
    set_state,
    target_input,
)

__all__ = ["EVENT_TYPES", "sam_function"]

#: SAM's implicit APIs (when an event names no API of its own)
REST_API, HTTP_API = "ServerlessRestApi", "ServerlessHttpApi"


def sam_function(
    context: Context, derived: Derived, name: str, props: Mapping[str, Any], loc: Loc
) -> None:
    """Derive the function ``name`` (``props``: its Properties merged with the template's
    ``Globals.Function``) and its events; raise ConfigError for an event the bridge cannot
    map (the function itself, only if an event names it: :meth:`Derived.settle`)."""
    code, code_problem = _code(context, props, (*loc, "Properties"))
    entry = properties_entry(context, name, props, loc, code=code, code_problem=code_problem)
    eloc = (*loc, "Properties", "Events")
    for event_name, event in (props.get("Events") or {}).items():
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
        where = (*where, "Properties")
        derive_event(_Event(context, derived, name, props, event_name, event_props, where))
    derived.add_function(name, entry, loc)


def _code(context: Context, props: Mapping[str, Any], ploc: Loc) -> tuple[Path | None, str | None]:
    """The function's code folder (``CodeUri``, the template's folder without one), or
    why it has none here."""
    code_uri = context.value(props, "CodeUri", ploc)
    if "InlineCode" in props:
        return None, "InlineCode is not written out by the bridge"
    if context.value(props, "PackageType", ploc) == "Image":
        return None, "a container image (PackageType: Image) is not run by the bridge"
    if isinstance(code_uri, str) and not code_uri.startswith("s3://"):
        return context.folder / code_uri, None
    if code_uri is not None:
        return None, f"CodeUri {code_uri!r} is not a local folder"
    return context.folder, None


@dataclass(frozen=True)
class _Event:
    """One event of a function: ``props`` are its Properties, at ``loc``."""

    context: Context
    derived: Derived
    function: str
    function_props: Mapping[str, Any]
    name: str
    props: Mapping[str, Any]
    loc: Loc

    def draft(self, name: str | None = None) -> Draft:
        """A mapping of the function, named ``name`` or ``<function>-<event>``."""
        return Draft.new(name or f"{self.function}-{self.name}", self.function, self.loc)

    def value(self, key: str, default: Any = None) -> Any:
        """The event's property ``key``, resolved."""
        return self.context.value(self.props, key, self.loc, default)

    def invoke_config(self, draft: Draft) -> None:
        """The function's EventInvokeConfig, for a mapping AWS invokes asynchronously."""
        if "EventInvokeConfig" in self.function_props:
            config = self.context.resolver.resolve(
                self.function_props["EventInvokeConfig"], self.loc
            )
            invoke_config(self.context, draft, config, self.loc)


def _pull(kind: str, arn_key: str | None) -> Callable[[_Event], None]:
    """An event source mapping's event: its properties are the mapping's."""

    def derive(event: _Event) -> None:
        draft = event.draft()
        event_source(event.context, draft, event.props, event.loc, arn_key=arn_key, kind=kind)
        event.derived.add_mapping(draft)

    return derive


def _s3(event: _Event) -> None:
    context, props, loc = event.context, event.props, event.loc
    draft = event.draft()
    s3_notification(context, draft, props, loc, bucket_key="Bucket", events_key="Events")
    event.invoke_config(draft)
    reject_unknown(context, props, loc, {"Bucket", "Events", "Filter"})
    event.derived.add_mapping(draft)


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


def _schedule(event: _Event) -> None:
    context, props, loc = event.context, event.props, event.loc
    key = "ScheduleExpression" if "ScheduleExpression" in props else "Schedule"
    draft = event.draft()
    set_schedule(draft, event.value(key), loc=loc, expression_loc=(*loc, key))
    if "ScheduleExpressionTimezone" in props:
        zone = event.value("ScheduleExpressionTimezone")
        draft.set(("source", "timezone"), zone, (*loc, "ScheduleExpressionTimezone"))
    set_input(context, draft, props, loc)
    for rule_key in ("Name", "RuleName"):
        if rule_key in props:
            draft.set(("source", "rule_name"), event.value(rule_key), (*loc, rule_key))
    set_state(context, draft, props, loc)
    event.invoke_config(draft)
    retry_policy(context, draft, props, loc)
    known = {key, "ScheduleExpressionTimezone", "Input", "Name", "RuleName", "State", "Enabled"}
    known |= _SCHEDULE_IGNORED | {"RetryPolicy", "DeadLetterConfig"}
    reject_unknown(context, props, loc, known)
    event.derived.add_mapping(draft)


def _rule(event: _Event) -> None:
    context, props, loc = event.context, event.props, event.loc
    draft = event.draft(str(event.value("RuleName") or ""))
    set_event_rule(
        context,
        event.derived,
        draft,
        props,
        loc,
        bus_key="EventBusName",
        pattern_key="Pattern",
        required="Pattern: required (the bridge's rules match a pattern)",
    )
    target_input(context, draft, props, loc)
    set_state(context, draft, props, loc)
    event.invoke_config(draft)
    retry_policy(context, draft, props, loc)
    known = {"EventBusName", "Pattern", "Input", "InputPath", "InputTransformer", "RuleName"}
    known |= {"State", "Enabled", "RetryPolicy", "DeadLetterConfig", "Target", "Description"}
    reject_unknown(context, props, loc, known)
    event.derived.add_mapping(draft)


def _api(http: bool) -> Callable[[_Event], None]:
    """A route of the API the event names (``RestApiId``/``ApiId``), else of SAM's
    implicit one."""
    id_key = "ApiId" if http else "RestApiId"

    def derive(event: _Event) -> None:
        context, props, loc = event.context, event.props, event.loc
        api_ref = props.get(id_key)
        api = (
            api_ref["Ref"]
            if isinstance(api_ref, dict) and isinstance(api_ref.get("Ref"), str)
            else event.value(id_key) or (HTTP_API if http else REST_API)
        )
        route = _route(event, http)
        version = str(event.value("PayloadFormatVersion", "2.0")) if http else REST_PAYLOAD
        resource = context.resolver.resources.get(api) or {}
        api_props = resource.get("Properties") or {} if isinstance(resource, dict) else {}
        api_loc = (*context.resolver.resources_loc, api, "Properties")
        stage = context.value(api_props, "StageName", api_loc) or ("$default" if http else "Prod")
        options = route_options(payload_format_version=version, stage=stage)
        if "TimeoutInMillis" in props:
            options["timeout_in_millis"] = event.value("TimeoutInMillis")
        cors = context.value(api_props, "CorsConfiguration", api_loc)
        if http and isinstance(cors, dict):
            options["cors"] = cors_options(cors)
        auth = event.value("Auth")
        if isinstance(auth, dict) and auth.get("Authorizer") not in (None, "NONE"):
            where = context.document.where((*loc, "Auth"))
            note_authorizer(event.derived, f"{where}: route {route!r} of API {api}")
        known = {"Path", "Method", id_key, "PayloadFormatVersion", "TimeoutInMillis", "Auth"}
        known |= {"Stage", "RouteSettings", "RequestModel", "RequestParameters"}
        reject_unknown(context, props, loc, known)
        event.derived.add_route(str(api), route, event.function, loc, options)

    return derive


def _route(event: _Event, http: bool) -> str:
    """``METHOD /path`` (``ANY`` for every method), or ``$default`` for an HTTP API's
    event without either."""
    path, method = event.value("Path"), event.value("Method")
    if http and path is None and method is None:
        return "$default"
    if not path or not method:
        raise event.context.error(event.loc, "Path and Method: required")
    verb = str(method).upper()
    return f"{'ANY' if verb in ('ANY', 'X-AMAZON-APIGATEWAY-ANY-METHOD') else verb} {path}"


EVENT_TYPES: dict[str, Callable[[_Event], None]] = {
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
