"""Running the front door as the bridge does: a config file applied to a Supervisor."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.config import parse_config
from bridge.supervisor import Supervisor

FUNCTIONS = Path(__file__).parent / "functions"
RIC = f"{sys.executable} -m awslambdaric app.handler"

Start = Callable[[str | dict[str, Any]], Awaitable[Supervisor]]


async def api_address(supervisor: Supervisor, name: str, timeout: float = 10.0) -> str:
    """The ``host:port`` API ``name`` listens on, once it does."""
    async with asyncio.timeout(timeout):
        while not supervisor.apis.get(name):  # noqa: ASYNC110 - polled state, no event
            await asyncio.sleep(0.02)
    address = supervisor.apis[name]
    assert address is not None
    return address


@pytest.fixture
async def start_bridge(tmp_path: Path) -> AsyncIterator[Start]:
    """``await start(yaml_or_dict)``: a Supervisor running that config (``state_dir`` in tmp_path
    unless given); stopped after the test."""
    supervisors: list[Supervisor] = []

    async def start(config: str | dict[str, Any]) -> Supervisor:
        text = config if isinstance(config, str) else yaml.safe_dump(config)
        text = textwrap.dedent(text)
        if "state_dir:" not in text:
            text = f"state_dir: {tmp_path / 'state'}\n" + text
        supervisor = Supervisor()
        supervisors.append(supervisor)
        await supervisor.apply(parse_config(text, "bridge.yaml", {}))
        return supervisor

    yield start
    for supervisor in supervisors:
        await supervisor.aclose()
