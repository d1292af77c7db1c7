"""A template's function as a ``functions:`` entry of the bridge.

A Python function becomes a ``runtime`` function running its handler under awslambdaric
in its code folder, with the template's environment, the overlay's endpoints as
``AWS_ENDPOINT_URL_*`` and the bridge's AWS credentials; the overlay may say otherwise
(where the function runs instead, or options merged into the entry).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bridge.config_errors import Loc
from bridge.errors import ConfigError
from bridge.templates.derived import Context

__all__ = ["CREDENTIAL_VARIABLES", "function_entry", "properties_entry"]

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
    why the code is not a local folder. Raise ConfigError when the bridge cannot run it
    (another runtime, no local code, no handler) and the overlay does not say where."""
    override = dict(context.overlay.functions.get(name, {}))
    if "type" in override:
        return override
    if "endpoint_url" in override:
        return {"type": "lambda", "function_name": name, **override}
    if "url" in override:
        return {"type": "http", **override}
    entry: dict[str, Any] = {"type": "runtime"}
    if "command" not in override:
        entry |= _command(
            context,
            name,
            runtime=runtime,
            handler=handler,
            loc=loc,
            runtime_loc=runtime_loc,
            code_problem=code_problem,
        )
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


def _command(
    context: Context,
    name: str,
    *,
    runtime: Any,
    handler: Any,
    loc: Loc,
    runtime_loc: Loc,
    code_problem: str | None,
) -> dict[str, Any]:
    """The command and handler of a Python function run under awslambdaric; raise
    ConfigError for another runtime, code that is not here, or no handler."""
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
    return {"command": f"python -m awslambdaric {shlex.quote(handler)}", "handler": handler}


def properties_entry(
    context: Context,
    name: str,
    props: Mapping[str, Any],
    loc: Loc,
    *,
    code: Path | None,
    code_problem: str | None,
) -> dict[str, Any] | ConfigError:
    """The entry of a function given by CloudFormation's properties (``Runtime``,
    ``Handler``, ``Environment.Variables``, ``Timeout``, ``MemorySize`` of the resource
    at ``loc``), or why the bridge cannot run it: a ConfigError returned, not raised
    (it matters only if an event names the function), except for an ``Environment``
    that cannot be resolved."""
    ploc = (*loc, "Properties")
    value = context.value
    env = (value(props, "Environment", ploc) or {}).get("Variables") or {}
    try:
        return function_entry(
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
        return exc


def _text(value: Any) -> str:
    """An environment variable's value: YAML's scalars as text, anything else as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)
