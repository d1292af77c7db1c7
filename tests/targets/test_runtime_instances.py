"""The runtime host behaves like Lambda: instances on demand (cold starts), reuse while
warm, stopped when idle down to ``min_instances``, at most ``concurrency`` of them; the
START/END/REPORT lines; memory enforced; Lambda's variables; layers. Against real
``awslambdaric`` processes."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import random
import re
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bridge.errors import FunctionError
from bridge.targets.runtime_api import RuntimeApiTarget
from tests.e2e.harness import wait_for

FUNCTION = Path(__file__).parent / "functions" / "lambda_like"
RIC = [sys.executable, "-m", "awslambdaric", "app.handler"]

Make = Callable[..., Any]


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    """``await make(**options)``: a started target running the lambda_like handler."""
    targets: list[RuntimeApiTarget] = []

    async def build(**options: Any) -> RuntimeApiTarget:
        options.setdefault("command", RIC)
        options.setdefault("cwd", str(FUNCTION))
        options.setdefault("timeout", 20)
        target = RuntimeApiTarget(options.pop("name", "fn"), **options)
        targets.append(target)
        await target.start()
        return target

    yield build
    for target in targets:
        await target.aclose()


async def call(target: RuntimeApiTarget, event: dict[str, Any], **options: Any) -> Any:
    options.setdefault("timeout", None)
    options.setdefault("request_id", f"req-{time.monotonic_ns()}-{random.random()}")
    return json.loads(await target.invoke(json.dumps(event).encode(), **options))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def platform_lines(caplog: pytest.LogCaptureFixture, name: str = "fn") -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == f"bridge.function.{name}"]


REPORT = re.compile(
    r"^REPORT RequestId: (?P<id>\S+)\tDuration: (?P<duration>\d+\.\d\d) ms\t"
    r"Billed Duration: (?P<billed>\d+) ms\tMemory Size: (?P<size>\d+) MB\t"
    r"Max Memory Used: (?P<used>\d+) MB\t(?:Init Duration: (?P<init>\d+\.\d\d) ms\t)?"
    r"(?:Status: (?P<status>\w+)\t)?(?:Error Type: (?P<error>[\w.]+)\t)?$"
)


async def test_no_instance_until_the_first_invocation_then_a_warm_one_is_reused(
    make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bridge.function.fn")
    target = await make(concurrency=3, min_instances=0)
    assert (target.instances, target.pids) == (0, [])  # scaled to zero

    first = await call(target, {}, request_id="cold-1")
    second = await call(target, {}, request_id="warm-2")

    assert first["pid"] == second["pid"] and target.instances == 1
    reports = {m["id"]: m for line in platform_lines(caplog) if (m := REPORT.match(line))}
    assert reports["cold-1"]["init"] is not None and float(reports["cold-1"]["init"]) > 0
    assert reports["warm-2"]["init"] is None  # a warm start has no init
    assert reports["cold-1"]["size"] == "128" and 5 < int(reports["cold-1"]["used"]) < 128


async def test_a_burst_starts_instances_up_to_the_concurrency_and_no_more(make: Make) -> None:
    target = await make(concurrency=3, min_instances=0)
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, target.instances)
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch())
    try:
        answers = await asyncio.gather(
            *(call(target, {"action": "sleep", "seconds": 0.6}) for _ in range(7))
        )
    finally:
        watcher.cancel()
    assert peak == 3 and target.instances == 3
    assert len({a["pid"] for a in answers}) == 3  # 7 invocations on 3 instances
    assert target.saturated is False  # all idle now


async def test_idle_instances_stop_down_to_min_instances_and_scale_to_zero(
    make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bridge.function.fn")
    target = await make(concurrency=3, min_instances=1, idle_timeout=0.5)
    await wait_for(lambda: len(target.pids) == 1, what="the warm instance")
    [warm] = target.pids
    answers = await asyncio.gather(
        *(call(target, {"action": "sleep", "seconds": 0.4}) for _ in range(3))
    )
    pids = {a["pid"] for a in answers}
    assert len(pids) == 3 and warm in pids
    await wait_for(lambda: target.instances == 1, what="back to min_instances")
    await wait_for(lambda: sum(alive(p) for p in pids) == 1, what="the others ended")

    zero = await make(name="zero", concurrency=2, min_instances=0, idle_timeout=0.3)
    caplog.set_level(logging.INFO, logger="bridge.function.zero")
    pid = (await call(zero, {}))["pid"]
    await wait_for(lambda: zero.instances == 0 and not alive(pid), what="scaled to zero")
    again = await call(zero, {}, request_id="after-zero")
    assert again["pid"] != pid
    [report] = [m for line in platform_lines(caplog, "zero") if (m := REPORT.match(line))][-1:]
    assert report["id"] == "after-zero" and report["init"] is not None  # a cold start again


async def test_no_invocation_is_lost_to_an_instance_being_stopped(make: Make) -> None:
    """Invocations arrive right around the idle timeout, again and again: an instance is
    taken out of the runtimes waiting for work before it is stopped, so none of them may
    meet a dying instance (Runtime.ExitError) or be lost."""
    target = await make(concurrency=2, min_instances=0, idle_timeout=0.06)
    rng = random.Random(7)
    seen: set[int] = set()
    for _ in range(60):
        answers = await asyncio.gather(*(call(target, {}) for _ in range(rng.randint(1, 2))))
        seen |= {a["pid"] for a in answers}
        await asyncio.sleep(rng.uniform(0.0, 0.12))
    assert len(seen) > 3  # instances did come and go meanwhile


async def test_platform_lines_surround_the_functions_output(
    make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bridge.function.fn")
    target = await make(memory_size=256)
    for n in range(5):
        caplog.clear()
        lines = [f"line {n}.{i}" for i in range(3)]
        await call(target, {"action": "print", "lines": lines}, request_id=f"r{n}")
        await wait_for(lambda: any(m.startswith("REPORT") for m in platform_lines(caplog)))
        got = [m for m in platform_lines(caplog) if "cold start" not in m]
        assert got[0] == f"START RequestId: r{n} Version: $LATEST"
        assert got[1:4] == lines
        assert got[4] == f"END RequestId: r{n}"
        report = REPORT.match(got[5])
        assert report is not None and report["id"] == f"r{n}" and report["size"] == "256"
        assert int(report["billed"]) >= float(report["duration"])
    record = next(r for r in caplog.records if r.getMessage().startswith("REPORT"))
    assert record.platform == "report" and record.memory_size_mb == 256  # type: ignore[attr-defined]


async def test_an_instance_over_its_memory_size_ends_with_out_of_memory(
    make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bridge.function.fn")
    target = await make(memory_size=128)
    pid = (await call(target, {}))["pid"]

    with pytest.raises(FunctionError) as caught:
        await call(target, {"action": "allocate", "mb": 300}, request_id="hog")

    assert caught.value.error_type == "Runtime.OutOfMemory"
    document = json.loads(caught.value.payload)
    assert document == {
        "errorType": "Runtime.OutOfMemory",
        "errorMessage": "RequestId: hog Error: Runtime exited with error: signal: killed",
    }
    report = next(m for line in platform_lines(caplog) if (m := REPORT.match(line)))
    assert report is not None
    hog = [m for line in platform_lines(caplog) if (m := REPORT.match(line)) and m["id"] == "hog"]
    assert hog[0]["status"] == "error" and hog[0]["error"] == "Runtime.OutOfMemory"
    assert int(hog[0]["used"]) > 128
    assert not alive(pid)
    assert (await call(target, {}))["pid"] != pid  # replaced


async def test_lambda_variables_and_remaining_time(make: Make) -> None:
    target = await make(name="orders", memory_size=512, region="eu-west-1", timeout=5)
    names = [
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_REGION",
        "_HANDLER",
        "LAMBDA_TASK_ROOT",
        "TZ",
    ]
    env = (await call(target, {"action": "env", "names": names}))["env"]
    stream = env.pop("AWS_LAMBDA_LOG_STREAM_NAME")
    assert env == {
        "AWS_LAMBDA_FUNCTION_NAME": "orders",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/orders",
        "AWS_REGION": "eu-west-1",
        "_HANDLER": "app.handler",  # from the command, as the handler setting of Lambda
        "LAMBDA_TASK_ROOT": str(FUNCTION),
        "TZ": ":UTC",
    }
    assert re.fullmatch(r"\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}", stream)
    remaining = (await call(target, {"action": "remaining"}, timeout=2.0))["remaining_ms"]
    assert 1500 < remaining <= 2000
    remaining = (await call(target, {"action": "remaining"}))["remaining_ms"]
    assert 4500 < remaining <= 5000  # the function's timeout


async def test_layers_are_on_the_paths_a_later_one_first(make: Make, tmp_path: Path) -> None:
    first, second = tmp_path / "layer-one", tmp_path / "layer-two"
    for layer, value in ((first, "one"), (second, "two")):
        (layer / "python").mkdir(parents=True)
        (layer / "python" / "shared_lib.py").write_text(f"VALUE = {value!r}\n")
        (layer / "bin").mkdir()
    site = first / "python" / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    (site / "site-packages").mkdir(parents=True)
    (site / "site-packages" / "only_in_one.py").write_text("VALUE = 'site'\n")
    tool = first / "bin" / "layer-tool"
    tool.write_text("#!/bin/sh\necho hi\n")
    tool.chmod(0o755)
    target = await make(layers=[str(first), str(second)])

    assert (await call(target, {"action": "import", "module": "shared_lib"}))["value"] == "two"
    assert (await call(target, {"action": "import", "module": "only_in_one"}))["value"] == "site"
    assert (await call(target, {"action": "which", "program": "layer-tool"}))["path"] == str(tool)


async def test_a_function_at_its_concurrency_is_saturated(make: Make) -> None:
    target = await make(concurrency=1, min_instances=0)
    assert not target.saturated  # it may still start an instance
    busy = asyncio.create_task(call(target, {"action": "sleep", "seconds": 0.5}))
    await wait_for(lambda: target.saturated, what="busy at its concurrency")
    queued = asyncio.create_task(call(target, {}))  # an invocation waits, not fails
    await busy
    assert "pid" in await queued
    await wait_for(lambda: not target.saturated, what="idle again")


async def test_start_fails_early_for_a_missing_cwd_or_program(tmp_path: Path) -> None:
    from bridge.errors import TargetUnavailable

    for options in (
        {"command": RIC, "cwd": str(tmp_path / "gone")},
        {"command": ["no-such-program-here"], "cwd": str(tmp_path)},
        {"command": ["./missing-binary"], "cwd": str(tmp_path)},
    ):
        target = RuntimeApiTarget("fn", min_instances=0, **options)  # type: ignore[arg-type]
        with pytest.raises(TargetUnavailable, match="No such"):
            await target.start()
        await target.aclose()


SHARED_HANDLER = """
import json, os, time

