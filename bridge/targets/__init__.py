"""Delivery targets: where a batch's event JSON is sent.

A target satisfies :class:`bridge.targets.base.Target`; ``build_target`` makes one
from a function's configuration.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bridge.targets.base import Target

if TYPE_CHECKING:
    from bridge.config import BridgeConfig, FunctionConfig

__all__ = ["Target", "build_target"]


def build_target(name: str, function: FunctionConfig, config: BridgeConfig) -> Target:
    """The target for function ``name`` (not started yet)."""
    from bridge.config import HttpFunction, LambdaFunction

    if isinstance(function, LambdaFunction):
        from bridge.targets.lambda_invoke import LambdaInvokeTarget

        endpoints = function.endpoint_url or []
        credentials = None
        if function.aws_access_key_id and function.aws_secret_access_key:
            credentials = (
                function.aws_access_key_id,
                function.aws_secret_access_key,
                function.aws_session_token,
            )
        return LambdaInvokeTarget(
            name,
            function_name=function.function_name,
            endpoints=[endpoints] if isinstance(endpoints, str) else endpoints,
            region=function.region or config.region,
            qualifier=function.qualifier,
            emulator=function.emulator,
            concurrency=function.concurrency,
            timeout=function.timeout,
            sign_requests=function.sign_requests,
            credentials=credentials,
        )
    if isinstance(function, HttpFunction):
        from bridge.targets.http import HttpTarget

        return HttpTarget(
            name,
            url=function.url,
            headers=function.headers,
            timeout=function.timeout,
            concurrency=function.concurrency,
            cloudevents=function.cloudevents,
        )
    from bridge.targets.runtime_api import RuntimeApiTarget

    command = function.command
    if command and command[0] in ("python", "python3"):
        command = [sys.executable, *command[1:]]  # the bridge's own interpreter
    env = dict(function.env)
    if command and any(api.type == "websocket" for api in config.apis):
        from bridge.front.tls import LocalCA, trust_environment

        # handlers call back https://{domainName}/{stage}: trust the bridge's authority
        trust = trust_environment(LocalCA.in_state_dir(config.state_dir))
        env = {**trust, **env}
    return RuntimeApiTarget(
        name,
        command=command,
        cwd=function.cwd,
        env=env,
        inherit_env=function.inherit_env,
        concurrency=function.concurrency,
        timeout=function.timeout,
        memory_size=function.memory_size,
        host=function.host,
        port=function.port,
        region=config.region,
        account_id=config.account_id,
        handler=function.handler,
        require_key=function.require_key,
        min_instances=function.min_instances if command else None,
        idle_timeout=function.idle_timeout_seconds,
        layers=function.layers,
        address_file=(None if command else Path(config.state_dir) / "runtime" / f"{name}.address"),
    )
