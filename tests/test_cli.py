"""The command line, including the README's first command on the embedded default."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bridge import __version__
from bridge.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"trigger-bridge {__version__}"


def test_validate_accepts_the_embedded_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--config", str(REPO / "config" / "local.yaml")]) == 0
    assert "OK" in capsys.readouterr().out


def test_validate_rejects_a_bad_file_with_its_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "functions: {}\nmappings:\n  - name: x\n    function: f\n"
        "    source: {type: local_dir, path: .}\n"
    )
    assert main(["validate", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:4: mappings[0].function: unknown function 'f'" in err


def test_validate_says_when_a_file_has_nothing_to_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for text in ("", "functions: {}\nmappings: []\n"):
        empty = tmp_path / "empty.yaml"
        empty.write_text(text)
        assert main(["validate", "--config", str(empty)]) == 1
        assert "nothing to run: no mappings" in capsys.readouterr().err


def test_readme_first_command_runs_the_example_handler(tmp_path: Path) -> None:
    """`trigger-bridge run` without --config (the packaged default, bridge/default/): a
    dropped file runs the handler."""
    inbox = tmp_path / "inbox"
    env = {**os.environ, "TB_INBOX": str(inbox), "TB_STATE_DIR": str(tmp_path / "state")}
    log = tmp_path / "bridge.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", "run"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 20
        while "mapping.started" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        (inbox / "hello world.txt").write_text("hi")
        while '"key": "hello world.txt"' not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, log.read_text()
    assert '"event": "ObjectCreated:Put", "bucket": "inbox"' in log.read_text()


def test_status_shows_checkpoints_and_dead_letters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    from bridge.checkpoints import SqliteCheckpointStore

    state = tmp_path / "state"
    config = tmp_path / "b.yaml"
    config.write_text(
        f"state_dir: {state}\n"
        "functions: {f: {type: http, url: 'http://127.0.0.1:1'}}\n"
        "mappings:\n"
        f"  - {{name: inbox, function: f, source: {{type: local_dir, path: {tmp_path}/in}}}}\n"
    )
    store = SqliteCheckpointStore(state / "checkpoints.sqlite3")
    asyncio.run(store.namespace("inbox").write({"a.txt": "[1, 2]", "b.txt": "[3, 4]"}))
    store.close()
    (state / "failures").mkdir()
    (state / "failures" / "inbox.jsonl").write_text("{}\n{}\n{}\n")
    assert main(["status", "--config", str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "mapping",
        "source",
        "function",
        "state",
        "checkpoints",
        "spooled",
        "dead",
        "letters",
    ]
    assert lines[1].split() == ["inbox", "local_dir", "f", "stopped", "2", "-", "3"]
    (state / "paused.json").write_text('["inbox"]')  # what `pause` keeps
    assert main(["status", "--config", str(config)]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[3] == "paused"


def test_status_counts_what_waits_in_a_spool(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    from bridge.spool import Spool, folder_of

    state = tmp_path / "state"
    config = tmp_path / "b.yaml"
    config.write_text(
        f"state_dir: {state}\n"
        "functions: {f: {type: http, url: 'http://127.0.0.1:1'}}\n"
        "mappings:\n"
        "  - {name: 'feed.1', function: f, source: {type: websocket, url: 'ws://x/'}}\n"
    )

    async def fill() -> int:
        spool = Spool(folder_of(state, "feed.1"), sync="never")
        await spool.open()
        for _ in range(5):
            await spool.append(b"m")
        await spool.ack(2)
        size = spool.size
        await spool.aclose()
        return size

    size = asyncio.run(fill())
    assert main(["status", "--config", str(config)]) == 0
    row = capsys.readouterr().out.splitlines()[1].split()
    assert row[:6] == ["feed.1", "websocket", "f", "stopped", "0", "3"]
    assert row[6] == f"({size}"


def test_trigger_bridge_config_names_the_default_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A container image sets TRIGGER_BRIDGE_CONFIG once; its command and health check
    both follow it (an explicit --config still wins)."""
    named = tmp_path / "named.yaml"
    named.write_text("functions: {f: {type: http, url: 'http://x'}}\nmappings: []\n")
    monkeypatch.setenv("TRIGGER_BRIDGE_CONFIG", str(named))
    monkeypatch.chdir(tmp_path)
    assert main(["validate"]) == 1  # named.yaml: valid, nothing to run
    assert f"{named}: valid, but it has nothing to run" in capsys.readouterr().err
    assert main(["validate", "--config", str(REPO / "config" / "local.yaml")]) == 0
