"""The ``runtime`` target against real ``awslambdaric`` processes and a raw HTTP runtime."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.errors import FunctionError, TargetRejected, TargetUnavailable
from bridge.targets.base import Target
from bridge.targets.runtime_api import MAX_REQUEST_SIZE, MAX_RESPONSE_SIZE, RuntimeApiTarget

FUNCTIONS = Path(__file__).parent / "functions"
RIC = [sys.executable, "-m", "awslambdaric", "app.handler"]
NEXT = "/2018-06-01/runtime/invocation/next"

MakeTarget = Callable[..., RuntimeApiTarget]


@pytest.fixture
async def make_target() -> AsyncIterator[MakeTarget]:
    """Builds and starts targets; closes every one of them after the test."""
    targets: list[RuntimeApiTarget] = []

    def make(**options: Any) -> RuntimeApiTarget:
        target = RuntimeApiTarget(options.pop("name", "fn"), **options)
        targets.append(target)
        return target

    yield make
    for target in targets:
        await target.aclose()


async def started(target: RuntimeApiTarget) -> RuntimeApiTarget:
    await target.start()
    return target


async def basic_function(make_target: MakeTarget, **options: Any) -> RuntimeApiTarget:
    options.setdefault("command", RIC)
    options.setdefault("cwd", str(FUNCTIONS / "basic"))
    return await started(make_target(**options))


async def call(target: RuntimeApiTarget, event: dict[str, Any], **options: Any) -> Any:
    options.setdefault("timeout", None)
    options.setdefault("request_id", f"req-{time.monotonic_ns()}")
    return json.loads(await target.invoke(json.dumps(event).encode(), **options))


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# --- with awslambdaric processes ---------------------------------------------------------


async def test_event_and_response_are_the_exact_bytes(make_target: MakeTarget) -> None:
    target = await basic_function(make_target)
    # The handler re-encodes the event it parsed, compactly, and returns those bytes raw.
    event = '{"action":"echo","text":"h\u00e9llo \u2713","n":[1,2.5,null,true],"o":{"k":"v"}}'

    response = await target.invoke(event.encode(), request_id="r-1", timeout=None)

    assert response == event.encode()
    assert isinstance(target, Target)


async def test_context_carries_name_arn_request_id_and_deadline(make_target: MakeTarget) -> None:
    target = await basic_function(
        make_target,
        name="orders",
        region="eu-west-1",
        account_id="123456789012",
        memory_size=256,
        handler="app.handler",
        env={"GREETING": "hi"},
    )
    names = ["_HANDLER", "TZ", "AWS_REGION", "LAMBDA_TASK_ROOT", "GREETING"]

    seen = await call(target, {"action": "context", "env": names}, request_id="r-7", timeout=2.0)

    assert seen["function_name"] == "orders"
    assert seen["function_version"] == "$LATEST"
    assert seen["invoked_function_arn"] == "arn:aws:lambda:eu-west-1:123456789012:function:orders"
    assert seen["aws_request_id"] == "r-7"
    assert seen["memory_limit_in_mb"] == "256"
    assert seen["log_group_name"] == "/aws/lambda/orders"
    assert 1000 < seen["remaining_ms"] <= 2000  # the per-invoke timeout, not the default 3 s
    assert seen["env"] == {
        "_HANDLER": "app.handler",
        "TZ": ":UTC",
        "AWS_REGION": "eu-west-1",
        "LAMBDA_TASK_ROOT": str(FUNCTIONS / "basic"),
        "GREETING": "hi",
    }


async def test_handler_exception_is_a_function_error_with_its_type(
    make_target: MakeTarget,
) -> None:
    target = await basic_function(make_target)

    with pytest.raises(FunctionError) as caught:
        await call(target, {"action": "raise", "message": "no such order"})

    assert caught.value.error_type == "ValueError"
    assert str(caught.value) == "no such order"
    document = json.loads(caught.value.payload)
    assert document["errorType"] == "ValueError"
    assert document["errorMessage"] == "no such order"
    assert any("app.py" in frame for frame in document["stackTrace"])


async def test_timeout_resets_the_worker_and_a_fresh_one_serves_next(
    make_target: MakeTarget,
) -> None:
    target = await basic_function(make_target)
    first_pid = (await call(target, {"action": "pid"}))["pid"]
    started_at = time.monotonic()

    with pytest.raises(FunctionError) as caught:
        await call(target, {"action": "sleep", "seconds": 30}, request_id="r-slow", timeout=0.5)

    assert 0.5 <= time.monotonic() - started_at < 2.0
    assert caught.value.error_type == "Sandbox.Timedout"
    assert json.loads(caught.value.payload) == {
        "errorMessage": "RequestId: r-slow Error: Task timed out after 0.50 seconds",
        "errorType": "Sandbox.Timedout",
    }
    next_pid = (await call(target, {"action": "pid"}))["pid"]
    assert next_pid != first_pid
    assert not process_exists(first_pid)


async def test_exit_during_invocation_is_runtime_exit_error_then_recovers(
    make_target: MakeTarget,
) -> None:
    target = await basic_function(make_target)

    with pytest.raises(FunctionError) as caught:
        await call(target, {"action": "exit"}, request_id="r-exit")

    assert caught.value.error_type == "Runtime.ExitError"
    assert json.loads(caught.value.payload) == {
        "errorMessage": "RequestId: r-exit Error: Runtime exited with error: exit status 1",
        "errorType": "Runtime.ExitError",
    }
    assert "pid" in await call(target, {"action": "pid"})


async def test_import_error_fails_the_invocation_of_the_cold_start(
    make_target: MakeTarget,
) -> None:
    target = await started(make_target(command=RIC, cwd=str(FUNCTIONS / "broken")))

    with pytest.raises(FunctionError) as caught:
        await call(target, {})

    assert caught.value.error_type == "Runtime.ImportModuleError"
    assert "module_that_does_not_exist" in str(caught.value)
    assert json.loads(caught.value.payload)["errorType"] == "Runtime.ImportModuleError"


async def test_concurrency_two_runs_two_invocations_at_once(make_target: MakeTarget) -> None:
    target = await basic_function(make_target, concurrency=2)
    sleep = {"action": "sleep", "seconds": 0.6}
    # both cold starts are behind us
    await asyncio.gather(call(target, {"action": "pid"}), call(target, {"action": "pid"}))

    a, b = await asyncio.gather(call(target, sleep), call(target, sleep))

    assert a["pid"] != b["pid"]
    assert a["started"] < b["ended"] and b["started"] < a["ended"]  # they overlapped


async def test_handler_output_goes_to_the_function_logger(
    make_target: MakeTarget, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bridge.function.printer")
    target = await basic_function(make_target, name="printer")

    await call(target, {"action": "print", "line": "hello from the handler"})
    await target.aclose()  # drains the pipes

    lines = [r.getMessage() for r in caplog.records if r.name == "bridge.function.printer"]
    assert "hello from the handler" in lines


async def test_aclose_stops_every_process_and_fails_what_is_pending(
    make_target: MakeTarget,
) -> None:
    target = await basic_function(make_target, concurrency=2)
    await asyncio.gather(call(target, {"action": "pid"}), call(target, {"action": "pid"}))
    pids = target.pids
    assert len(pids) == 2
    pending = asyncio.create_task(call(target, {"action": "sleep", "seconds": 30}))
    await asyncio.sleep(0.2)

    await target.aclose()
    await target.aclose()  # idempotent

    with pytest.raises(TargetUnavailable):
        await pending
    assert not any(process_exists(pid) for pid in pids)
    assert target.pids == []


async def test_aclose_kills_a_process_that_ignores_sigterm(make_target: MakeTarget) -> None:
    target = await basic_function(make_target)
    pid = (await call(target, {"action": "ignore_sigterm"}))["pid"]

    await target.aclose()

    assert not process_exists(pid)


async def test_aclose_stops_what_a_wrapper_command_started(make_target: MakeTarget) -> None:
    wrapper = ["sh", "-c", " ".join([*RIC, "; echo runtime ended"])]
    target = await basic_function(make_target, command=wrapper)
    pid = (await call(target, {"action": "pid"}))["pid"]  # the runtime, a child of sh

    await target.aclose()

    assert not process_exists(pid)


async def test_command_that_cannot_start_is_target_unavailable(make_target: MakeTarget) -> None:
    target = make_target(command=[str(FUNCTIONS / "no-such-program")])

    with pytest.raises(TargetUnavailable):
        await target.start()


async def test_a_start_up_that_hangs_is_cut_off_and_the_process_replaced(
    make_target: MakeTarget, tmp_path: Path
) -> None:
    """Lambda gives the init phase 10 s; a process that neither polls nor reports an init
    error in time is replaced, and the invocation waiting for it fails as unavailable
    instead of waiting forever."""
    ok = tmp_path / "start-ok"
    target = await started(
        make_target(
            command=RIC,
            cwd=str(FUNCTIONS / "slow_start"),
            env={"START_OK": str(ok)},
            init_timeout=1.0,
            timeout=3,
        )
    )
    [hung] = target.pids
    begin = time.monotonic()
    with pytest.raises(TargetUnavailable, match=r"Runtime\.InitError"):
        await asyncio.wait_for(call(target, {}), 10)
    assert 0.9 < time.monotonic() - begin < 5
    ok.touch()  # whatever it waited for is there now: the next process starts fine
    answer = await asyncio.wait_for(call(target, {}), 10)
    assert answer["pid"] != hung and not process_exists(hung)


async def test_a_failed_start_can_be_tried_again_and_names_its_cause(
    make_target: MakeTarget, tmp_path: Path
) -> None:
    folder = tmp_path / "fn"  # not there yet
    target = make_target(command=RIC, cwd=str(folder))
    with pytest.raises(TargetUnavailable, match="No such file or directory"):
        await target.start()
    with pytest.raises(TargetUnavailable, match="No such file or directory"):
        await target.start()  # the cause again, not "already started"
    folder.mkdir()
    (folder / "app.py").write_text((FUNCTIONS / "basic" / "app.py").read_text())
    await target.start()
    assert "pid" in await call(target, {"action": "pid"})


async def test_a_start_up_that_keeps_failing_is_logged_once_then_counted(
    make_target: MakeTarget, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    target = await started(make_target(name="broken", command=RIC, cwd=str(FUNCTIONS / "broken")))
    with pytest.raises(FunctionError):
        await call(target, {})
    await asyncio.sleep(2.0)  # restarts after 0.2, 0.4, 0.8 s: the same failure each time
    await target.aclose()
    messages = [(r.name, r.getMessage()) for r in caplog.records]
    function_lines = [m for name, m in messages if name == "bridge.function.broken"]
    assert all("\n" not in line for line in function_lines)  # one log line per line
    imports = [m for m in function_lines if "Unable to import module" in m]
    assert len(imports) == 1  # the traceback in full, once
    assert any(m.startswith("Traceback") for m in function_lines)
    failed = [m for _, m in messages if "function broken: start-up failed (" in m]
    again = [m for _, m in messages if "function broken: start-up failed again" in m]
    assert len(failed) == 1 and "Runtime.ImportModuleError" in failed[0]
    assert len(again) >= 2 and "times in a row" in again[-1]


async def test_once_a_start_up_fault_is_gone_the_next_invocation_finds_a_fresh_process(
    make_target: MakeTarget, tmp_path: Path
) -> None:
    """Start-ups fail for 7 s, long enough for the restart backoff to reach 6.4 s; when the
    fault is gone the next invocation does not wait that out."""
    ok = tmp_path / "start-ok"
    target = await started(
        make_target(command=RIC, cwd=str(FUNCTIONS / "fails_until"), env={"START_OK": str(ok)})
    )
    with pytest.raises(FunctionError):
        await call(target, {})
    await asyncio.sleep(7)  # restarts after 0.2, 0.4, 0.8, 1.6, 3.2 s, all failing
    ok.touch()
    begin = time.monotonic()
    answer = await asyncio.wait_for(call(target, {}), 15)
    assert time.monotonic() - begin < 2.5 and "pid" in answer


async def test_a_function_gets_its_own_environment_not_the_bridges(
    make_target: MakeTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in Lambda: the configured env, Lambda's variables, PATH and LANG; the bridge's
    credentials and settings only when inherit_env names them."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "the-bridges-own-secret")
    monkeypatch.setenv("BRIDGE_SETTING", "x")
    names = ["AWS_SECRET_ACCESS_KEY", "BRIDGE_SETTING", "MINE", "PATH", "AWS_LAMBDA_FUNCTION_NAME"]
    target = await basic_function(make_target, name="envfn", env={"MINE": "1"})
    seen = (await call(target, {"action": "context", "env": names}))["env"]
    assert seen["AWS_SECRET_ACCESS_KEY"] is None and seen["BRIDGE_SETTING"] is None
    assert seen["MINE"] == "1" and seen["PATH"] == os.environ["PATH"]
    assert seen["AWS_LAMBDA_FUNCTION_NAME"] == "envfn"
    chosen = await basic_function(make_target, name="env2", inherit_env=["BRIDGE_SETTING"])
    seen = (await call(chosen, {"action": "context", "env": names}))["env"]
    assert seen["BRIDGE_SETTING"] == "x" and seen["AWS_SECRET_ACCESS_KEY"] is None


# --- raw Runtime API, no command ----------------------------------------------------------


@pytest.fixture
async def api(make_target: MakeTarget) -> AsyncIterator[tuple[RuntimeApiTarget, httpx.AsyncClient]]:
    """A target with no command, and an HTTP client playing the runtime."""
    target = await started(make_target(name="raw", timeout=2.0))
    async with httpx.AsyncClient(base_url=f"http://{target.address}", timeout=5.0) as client:
        yield target, client


def invoke_soon(target: RuntimeApiTarget, payload: bytes, request_id: str) -> asyncio.Task[bytes]:
    return asyncio.create_task(target.invoke(payload, request_id=request_id, timeout=None))


async def test_raw_runtime_api_contract(
    api: tuple[RuntimeApiTarget, httpx.AsyncClient],
) -> None:
    target, client = api
    payload = b'{"Records": [ {"body": "caf\xc3\xa9"} ]}'
    invocation = invoke_soon(target, payload, "req-1")

    event = await client.get(NEXT)

    assert event.status_code == 200
    assert event.content == payload
    assert event.headers["content-type"] == "application/json"
    assert event.headers["lambda-runtime-aws-request-id"] == "req-1"
    assert event.headers["lambda-runtime-invoked-function-arn"] == (
        "arn:aws:lambda:us-east-1:000000000000:function:raw"
    )
    deadline_ms = int(event.headers["lambda-runtime-deadline-ms"])
    assert abs(deadline_ms - (time.time() + 2.0) * 1000) < 500
    assert event.headers["lambda-runtime-trace-id"].startswith("Root=1-")

    answer = await client.post("/2018-06-01/runtime/invocation/req-1/response", content=b"\x00ok")
    assert answer.status_code == 202
    assert answer.json() == {"status": "OK"}
    assert await invocation == b"\x00ok"

    again = await client.post("/2018-06-01/runtime/invocation/req-1/response", content=b"late")
    assert again.status_code == 400
    assert again.json() == {"errorMessage": "Invalid request ID", "errorType": "InvalidRequestID"}
    unknown = await client.post("/2018-06-01/runtime/invocation/nope/error", content=b"{}")
    assert unknown.status_code == 400
    assert unknown.json()["errorType"] == "InvalidRequestID"


async def test_raw_error_post_becomes_function_error(
    api: tuple[RuntimeApiTarget, httpx.AsyncClient],
) -> None:
    target, client = api
    invocation = invoke_soon(target, b"{}", "req-err")
    await client.get(NEXT)
    document = b'{"errorMessage":"bad input","errorType":"InputError","stackTrace":[]}'

    answer = await client.post(
        "/2018-06-01/runtime/invocation/req-err/error",
        content=document,
        headers={"Lambda-Runtime-Function-Error-Type": "InputError"},
    )

    assert answer.status_code == 202
    with pytest.raises(FunctionError) as caught:
        await invocation
    assert (caught.value.error_type, str(caught.value)) == ("InputError", "bad input")
    assert caught.value.payload == document


async def test_raw_error_type_header_is_used_without_a_document(
    api: tuple[RuntimeApiTarget, httpx.AsyncClient],
) -> None:
    target, client = api
    invocation = invoke_soon(target, b"{}", "req-h")
    await client.get(NEXT)

    await client.post(
        "/2018-06-01/runtime/invocation/req-h/error",
        content=b"",
        headers={"Lambda-Runtime-Function-Error-Type": "Runtime.Custom"},
    )

    with pytest.raises(FunctionError) as caught:
        await invocation
    assert caught.value.error_type == "Runtime.Custom"


async def test_raw_init_error_fails_the_next_invocation(
    api: tuple[RuntimeApiTarget, httpx.AsyncClient],
) -> None:
    target, client = api
    document = b'{"errorMessage":"no config","errorType":"Runtime.InitError"}'

    answer = await client.post(
        "/2018-06-01/runtime/init/error",
        content=document,
        headers={"Lambda-Runtime-Function-Error-Type": "Runtime.InitError"},
    )

    assert answer.status_code == 202
    assert answer.json() == {"status": "OK"}
    with pytest.raises(FunctionError) as caught:
        await target.invoke(b"{}", request_id="req-i", timeout=None)
    assert caught.value.error_type == "Runtime.InitError"
    assert caught.value.payload == document


async def test_raw_response_over_6_mb_is_rejected_like_lambda(
    api: tuple[RuntimeApiTarget, httpx.AsyncClient],
) -> None:
    target, client = api
    invocation = invoke_soon(target, b"{}", "req-big")
    await client.get(NEXT)

    answer = await client.post(
        "/2018-06-01/runtime/invocation/req-big/response", content=b"x" * (MAX_RESPONSE_SIZE + 1)
    )

    assert answer.status_code == 413
    assert answer.json() == {
        "errorMessage": "Exceeded maximum allowed payload size (6291556 bytes).",
        "errorType": "RequestEntityTooLarge",
    }
    with pytest.raises(FunctionError) as caught:
        await invocation
    assert caught.value.error_type == "Function.ResponseSizeTooLarge"


async def test_raw_no_runtime_polling_is_target_unavailable(
    api: tuple[RuntimeApiTarget, httpx.AsyncClient],
) -> None:
    target, _ = api

    with pytest.raises(TargetUnavailable):
        await target.invoke(b"{}", request_id="req-lonely", timeout=0.2)


async def test_raw_event_over_6_mb_is_rejected(
    api: tuple[RuntimeApiTarget, httpx.AsyncClient],
) -> None:
    target, _ = api

    with pytest.raises(TargetRejected) as caught:
        await target.invoke(b"x" * (MAX_REQUEST_SIZE + 1), request_id="req-huge", timeout=None)
    assert caught.value.status == 413


async def test_raw_cancelled_invoke_is_withdrawn_before_it_is_taken(
    api: tuple[RuntimeApiTarget, httpx.AsyncClient],
) -> None:
    target, client = api
    withdrawn = invoke_soon(target, b'{"n":1}', "req-gone")
    await asyncio.sleep(0.05)
    withdrawn.cancel()
    with pytest.raises(asyncio.CancelledError):
        await withdrawn
    invocation = invoke_soon(target, b'{"n":2}', "req-kept")

    event = await client.get(NEXT)

    assert event.headers["lambda-runtime-aws-request-id"] == "req-kept"
    await client.post("/2018-06-01/runtime/invocation/req-kept/response", content=b"2")
    assert await invocation == b"2"


async def test_raw_cancelled_invoke_discards_the_late_response(
    api: tuple[RuntimeApiTarget, httpx.AsyncClient],
) -> None:
    target, client = api
    invocation = invoke_soon(target, b"{}", "req-late")
    await client.get(NEXT)
    invocation.cancel()
    with pytest.raises(asyncio.CancelledError):
        await invocation

    answer = await client.post("/2018-06-01/runtime/invocation/req-late/response", content=b"1")

    assert answer.status_code == 202  # the runtime is not punished; the answer is dropped


# --- who may take invocations ------------------------------------------------------------

OUTSIDER = """
import http.client, json, sys, time

