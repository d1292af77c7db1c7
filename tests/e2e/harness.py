"""Run a trigger-bridge config in-process against the real recorder function."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bridge.config import BridgeConfig, parse_config
from bridge.supervisor import Supervisor
from tests.support.jsonl import read_jsonl

RECORDER = Path(__file__).parent / "functions" / "recorder"


def runtime_function(
    handler: Path, env: Mapping[str, str], *, concurrency: int = 2, timeout: float = 20
) -> str:
    """The ``functions:`` entry ``recorder``: the handler in folder ``handler`` run by the
    bridge's runtime target under real awslambdaric processes."""
    return f"""  recorder:
    type: runtime
    command: python -m awslambdaric app.handler
    cwd: {handler}
    env: {json.dumps(dict(env))}
    concurrency: {concurrency}
    timeout: {timeout}"""


def config_text(tmp: Path, mapping: str, *, concurrency: int = 2, timeout: float = 10) -> str:
    """A config with the recorder function (real awslambdaric) and one mapping."""
    function = runtime_function(
        RECORDER, {"RECORDER_OUT": f"{tmp}/calls.jsonl"}, concurrency=concurrency, timeout=timeout
    )
    return f"""
state_dir: {tmp}/state
retry_backoff: {{initial_seconds: 0.01, max_seconds: 0.05}}
shutdown_timeout_seconds: 5
functions:
{function}
mappings:
{mapping}
"""


def write_journal(path: Path, bodies: list[dict[str, Any]]) -> None:
    with path.open("a") as f:
        for body in bodies:
            f.write(json.dumps(body) + "\n")


def calls(tmp: Path) -> list[dict[str, Any]]:
    return read_jsonl(tmp / "calls.jsonl")


def delivered_lines(tmp: Path) -> list[int]:
    return [line for call in calls(tmp) for line in call["lines"]]


def failures(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """Poll ``predicate`` until it holds; AssertionError (naming ``what``) after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in time{': ' + what if what else ''}")
        await asyncio.sleep(0.05)


class RunningBridge:
    """``async with RunningBridge(text) as bridge``: a Supervisor running the config."""

    def __init__(self, text: str, env: Mapping[str, str] | None = None) -> None:
        self.config: BridgeConfig = parse_config(text, "test.yaml", env)
        self.supervisor = Supervisor()

    async def __aenter__(self) -> RunningBridge:
        await self.supervisor.apply(self.config)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.supervisor.aclose()
