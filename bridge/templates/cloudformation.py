"""A CloudFormation or SAM template (YAML or JSON) as a bridge config.

Read from ``Resources``:

- ``AWS::Serverless::Function`` (with ``Globals.Function``): :mod:`bridge.templates.sam`
- ``AWS::Lambda::Function``: ``Runtime``, ``Handler``, ``Code`` (a local folder, as before
  ``aws cloudformation package``), ``Environment``, ``Timeout``, ``MemorySize``
- ``AWS::Lambda::EventSourceMapping``: a mapping of its ``FunctionName``
- ``AWS::S3::Bucket``'s ``NotificationConfiguration.LambdaConfigurations``: a mapping each
- ``AWS::Events::Rule`` and ``AWS::Scheduler::Schedule`` whose targets are functions of
  the template: ``eventbridge`` and ``schedule`` mappings

Other resources (queues, tables, buckets, roles...) are what the events name, not
triggers; they give names and ARNs to ``Ref`` and ``Fn::GetAtt``. A resource whose
``Condition`` is false is left out, as CloudFormation does.
"""

from __future__ import annotations

from collections.abc import Mapping
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
    json_input,
    retry_policy,
    s3_source,
    state_enabled,
    unknown,
)
from bridge.templates.intrinsics import Missing, Resolver
from bridge.templates.loader import Document
from bridge.templates.overlay import Overlay
from bridge.templates.sam import sam_function

__all__ = ["derive_template", "parameter_values", "pseudo_parameters"]

FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")


def pseudo_parameters(overlay: Overlay, stack: str) -> dict[str, Any]:
    region, account = overlay.region, overlay.account_id
    return {
        "AWS::Region": region,
        "AWS::AccountId": account,
        "AWS::StackName": stack,
        "AWS::StackId": f"arn:aws:cloudformation:{region}:{account}:stack/{stack}/"
        "00000000-0000-0000-0000-000000000000",
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::NotificationARNs": [],
    }


def parameter_values(
    document: Document, declared: Any, overlay: Overlay, overrides: Mapping[str, str]
) -> dict[str, Any]:
    """Each declared parameter's value: ``--parameter-overrides``, else the overlay's, else
    its ``Default`` (a parameter with none fails where it is used)."""
    declared = declared if isinstance(declared, dict) else {}
    for name in list(overrides) + list(overlay.parameters):
        if name not in declared:
            raise ConfigError(
                f"parameter {name!r} is not among the template's Parameters "
                f"({', '.join(declared) or 'none'})",
                where=str(document.path),
            )
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        spec = spec if isinstance(spec, dict) else {}
        loc: Loc = ("Parameters", name)
        if name in overrides:
            value: Any = overrides[name]
        elif name in overlay.parameters:
            value = overlay.parameters[name]
        elif "Default" in spec:
            value = spec["Default"]
        else:
            values[name] = Missing(name)
            continue
        allowed = spec.get("AllowedValues")
        if isinstance(allowed, list) and str(value) not in [str(a) for a in allowed]:
            raise document.error(loc, f"{value!r} is not one of AllowedValues {allowed}")
        kind = str(spec.get("Type", "String"))
        if isinstance(value, str) and (kind == "CommaDelimitedList" or kind.startswith("List<")):
            value = [item.strip() for item in value.split(",")]
        values[name] = value
    return values


