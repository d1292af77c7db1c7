"""``trigger-bridge validate``: every error of a file at once, and ``--deep``."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.cli import main

REPO = Path(__file__).resolve().parents[1]

CONFIG = """\
state_dir: {tmp}/state
functions:
  hello:
    type: runtime
    command: python -m awslambdaric app.handler
    cwd: {tmp}/fn
mappings:
  - name: inbox
    function: hello
    source: {{type: local_dir, path: {tmp}/inbox}}
"""


def _write(tmp_path: Path, handler: str) -> Path:
    (tmp_path / "fn").mkdir(exist_ok=True)
    (tmp_path / "fn" / "app.py").write_text(handler)
    config = tmp_path / "bridge.yaml"
    config.write_text(CONFIG.format(tmp=tmp_path))
    return config


@pytest.mark.parametrize("name", ["local.yaml", "compose.yaml"])
def test_the_repository_configs_pass_deep_checks(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run from the checkout, as the README does. compose.yaml's addresses (minio:9000,
    kafka:19092...) resolve only inside the stack, but deep checks open no connections,
    and its paths (state_dir) are relative ones the bridge creates."""
    monkeypatch.chdir(REPO)
    for variable in ("TB_STATE_DIR", "TB_INBOX"):
        monkeypatch.delenv(variable, raising=False)
    assert main(["validate", "--deep", "--config", f"config/{name}"]) == 0
    captured = capsys.readouterr()
    assert "OK" in captured.out
    assert captured.err == ""


def test_deep_reports_a_handler_function_that_is_not_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write(tmp_path, "def handle(event, context):\n    return 1\n")
    assert main(["validate", "--config", str(config)]) == 0  # the schema is fine
    capsys.readouterr()
    assert main(["validate", "--deep", "--config", str(config)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "trigger-bridge: valid, but --deep found problems",
        f"{config}:5: functions.hello.command: {tmp_path}/fn/app.py defines no top-level "
        "'handler'; did you mean 'handle'?",
    ]


def test_deep_reports_a_missing_cwd(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _write(tmp_path, "def handler(event, context):\n    return 1\n")
    config.write_text(config.read_text().replace(f"{tmp_path}/fn", f"{tmp_path}/gone"))
    assert main(["validate", "--deep", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{config}:6: functions.hello.cwd: folder {tmp_path}/gone does not exist" in err


def test_deep_passes_a_good_config_and_notes_what_will_be_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write(tmp_path, "def handler(event, context):\n    return 1\n")
    assert main(["validate", "--deep", "--config", str(config)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert (
        out[0]
        == f"{config}:1: state_dir: {tmp_path}/state does not exist yet; the bridge creates it"
    )
    assert out[1].startswith(f"{config}:10: mappings[0].source.path: folder {tmp_path}/inbox")
    assert out[2].startswith(f"{config}: OK (1 functions; mappings: inbox;")


def test_validate_lists_every_error_of_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write(tmp_path, "")
    text = config.read_text().replace("function: hello", "function: helo")
    config.write_text(text.replace("cwd:", "timout: 3\n    cwd:") + "    batchsize: 2\n")
    assert main(["validate", "--config", str(config)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "trigger-bridge: invalid config"
    assert [line.split(": ")[1] for line in err[1:]] == [
        "functions.hello.timout",
        "mappings[0].function",
        "mappings[0].batchsize",
    ]
    assert all("did you mean" in line for line in err[1:])
