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
from bridge.templates.buckets import s3_notification
from bridge.templates.derived import Context, Derived, Draft, reject_unknown
from bridge.templates.event_sources import event_source
from bridge.templates.failures import retry_policy
from bridge.templates.functions import properties_entry
from bridge.templates.intrinsics import Missing, Resolver
from bridge.templates.loader import Document
from bridge.templates.overlay import Overlay
from bridge.templates.rules import set_event_rule, set_schedule, set_state, target_input
from bridge.templates.sam import sam_function

__all__ = ["derive_template", "parameter_values", "pseudo_parameters"]

FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")


def pseudo_parameters(overlay: Overlay, stack: str) -> dict[str, Any]:
    """CloudFormation's pseudo parameters (``AWS::Region``...) of the stack ``stack`` in
    the overlay's region and account."""
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
    """The bridge config of a CloudFormation or SAM template (``overrides``: parameter
    values); raise ConfigError naming the file, line and property of what cannot be
    mapped."""
    data = document.data
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise ConfigError("not a CloudFormation template: no Resources", where=str(document.path))
    resources: dict[str, Any] = data["Resources"]
    resolver = _resolver(document, overlay, overrides)
    context = Context(document, resolver, overlay)
    derived = Derived(context)
    present = {
        name: resource
        for name, resource in resources.items()
        if isinstance(resource, dict) and _exists(resolver, name, resource)
    }
    triggers = _Triggers(context, derived, present)
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
            triggers.event_source_mapping(name, props, loc)
        elif kind == "AWS::S3::Bucket":
            triggers.bucket_notifications(name, props, loc)
        elif kind in ("AWS::Events::Rule", "AWS::Scheduler::Schedule"):
            triggers.rule(name, kind, props, loc)
    # functions no event names are kept when they can run (``trigger-bridge invoke``)
    derived.settle()
    return derived


def _resolver(document: Document, overlay: Overlay, overrides: Mapping[str, str]) -> Resolver:
    """The template's intrinsic functions with its parameters, conditions and mappings."""
    data = document.data
    stack = overlay.stack_name or document.path.resolve().parent.name or "stack"
    return Resolver(
        document,
        resources=data["Resources"],
        parameters=parameter_values(document, data.get("Parameters"), overlay, overrides),
        pseudo=pseudo_parameters(overlay, stack),
        names=overlay.names,
        sqs_endpoint=overlay.endpoints.get("sqs"),
        conditions=data.get("Conditions") if isinstance(data.get("Conditions"), dict) else {},
        mappings=data.get("Mappings") if isinstance(data.get("Mappings"), dict) else {},
    )


def _exists(resolver: Resolver, name: str, resource: Mapping[str, Any]) -> bool:
    """Whether the resource is created: it has no ``Condition``, or a true one."""
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
    """An ``AWS::Lambda::Function``: its ``Code`` must be a local folder (as before
    ``aws cloudformation package``)."""
    code_value = props.get("Code")
    code, problem = None, None
    if isinstance(code_value, str):
        code = context.folder / code_value
    elif isinstance(code_value, dict) and "ZipFile" in code_value:
        problem = "inline code (Code.ZipFile) is not written out by the bridge"
    elif context.value(props, "PackageType", (*loc, "Properties")) == "Image":
        problem = "a container image (PackageType: Image) is not run by the bridge"
    else:
        problem = "Code is not a local folder (only a path, before packaging, is)"
    entry = properties_entry(context, name, props, loc, code=code, code_problem=problem)
    derived.add_function(name, entry, loc)