address, duration, request_ids = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
host, _, rest = address.partition(":")
port, _, key = rest.partition("/")
api = ("/" + key if key else "") + "/2018-06-01/runtime"
seen = []  # [what, status, request id] of every try


def ask(method, path, body=None):
    conn = http.client.HTTPConnection(host, int(port), timeout=1.0)
    try:
        conn.request(method, api + path, body=body)
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader("Lambda-Runtime-Aws-Request-Id")
    except OSError:
        return None, None
    finally:
        conn.close()


end = time.monotonic() + duration
while time.monotonic() < end:
    status, taken = ask("GET", "/invocation/next")
    seen.append(["next", status, taken])
    if taken:  # answer it as the real function would not
        status = ask("POST", f"/invocation/{taken}/response", b'{"fake":1}')[0]
        seen.append(["answer", status, taken])
    for request_id in request_ids:  # answer invocations it never took
        status = ask("POST", f"/invocation/{request_id}/response", b'{"fake":1}')[0]
        seen.append(["guess", status, request_id])
    time.sleep(0.02)
print(json.dumps(seen))
"""


async def outsider(
    address: str, seconds: float, request_ids: list[str], user: int | None = None
) -> asyncio.subprocess.Process:
    """A process the bridge did not start, in a session of its own, polling ``address``."""
    # another user may not be able to run the virtualenv's interpreter: the system's will do
    python = sys.executable if user is None else "/usr/bin/python3"
    return await asyncio.create_subprocess_exec(
        python,
        "-c",
        OUTSIDER,
        address,
        str(seconds),
        *request_ids,
        stdout=asyncio.subprocess.PIPE,
        start_new_session=True,
        user=user,
    )


async def tries(process: asyncio.subprocess.Process) -> list[list[Any]]:
    out, _ = await process.communicate()
    assert process.returncode == 0
    seen: list[list[Any]] = json.loads(out)
    assert seen, "the outsider tried nothing"
    return seen


async def test_an_outsider_gets_nothing_from_the_functions_the_bridge_runs(
    make_target: MakeTarget, caplog: pytest.LogCaptureFixture
) -> None:
    """Each process the bridge runs has an endpoint that only it (and what it started) may
    use; there is no shared address at all. Another process of the same user that finds
    the port polls, answers and guesses request ids in vain; every event reaches the
    function."""
    target = await basic_function(make_target, concurrency=2)
    with pytest.raises(RuntimeError):
        target.address  # noqa: B018 - nothing is served beyond the workers' endpoints
    await call(target, {"action": "ping"})  # both started
    ids = [f"req-{n}" for n in range(10)]
    outsiders = [await outsider(w.runtime_api, 3.0, ids) for w in target._workers]
    await asyncio.sleep(0.5)

    answers = []
    for request_id in ids:
        answers.append(await call(target, {"action": "ping"}, request_id=request_id))
        await asyncio.sleep(0.15)

    assert {a["pid"] for a in answers} <= set(target.pids)  # the function's, never fake
    for process in outsiders:
        seen = await tries(process)
        assert {status for _, status, _ in seen} == {403}, seen
    assert "runtime.caller_refused" in caplog.text


async def test_the_shared_address_requires_the_key_when_told(
    make_target: MakeTarget, tmp_path: Path
) -> None:
    """Without command and with require_key, only a runtime given the keyed address (from
    a file only the owner can read) takes invocations: real awslambdaric passes the key
    through; a process without it, or with a wrong one, gets 403."""
    address_file = tmp_path / "state" / "runtime" / "fn.address"
    target = await started(make_target(require_key=True, address_file=address_file, timeout=5))
    keyed = address_file.read_text().strip()
    assert keyed == target.keyed_address and keyed.startswith(target.address + "/")
    assert address_file.stat().st_mode & 0o777 == 0o600
    bare = await outsider(target.address, 2.0, [])
    wrong = await outsider(target.address + "/" + "A" * 22, 2.0, [])
    await asyncio.sleep(0.5)
    runtime = await asyncio.create_subprocess_exec(
        *RIC,
        cwd=FUNCTIONS / "basic",
        env={"PATH": os.environ["PATH"], "AWS_LAMBDA_RUNTIME_API": keyed},
        start_new_session=True,
    )
    try:
        answers = [await call(target, {"action": "ping"}, timeout=5.0) for _ in range(3)]
    finally:
        runtime.kill()
        await runtime.wait()
    assert {a["pid"] for a in answers} == {runtime.pid}
    for process in (bare, wrong):
        assert {status for _, status, _ in await tries(process)} == {403}


async def test_the_shared_address_serves_this_user_without_the_key(
    make_target: MakeTarget,
) -> None:
    """By default a local process of the bridge's own user (who could read the key file
    anyway) may use the bare address, as runtimes that cannot carry a path need."""
    target = await started(make_target(timeout=5))
    process = await outsider(target.address, 2.0, [])
    invocation = asyncio.create_task(call(target, {"action": "ping"}, request_id="taken"))
    seen = await tries(process)
    assert ["next", 200, "taken"] in seen
    assert await invocation == {"fake": 1}


@pytest.mark.skipif(os.geteuid() != 0, reason="starting a process of another user needs root")
async def test_the_shared_address_refuses_other_users_without_the_key(
    make_target: MakeTarget,
) -> None:
    target = await started(make_target(timeout=5))
    process = await outsider(target.address, 2.0, ["guessed"], user=65534)
    invocation = asyncio.create_task(call(target, {"action": "ping"}, request_id="guessed"))
    assert {status for _, status, _ in await tries(process)} == {403}
    assert not invocation.done()
    invocation.cancel()