def handler(event, context):
    start = time.time()
    time.sleep(0.2)
    with open(os.environ["CALLS"], "a") as f:
        key = event["Records"][0]["s3"]["object"]["key"]
        f.write(json.dumps([key, os.getpid(), start, time.time()]) + "\\n")
    return {}
"""


async def test_mappings_naming_one_function_share_its_instances_and_limit(
    tmp_path: Path,
) -> None:
    """As on Lambda, a function's concurrency is one limit for everything that invokes it:
    two mappings of one function with concurrency 1 never run at once, on one instance."""
    from bridge.config import parse_config
    from bridge.supervisor import Supervisor

    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "app.py").write_text(SHARED_HANDLER)
    calls = tmp_path / "calls.jsonl"
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    text = f"""
state_dir: {tmp_path}/state
functions:
  shared:
    type: runtime
    command: python -m awslambdaric app.handler
    cwd: {tmp_path}/fn
    env: {{CALLS: {calls}}}
    concurrency: 1
mappings:
  - {{name: a, function: shared, source: {{type: local_dir, path: {tmp_path}/a}}}}
  - {{name: b, function: shared, source: {{type: local_dir, path: {tmp_path}/b}}}}
"""
    supervisor = Supervisor()
    await supervisor.apply(parse_config(text, "test.yaml"))
    try:
        for i in range(4):
            (tmp_path / "a" / f"a{i}").write_text("x")
            (tmp_path / "b" / f"b{i}").write_text("x")

        def seen() -> list[list[Any]]:
            if not calls.exists():
                return []
            return [json.loads(line) for line in calls.read_text().splitlines()]

        await wait_for(lambda: len(seen()) == 8, timeout=30, what="8 invocations")
    finally:
        await supervisor.aclose()
    rows = sorted(seen(), key=lambda r: r[2])
    assert {r[0][0] for r in rows} == {"a", "b"} and len({r[1] for r in rows}) == 1
    for before, after in itertools.pairwise(rows):
        assert after[2] >= before[3]  # one at a time
