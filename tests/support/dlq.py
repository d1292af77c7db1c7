"""Helpers of the dead-letter tests: a function that fails until it is fixed, and the
real ``trigger-bridge`` command line run as a process."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.harness import runtime_function

FLAKY = Path(__file__).resolve().parents[1] / "integration" / "functions" / "flaky"
REPO = Path(__file__).resolve().parents[2]


def flaky_function(tmp: Path) -> str:
    """The ``functions:`` entry ``flaky`` (real awslambdaric): it records every event to
    ``tmp/events.jsonl`` and fails while ``tmp/broken`` exists (created here)."""
    (tmp / "broken").touch()
    env = {"RECORDER_OUT": str(tmp / "events.jsonl"), "FAIL_WHILE": str(tmp / "broken")}
    return runtime_function(FLAKY, env, concurrency=1).replace("recorder:", "flaky:", 1)


def fix_function(tmp: Path) -> None:
    (tmp / "broken").unlink()


def events(tmp: Path) -> list[dict[str, Any]]:
    """Every event the flaky function got, in order."""
    path = tmp / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass
class Ran:
    status: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


async def cli(*args: str, env: Mapping[str, str] | None = None, cwd: Path = REPO) -> Ran:
    """``trigger-bridge ARGS`` in a process of its own: exit status, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env={**os.environ, **(env or {}), "PYTHONPATH": str(REPO)},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return Ran(proc.returncode, out.decode(), err.decode())