class _Triggers:
    """The template's triggers of its functions (event source mappings, bucket
    notifications, rules and schedules) as mappings of ``derived``; a trigger names its
    function by name or ARN (``FunctionName``, ``Function``, a target's ``Arn``)."""

    def __init__(self, context: Context, derived: Derived, resources: Mapping[str, Any]) -> None:
        self.context = context
        self.derived = derived
        self.by_name: dict[str, str] = {}
        for name, resource in resources.items():
            if resource.get("Type") in FUNCTION_TYPES:
                self.by_name[name] = name
                self.by_name[context.resolver.physical_name(name)] = name

    def function(self, loc: Loc, props: Mapping[str, Any], key: str) -> str:
        """The function ``props[key]`` names (of the template, else of the overlay);
        raise ConfigError naming ``key`` for any other."""
        value = self.context.value(props, key, loc)
        if not isinstance(value, str) or not value:
            raise self.context.error((*loc, key), "expected a function's name or ARN")
        name = _function_name(value)
        if name in self.by_name:
            return self.by_name[name]
        if name in self.context.overlay.functions:
            return name
        raise self.context.error(
            (*loc, key),
            f"function {name!r} is not in the template (nor in the overlay's functions)",
        )

    def is_function(self, value: Any) -> bool:
        """Whether ``value`` is the ARN of a function the bridge has (a rule's other
        targets are not the bridge's)."""
        if not isinstance(value, str):
            return False
        name = _function_name(value)
        return ":function:" in value and (
            name in self.by_name or name in self.context.overlay.functions
        )

    def event_source_mapping(self, name: str, props: Mapping[str, Any], loc: Loc) -> None:
        """An ``AWS::Lambda::EventSourceMapping``: a mapping of the same name."""
        ploc = (*loc, "Properties")
        draft = Draft.new(name, self.function(ploc, props, "FunctionName"), loc)
        event_source(self.context, draft, props, ploc, arn_key="EventSourceArn", kind="ARN")
        self.derived.add_mapping(draft)

    def bucket_notifications(self, name: str, props: Mapping[str, Any], loc: Loc) -> None:
        """A mapping for each of a bucket's ``LambdaConfigurations``."""
        context = self.context
        nloc = (*loc, "Properties", "NotificationConfiguration")
        configs = (props.get("NotificationConfiguration") or {}).get("LambdaConfigurations") or []
        bucket = context.resolver.physical_name(name)
        for i, config in enumerate(configs):
            cloc = (*nloc, "LambdaConfigurations", i)
            function = self.function(cloc, config, "Function")
            draft = Draft.new(f"{name}-{function}-{i + 1}", function, cloc)
            s3_notification(
                context, draft, config, cloc, events_key="Event", bucket=bucket, bucket_loc=loc
            )
            reject_unknown(context, config, cloc, {"Event", "Function", "Filter"})
            self.derived.add_mapping(draft)

    def rule(self, name: str, kind: str, props: Mapping[str, Any], loc: Loc) -> None:
        """An EventBridge rule or an EventBridge Scheduler schedule: one mapping per
        target that is a function of the template (other targets are not the bridge's)."""
        context = self.context
        ploc = (*loc, "Properties")
        scheduler = kind == "AWS::Scheduler::Schedule"
        targets = [props.get("Target")] if scheduler else props.get("Targets") or []
        for i, target in enumerate(targets):
            tloc = (*ploc, "Target") if scheduler else (*ploc, "Targets", i)
            if not isinstance(target, dict) or not self.is_function(
                context.value(target, "Arn", tloc)
            ):
                continue
            function = self.function(tloc, target, "Arn")
            draft = Draft.new(name if len(targets) == 1 else f"{name}-{i + 1}", function, tloc)
            self._rule_source(draft, name, props, ploc)
            target_input(context, draft, target, tloc)
            set_state(context, draft, props, ploc)
            retry_policy(context, draft, target, tloc)
            known = {"Arn", "Id", "Input", "InputPath", "InputTransformer", "RetryPolicy"}
            reject_unknown(context, target, tloc, known | {"DeadLetterConfig", "RoleArn"})
            self.derived.add_mapping(draft)

    def _rule_source(self, draft: Draft, name: str, props: Mapping[str, Any], ploc: Loc) -> None:
        """A ``schedule`` source for a ``ScheduleExpression``, else an ``eventbridge`` one
        for the ``EventPattern`` (one of them is required)."""
        context = self.context
        expression = context.value(props, "ScheduleExpression", ploc)
        if expression is not None:
            set_schedule(draft, expression, loc=ploc, expression_loc=(*ploc, "ScheduleExpression"))
            zone = context.value(props, "ScheduleExpressionTimezone", ploc)
            if zone:
                draft.set(("source", "timezone"), zone, (*ploc, "ScheduleExpressionTimezone"))
            draft.set(("source", "rule_name"), context.value(props, "Name", ploc) or name, ploc)
            return
        if "EventPattern" not in props:
            raise context.error(ploc, "EventPattern or ScheduleExpression: required")
        set_event_rule(
            context,
            self.derived,
            draft,
            props,
            ploc,
            bus_key="EventBusName",
            pattern_key="EventPattern",
        )


def _function_name(value: str) -> str:
    """A function's name, from its name or ARN (without a version or alias)."""
    return value.split(":function:", 1)[-1].split(":", 1)[0] if value.startswith("arn:") else value
