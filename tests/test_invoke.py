"""``trigger-bridge invoke``: one invocation of a configured function, through its target,
here a ``runtime`` target running a real handler with awslambdaric."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.cli import main

REPO = Path(__file__).resolve().parents[1]

HANDLER = """\
import time


def handler(event, context):
    action = event.get("action")
    if action == "raise":
        raise ValueError(event["message"])
    if action == "text":
        return b"plain text, not JSON"
    if action == "sleep":
        time.sleep(event["seconds"])
    print("handled", action)
    return {"got": event, "request_id": context.aws_request_id}
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config with one function, ``hello``: app.handler under awslambdaric, 2 s timeout."""
    function = tmp_path / "fn"
    function.mkdir()
    (function / "app.py").write_text(HANDLER)
    path = tmp_path / "bridge.yaml"
    path.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        "functions:\n"
        "  hello:\n"
        "    type: runtime\n"
        "    command: python -m awslambdaric app.handler\n"
        f"    cwd: {function}\n"
        "    timeout: 2\n"
        "  gone:\n"
        "    type: runtime\n"
        "    command: python -m awslambdaric app.handler\n"
        f"    cwd: {tmp_path / 'no-such-folder'}\n"
    )
    return path


def event_file(tmp_path: Path, event: object) -> str:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    return str(path)


def invoke(config: Path, *argv: str) -> int:
    return main(["invoke", "--config", str(config), *argv])


def test_prints_the_functions_json_response_pretty(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    event = {"action": "greet", "name": "Ada"}

    assert invoke(config, "hello", "--event", event_file(tmp_path, event)) == 0

    captured = capsys.readouterr()
    response = json.loads(captured.out)
    assert response["got"] == event and response["request_id"]
    assert captured.out.startswith('{\n  "got": {\n')
    assert "handled greet" in captured.err  # the function's output is logged


def test_without_an_event_the_function_gets_an_empty_object(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert invoke(config, "hello") == 0
    assert json.loads(capsys.readouterr().out)["got"] == {}


def test_a_response_that_is_not_json_is_printed_as_it_is(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert invoke(config, "hello", "-e", event_file(tmp_path, {"action": "text"})) == 0
    assert capsys.readouterr().out == "plain text, not JSON"


def test_a_function_error_is_lambdas_error_document_on_stderr(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    event = {"action": "raise", "message": "no such order"}

    assert invoke(config, "hello", "--event", event_file(tmp_path, event)) == 1

    captured = capsys.readouterr()
    assert captured.out == ""
    document = json.loads(captured.err[captured.err.index("{\n") :])
    assert document["errorType"] == "ValueError"
    assert document["errorMessage"] == "no such order"
    assert any("app.py" in frame for frame in document["stackTrace"])


def test_a_timeout_is_lambdas_sandbox_timeout(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    event = {"action": "sleep", "seconds": 30}

    assert invoke(config, "hello", "--event", event_file(tmp_path, event)) == 1

    err = capsys.readouterr().err
    document = json.loads(err[err.index("{\n") :])
    assert document["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 2.00 seconds" in document["errorMessage"]


def test_a_target_that_cannot_start_is_unavailable(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert invoke(config, "gone") == 1
    err = capsys.readouterr().err
    assert "trigger-bridge invoke: function 'gone' is unavailable:" in err
    assert "no-such-folder" in err


def test_an_unknown_function_suggests_the_nearest(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert invoke(config, "helo") == 2
    err = capsys.readouterr().err
    assert "unknown function 'helo'; did you mean 'hello'? (functions: gone, hello)" in err


def test_an_event_that_is_not_json_is_not_sent(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    assert invoke(config, "hello", "--event", str(bad)) == 2
    assert f"the event {bad} is not JSON" in capsys.readouterr().err
    assert invoke(config, "hello", "--event", str(tmp_path / "missing.json")) == 2
    assert "cannot read the event" in capsys.readouterr().err


def test_reads_the_event_from_stdin_as_generate_event_writes_it(config: Path) -> None:
    """The developer loop: ``generate-event ... | invoke FUNCTION --event -``."""
    bridge = [sys.executable, "-m", "bridge"]
    sample = subprocess.run(
        [*bridge, "generate-event", "sqs", "--body", "hi"],
        cwd=REPO,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    done = subprocess.run(
        [*bridge, "invoke", "hello", "--config", str(config), "--event", "-"],
        cwd=REPO,
        input=sample,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout)["got"] == json.loads(sample)
