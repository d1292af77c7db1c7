"""A Serverless Framework ``serverless.yml`` as a bridge config.

``functions.<name>`` (``handler``, ``runtime``, ``environment``, ``timeout``,
``memorySize``, with ``provider``'s as defaults: Python runtimes, 6 s, 1024 MB) and each
of its ``events`` (:mod:`bridge.templates.serverless_events`): ``sqs``, ``stream``
(DynamoDB), ``kafka``, ``msk``, ``s3``, ``schedule``, ``eventBridge``, ``httpApi`` and
``http``. ``resources.Resources`` are CloudFormation resources for ``Ref`` and
``Fn::GetAtt``; the Framework's variables are
:mod:`bridge.templates.serverless_variables`'.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.config_errors import Loc
from bridge.errors import ConfigError
from bridge.templates.cloudformation import pseudo_parameters
from bridge.templates.derived import Context, Derived
from bridge.templates.functions import function_entry
from bridge.templates.loader import Document
from bridge.templates.overlay import Overlay
from bridge.templates.serverless_events import EVENTS, Event
from bridge.templates.serverless_variables import ServerlessResolver

__all__ = ["derive_serverless"]


def derive_serverless(
    document: Document, overlay: Overlay, overrides: Mapping[str, str]
) -> Derived:
    """The bridge config of a serverless.yml; ``overrides`` (and the overlay's
    ``parameters``) are the CLI options ``${opt:NAME}`` reads (``stage``, ``region``...).
    Raise ConfigError naming the file, line and option of what cannot be mapped."""
    data = document.data
    if not isinstance(data, dict) or not isinstance(data.get("functions"), dict):
        raise ConfigError("not a serverless.yml: no functions", where=str(document.path))
    resources = ((data.get("resources") or {}).get("Resources")) or {}
    service = str(data.get("service") or document.path.resolve().parent.name)
    resolver = ServerlessResolver(
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
    """The function ``name`` (an error only if an event names it) and its events, each
    mapping named ``<function>-<type>-<n>``."""
    entry = _entry(context, provider, name, function, loc)
    for i, event in enumerate(function.get("events") or []):
        eloc = (*loc, "events", i)
        if not isinstance(event, dict) or len(event) != 1:
            raise context.error(eloc, "expected one event type: {sqs: ...}, {http: ...}...")
        ((kind, config),) = event.items()
        derive_event = EVENTS.get(kind)
        if derive_event is None:
            raise context.error(
                (*eloc, kind),
                f"event type {kind!r}: the bridge has no such trigger (it maps "
                f"{', '.join(EVENTS)})",
            )
        mapping = f"{name}-{kind}-{i + 1}"
        derive_event(
            Event(context, derived, provider, service, name, mapping, config, (*eloc, kind))
        )
    derived.add_function(name, entry, loc)


def _entry(
    context: Context,
    provider: Mapping[str, Any],
    name: str,
    function: Mapping[str, Any],
    loc: Loc,
) -> dict[str, Any] | ConfigError:
    """The function's entry (the provider's settings as defaults, the service's folder
    as its code), or why the bridge cannot run it."""
    value = context.value
    env = {
        **(value(provider, "environment", ("provider",)) or {}),
        **(value(function, "environment", loc) or {}),
    }
    runtime_loc = (*loc, "runtime") if "runtime" in function else ("provider", "runtime")
    try:
        return function_entry(
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
        return exc
