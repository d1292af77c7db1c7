"""The lambda target against the real AWS Lambda Runtime Interface Emulator."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bridge.errors import FunctionError
from bridge.targets.lambda_invoke import LambdaInvokeTarget
from tests.e2e.harness import RunningBridge, delivered_lines, wait_for, write_journal

BASIC = Path(__file__).parent / "functions" / "basic"
RECORDER = Path(__file__).resolve().parents[1] / "e2e" / "functions" / "recorder"


def _target(*urls: str) -> LambdaInvokeTarget:
    return LambdaInvokeTarget("f", function_name="function", endpoints=urls, emulator=True)


async def test_success_returns_the_handlers_response(lambda_function_factory: Any) -> None:
    function = lambda_function_factory(BASIC)
    async with started(_target(function.base_url)) as target:
        body = await target.invoke(
            b'{"action":"echo","text":"h\xc3\xa9"}', request_id="r1", timeout=None
        )
    assert body == '{"action":"echo","text":"hé"}'.encode()  # the handler's own bytes


async def test_handler_error_is_a_function_error_without_the_header(
    lambda_function_factory: Any,
) -> None:
    function = lambda_function_factory(BASIC)
    async with started(_target(function.base_url)) as target:
        with pytest.raises(FunctionError) as info:
            await target.invoke(
                b'{"action":"raise","message":"boom"}', request_id="r1", timeout=None
            )
    assert info.value.error_type == "ValueError"
    assert str(info.value) == "boom"
    assert json.loads(info.value.payload)["errorMessage"] == "boom"


async def test_emulator_timeout_is_sandbox_timedout(lambda_function_factory: Any) -> None:
    function = lambda_function_factory(BASIC, timeout=1)
    async with started(_target(function.base_url)) as target:
        with pytest.raises(FunctionError) as info:
            await target.invoke(b'{"action":"sleep","seconds":3}', request_id="r1", timeout=None)
        assert info.value.error_type == "Sandbox.Timedout"
        assert "Task timed out after 1.00 seconds" in str(info.value)
        # the emulator recovers and serves the next invocation
        assert json.loads(
            await target.invoke(b'{"action":"sleep","seconds":0}', request_id="r2", timeout=None)
        )["pid"]


async def test_many_concurrent_invokes_never_overlap_on_one_emulator(
    lambda_function_factory: Any,
) -> None:
    functions = [lambda_function_factory(BASIC) for _ in range(2)]
    async with started(_target(*(f.base_url for f in functions))) as target:
        results = await asyncio.gather(
            *(
                target.invoke(b'{"action":"sleep","seconds":0.2}', request_id=f"r{i}", timeout=None)
                for i in range(8)
            )
        )
    spans: dict[int, list[tuple[float, float]]] = {}
    for raw in results:
        r = json.loads(raw)
        spans.setdefault(r["pid"], []).append((r["started"], r["ended"]))
    assert len(spans) == 2  # both emulators served
    for intervals in spans.values():
        intervals.sort()
        for (_, end), (start, _) in itertools.pairwise(intervals):
            assert start >= end  # one at a time per emulator
    assert all(f.process.poll() is None for f in functions)  # neither crashed


async def test_mapping_delivers_to_a_function_behind_the_emulator(
    tmp_path: Path, lambda_function_factory: Any
) -> None:
    function = lambda_function_factory(
        RECORDER, env={"RECORDER_OUT": str(tmp_path / "calls.jsonl")}, probe_event={"Records": []}
    )
    write_journal(tmp_path / "journal.jsonl", [{"n": i} for i in range(30)])
    text = f"""
state_dir: {tmp_path}/state
functions:
  recorder:
    type: lambda
    function_name: function
    endpoint_url: {function.base_url}
    emulator: true
mappings:
  - name: m
    function: recorder
    source: {{type: journal, path: {tmp_path}/journal.jsonl, partitions: 3}}
    batch_size: 4
"""
    async with RunningBridge(text):
        await wait_for(lambda: sorted(delivered_lines(tmp_path)) == list(range(30)), timeout=60)
    assert function.process.poll() is None


@contextlib.asynccontextmanager
async def started(target: LambdaInvokeTarget) -> AsyncIterator[LambdaInvokeTarget]:
    await target.start()
    try:
        yield target
    finally:
        await target.aclose()
