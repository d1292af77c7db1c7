"""Schedules and EventBridge rules: a ``schedule`` or ``eventbridge`` mapping of the
bridge, whichever format names them (SAM's ``Schedule``/``ScheduleV2``/``EventBridgeRule``
events, CloudFormation's ``AWS::Events::Rule`` and ``AWS::Scheduler::Schedule``, the
Serverless Framework's ``schedule`` and ``eventBridge``).

What a rule hands its target (``Input``, ``InputPath``, ``InputTransformer``) is the
source's ``input``, ``input_path`` and ``input_transformer``; the retries and dead-letter
queue of a target are :mod:`bridge.templates.failures`'.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.config_errors import Loc
from bridge.templates.derived import Context, Derived, Draft

__all__ = [
    "CAMEL",
    "PASCAL",
    "InputKeys",
    "set_event_rule",
    "set_input",
    "set_schedule",
    "set_state",
    "target_input",
]


@dataclass(frozen=True)
class InputKeys:
    """How a format names the properties of a target's input."""

    input: str
    path: str
    transformer: str
    paths_map: str
    template: str


#: CloudFormation's and SAM's names
PASCAL = InputKeys("Input", "InputPath", "InputTransformer", "InputPathsMap", "InputTemplate")
#: the Serverless Framework's names
CAMEL = InputKeys("input", "inputPath", "inputTransformer", "inputPathsMap", "inputTemplate")


def set_schedule(draft: Draft, expression: Any, *, loc: Loc, expression_loc: Loc) -> None:
    """A ``schedule`` source of ``expression`` (``rate(...)``, ``cron(...)``)."""
    draft.set(("source", "type"), "schedule", loc)
    draft.set(("source", "expression"), expression, expression_loc)


def set_event_rule(
    context: Context,
    derived: Derived,
    draft: Draft,
    props: Mapping[str, Any],
    loc: Loc,
    *,
    bus_key: str,
    pattern_key: str,
    required: str | None = None,
) -> None:
    """An ``eventbridge`` source: the rule's pattern (``props[pattern_key]``) on the bus
    ``props[bus_key]`` (a name or ARN, ``default`` without one), which the derived config
    gets too. With ``required``, a rule without a pattern is that ConfigError."""
    bus = _bus_name(context.value(props, bus_key, loc))
    if required and pattern_key not in props:
        raise context.error(loc, required)
    draft.set(("source", "type"), "eventbridge", loc)
    draft.set(("source", "event_bus_name"), bus, (*loc, bus_key))
    pattern = context.value(props, pattern_key, loc)
    draft.set(("source", "event_pattern"), pattern, (*loc, pattern_key))
    derived.add_bus(bus, loc)


def _bus_name(value: Any) -> str:
    """An event bus's name, from its name or ARN (``default`` for none)."""
    text = str(value or "default")
    return text.rsplit("event-bus/", 1)[-1] if text.startswith("arn:") else text


def set_input(
    context: Context, draft: Draft, props: Mapping[str, Any], loc: Loc, key: str = "Input"
) -> None:
    """The source's ``input``: ``props[key]``, a JSON text (a value as it is); raise
    ConfigError if it is not JSON."""
    if key not in props:
        return
    value = context.value(props, key, loc)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise context.error((*loc, key), f"Input is not JSON: {exc}") from None
    draft.set(("source", "input"), value, (*loc, key))


def target_input(
    context: Context,
    draft: Draft,
    props: Mapping[str, Any],
    loc: Loc,
    keys: InputKeys = PASCAL,
) -> None:
    """What a rule hands its target (``props``, named as ``keys`` says): the source's
    ``input``, ``input_path`` and ``input_transformer``."""
    set_input(context, draft, props, loc, keys.input)
    if keys.path in props:
        value = context.value(props, keys.path, loc)
        draft.set(("source", "input_path"), value, (*loc, keys.path))
    if keys.transformer in props:
        transformer = context.value(props, keys.transformer, loc) or {}
        value = {
            "input_paths_map": transformer.get(keys.paths_map) or {},
            "input_template": transformer.get(keys.template),
        }
        draft.set(("source", "input_transformer"), value, (*loc, keys.transformer))


def set_state(context: Context, draft: Draft, props: Mapping[str, Any], loc: Loc) -> None:
    """``enabled`` from a rule's or schedule's ``State`` (``ENABLED``/``DISABLED``, any
    case) or ``Enabled``; nothing when it has neither. Another State is a ConfigError."""
    state = context.value(props, "State", loc)
    if state is not None:
        if str(state).upper() not in ("ENABLED", "DISABLED"):
            raise context.error((*loc, "State"), f"expected ENABLED or DISABLED, got {state!r}")
        draft.set(("enabled",), str(state).upper() == "ENABLED", loc)
        return
    enabled = context.value(props, "Enabled", loc)
    if enabled is not None:
        draft.set(("enabled",), bool(enabled), loc)