def derive_template(document: Document, overlay: Overlay, overrides: Mapping[str, str]) -> Derived:
    """The bridge config of a CloudFormation or SAM template."""
    data = document.data
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise ConfigError("not a CloudFormation template: no Resources", where=str(document.path))
    resources: dict[str, Any] = data["Resources"]
    stack = overlay.stack_name or document.path.resolve().parent.name or "stack"
    resolver = Resolver(
        document,
        resources=resources,
        parameters=parameter_values(document, data.get("Parameters"), overlay, overrides),
        pseudo=pseudo_parameters(overlay, stack),
        names=overlay.names,
        sqs_endpoint=overlay.endpoints.get("sqs"),
        conditions=data.get("Conditions") if isinstance(data.get("Conditions"), dict) else {},
        mappings=data.get("Mappings") if isinstance(data.get("Mappings"), dict) else {},
    )
    context = Context(document, resolver, overlay)
    derived = Derived(context)
    present = {
        name: resource
        for name, resource in resources.items()
        if isinstance(resource, dict) and _exists(resolver, name, resource)
    }
    functions = _FunctionNames(context, present)
    globals_ = (
        ((data.get("Globals") or {}).get("Function") or {})
        if isinstance(data.get("Globals"), dict)
        else {}
    )
    for name, resource in present.items():
        kind, loc = resource.get("Type"), ("Resources", name)
        props = resource.get("Properties") or {}
        if kind == "AWS::Serverless::Function":
            sam_function(context, derived, name, _with_globals(globals_, props), loc)
        elif kind == "AWS::Lambda::Function":
            _lambda_function(context, derived, name, props, loc)
    for name, resource in present.items():
        kind, loc = resource.get("Type"), ("Resources", name)
        props = resource.get("Properties") or {}
        if kind == "AWS::Lambda::EventSourceMapping":
            function = functions.of((*loc, "Properties"), props, "FunctionName")
            draft = Draft.new(name, function, loc)
            ploc = (*loc, "Properties")
            event_source(context, draft, props, ploc, arn_key="EventSourceArn", kind="ARN")
            derived.add_mapping(draft)
        elif kind == "AWS::S3::Bucket":
            _bucket_notifications(context, derived, functions, name, props, loc)
        elif kind in ("AWS::Events::Rule", "AWS::Scheduler::Schedule"):
            _rule(context, derived, functions, name, kind, props, loc)
    # functions no event names are kept when they can run (``trigger-bridge invoke``)
    derived.settle()
    return derived


def _exists(resolver: Resolver, name: str, resource: Mapping[str, Any]) -> bool:
    condition = resource.get("Condition")
    if not isinstance(condition, str):
        return True
    return resolver.condition(condition, ("Resources", name, "Condition"))


def _with_globals(globals_: Mapping[str, Any], props: Mapping[str, Any]) -> dict[str, Any]:
    """SAM's Globals: the function's own properties win; Environment.Variables merge."""
    merged = {**globals_, **props}
    mine, shared = props.get("Environment"), globals_.get("Environment")
    if isinstance(mine, dict) and isinstance(shared, dict):
        merged["Environment"] = {
            **shared,
            **mine,
            "Variables": {**(shared.get("Variables") or {}), **(mine.get("Variables") or {})},
        }
    return merged


def _lambda_function(
    context: Context, derived: Derived, name: str, props: Mapping[str, Any], loc: Loc
) -> None:
    ploc = (*loc, "Properties")
    code_value = props.get("Code")
    code, problem = None, None
    if isinstance(code_value, str):
        code = context.folder / code_value
    elif isinstance(code_value, dict) and "ZipFile" in code_value:
        problem = "inline code (Code.ZipFile) is not written out by the bridge"
    elif context.value(props, "PackageType", ploc) == "Image":
        problem = "a container image (PackageType: Image) is not run by the bridge"
    else:
        problem = "Code is not a local folder (only a path, before packaging, is)"
    env = (context.value(props, "Environment", ploc) or {}).get("Variables") or {}
    entry: dict[str, Any] | ConfigError
    try:
        entry = function_entry(
            context,
            name,
            runtime=context.value(props, "Runtime", ploc),
            handler=context.value(props, "Handler", ploc),
            code=code,
            env=env,
            timeout=context.value(props, "Timeout", ploc),
            memory_size=context.value(props, "MemorySize", ploc),
            loc=loc,
            runtime_loc=(*ploc, "Runtime") if "Runtime" in props else loc,
            code_problem=problem,
        )
    except ConfigError as exc:
        entry = exc
    derived.add_function(name, entry, loc)


class _FunctionNames:
    """Which function of the template a name or ARN (``FunctionName``, a target's ``Arn``)
    stands for."""

    def __init__(self, context: Context, resources: Mapping[str, Any]) -> None:
        self.context = context
        self.by_name: dict[str, str] = {}
        for name, resource in resources.items():
            if resource.get("Type") in FUNCTION_TYPES:
                self.by_name[name] = name
                self.by_name[context.resolver.physical_name(name)] = name

    def of(self, loc: Loc, props: Mapping[str, Any], key: str) -> str:
        value = self.context.value(props, key, loc)
        if not isinstance(value, str) or not value:
            raise self.context.error((*loc, key), "expected a function's name or ARN")
        name = (
            value.split(":function:", 1)[-1].split(":", 1)[0] if value.startswith("arn:") else value
        )
        if name in self.by_name:
            return self.by_name[name]
        if name in self.context.overlay.functions:
            return name
        raise self.context.error(
            (*loc, key),
            f"function {name!r} is not in the template (nor in the overlay's functions)",
        )

    def is_function(self, value: Any) -> bool:
        if not isinstance(value, str):
            return False
        name = (
            value.split(":function:", 1)[-1].split(":", 1)[0] if value.startswith("arn:") else value
        )
        return ":function:" in value and (
            name in self.by_name or name in self.context.overlay.functions
        )


def _bucket_notifications(
    context: Context,
    derived: Derived,
    functions: _FunctionNames,
    name: str,
    props: Mapping[str, Any],
    loc: Loc,
) -> None:
    nloc = (*loc, "Properties", "NotificationConfiguration")
    configs = (props.get("NotificationConfiguration") or {}).get("LambdaConfigurations") or []
    bucket = context.resolver.physical_name(name)
    for i, config in enumerate(configs):
        cloc = (*nloc, "LambdaConfigurations", i)
        function = functions.of(cloc, config, "Function")
        draft = Draft.new(f"{name}-{function}-{i + 1}", function, cloc)
        rules = ((context.value(config, "Filter", cloc) or {}).get("S3Key") or {}).get("Rules")
        s3_source(
            context,
            draft,
            bucket,
            context.value(config, "Event", cloc),
            rules,
            cloc,
            bucket_loc=loc,
            events_loc=(*cloc, "Event"),
            rules_loc=(*cloc, "Filter", "S3Key", "Rules"),
        )
        unknown(context, config, cloc, {"Event", "Function", "Filter"})
        derived.add_mapping(draft)


def _rule(
    context: Context,
    derived: Derived,
    functions: _FunctionNames,
    name: str,
    kind: str,
    props: Mapping[str, Any],
    loc: Loc,
) -> None:
    """An EventBridge rule or an EventBridge Scheduler schedule: one mapping per target
    that is a function of the template (other targets are not the bridge's)."""
    ploc = (*loc, "Properties")
    scheduler = kind == "AWS::Scheduler::Schedule"
    targets = [props.get("Target")] if scheduler else props.get("Targets") or []
    for i, target in enumerate(targets):
        tloc = (*ploc, "Target") if scheduler else (*ploc, "Targets", i)
        if not isinstance(target, dict) or not functions.is_function(
            context.value(target, "Arn", tloc)
        ):
            continue
        function = functions.of(tloc, target, "Arn")
        draft = Draft.new(name if len(targets) == 1 else f"{name}-{i + 1}", function, tloc)
        expression = context.value(props, "ScheduleExpression", ploc)
        if expression is not None:
            draft.set(("source", "type"), "schedule", ploc)
            draft.set(("source", "expression"), expression, (*ploc, "ScheduleExpression"))
            zone = context.value(props, "ScheduleExpressionTimezone", ploc)
            if zone:
                draft.set(("source", "timezone"), zone, (*ploc, "ScheduleExpressionTimezone"))
            draft.set(("source", "rule_name"), context.value(props, "Name", ploc) or name, ploc)
        else:
            if "EventPattern" not in props:
                raise context.error(ploc, "EventPattern or ScheduleExpression: required")
            bus = bus_name(context.value(props, "EventBusName", ploc))
            draft.set(("source", "type"), "eventbridge", ploc)
            draft.set(("source", "event_bus_name"), bus, (*ploc, "EventBusName"))
            pattern = context.value(props, "EventPattern", ploc)
            draft.set(("source", "event_pattern"), pattern, (*ploc, "EventPattern"))
            derived.add_bus(bus, ploc)
        if "Input" in target:
            value = json_input(context, context.value(target, "Input", tloc), (*tloc, "Input"))
            draft.set(("source", "input"), value, (*tloc, "Input"))
        if "InputPath" in target:
            draft.set(
                ("source", "input_path"),
                context.value(target, "InputPath", tloc),
                (*tloc, "InputPath"),
            )
        if "InputTransformer" in target:
            transformer = context.value(target, "InputTransformer", tloc) or {}
            draft.set(
                ("source", "input_transformer"),
                {
                    "input_paths_map": transformer.get("InputPathsMap") or {},
                    "input_template": transformer.get("InputTemplate"),
                },
                (*tloc, "InputTransformer"),
            )
        enabled = state_enabled(context, props, ploc)
        if enabled is not None:
            draft.set(("enabled",), enabled, ploc)
        retry_policy(context, draft, target, tloc)
        known = {"Arn", "Id", "Input", "InputPath", "InputTransformer", "RetryPolicy"}
        unknown(context, target, tloc, known | {"DeadLetterConfig", "RoleArn"})
        derived.add_mapping(draft)
