"""The bridge as a real process: SIGKILL loses nothing, SIGTERM drains in-flight work."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.e2e.harness import calls, config_text, delivered_lines, wait_for, write_journal

REPO = Path(__file__).resolve().parents[2]
LAUNCH = (
    "import sys; from bridge import registry;"
    "registry.register('journal', 'tests.support.journal:JournalConnector');"
    "from bridge.cli import main; sys.exit(main(sys.argv[1:]))"
)


def _start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-c", LAUNCH, "run", "--config", str(config), "--no-reload"],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _config(tmp: Path, partitions: int, batch_size: int) -> Path:
    mapping = f"""  - name: m
    function: recorder
    source: {{type: journal, path: {tmp}/journal.jsonl, partitions: {partitions}}}
    batch_size: {batch_size}
    on_failure: file://{tmp}/failures.jsonl"""
    path = tmp / "bridge.yaml"
    path.write_text(config_text(tmp, mapping))
    return path


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    return proc.wait(timeout=30)


async def test_sigkill_mid_stream_loses_nothing(tmp_path: Path) -> None:
    total, partitions, batch_size = 400, 2, 10
    write_journal(tmp_path / "journal.jsonl", [{"sleep": 0.005} for _ in range(total)])
    config = _config(tmp_path, partitions, batch_size)
    first = _start(config, tmp_path / "bridge.log")
    try:
        await wait_for(lambda: len(delivered_lines(tmp_path)) >= 100, timeout=60)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        _stop(first, signal.SIGKILL)
    before = len(delivered_lines(tmp_path))
    assert before < total, "the kill came too late to test anything"
    second = _start(config, tmp_path / "bridge.log")
    try:
        await wait_for(lambda: set(delivered_lines(tmp_path)) == set(range(total)), timeout=90)
    finally:
        assert _stop(second) == 0
    repeats = Counter(delivered_lines(tmp_path))
    duplicates = sum(n - 1 for n in repeats.values())
    # at most two batches per partition come again: the one in flight at the moment of
    # the kill and the one delivered before it whose commit was on its way
    assert duplicates <= 2 * partitions * batch_size, repeats


async def test_sigterm_lets_the_batch_in_flight_finish_and_commits_it(tmp_path: Path) -> None:
    write_journal(tmp_path / "journal.jsonl", [{"sleep": 1.5}])
    config = _config(tmp_path, 1, 1)
    proc = _start(config, tmp_path / "bridge.log")
    try:
        await wait_for(lambda: len(calls(tmp_path)) == 1, timeout=30)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0
    finally:
        _stop(proc, signal.SIGKILL)
    restarted = _start(config, tmp_path / "bridge.log")
    try:
        await asyncio.sleep(2.0)  # time enough to redeliver, were line 0 not committed
    finally:
        assert _stop(restarted) == 0
    assert delivered_lines(tmp_path) == [0]
    log = (tmp_path / "bridge.log").read_text()
    assert "bridge.stopped" in log, log


async def test_a_second_bridge_on_the_same_state_refuses_naming_the_first(
    tmp_path: Path,
) -> None:
    """Two bridges on one state_dir would both deliver everything: the second refuses."""
    write_journal(tmp_path / "journal.jsonl", [{"n": 0}])
    config = _config(tmp_path, 1, 1)
    first = _start(config, tmp_path / "first.log")
    try:
        await wait_for(lambda: len(delivered_lines(tmp_path)) == 1, timeout=30)
        second = subprocess.run(
            [sys.executable, "-c", LAUNCH, "run", "--config", str(config), "--no-reload"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        assert _stop(first) == 0
    assert second.returncode == 2
    assert f"in use by another bridge (pid {first.pid})" in second.stderr
    assert "Traceback" not in second.stderr
    assert len(delivered_lines(tmp_path)) == 1  # the second one delivered nothing


async def test_bridges_started_at_once_on_one_state_leave_one_running(tmp_path: Path) -> None:
    """Three bridges started together on a fresh state_dir: one runs and delivers each
    line once, the others refuse (no "database is locked" crash, no second delivery)."""
    write_journal(tmp_path / "journal.jsonl", [{"n": i} for i in range(20)])
    config = _config(tmp_path, 1, 1)
    bridges = [_start(config, tmp_path / f"bridge-{i}.log") for i in range(3)]
    try:
        await wait_for(lambda: len(delivered_lines(tmp_path)) >= 20, timeout=30)
        await wait_for(lambda: sum(b.poll() is not None for b in bridges) == 2, timeout=30)
        await asyncio.sleep(0.5)
        running = [b for b in bridges if b.poll() is None]
        assert len(running) == 1
    finally:
        codes = {b.pid: _stop(b) for b in bridges}
    for i, bridge in enumerate(bridges):
        log = (tmp_path / f"bridge-{i}.log").read_text()
        assert "Traceback" not in log and "database is locked" not in log
        if bridge is not running[0]:
            assert codes[bridge.pid] == 2
            assert f"in use by another bridge (pid {running[0].pid})" in log
    delivered = Counter(delivered_lines(tmp_path))
    assert len(delivered) == 20 and set(delivered.values()) == {1}  # each line once


def test_a_damaged_checkpoint_file_is_one_line_saying_what_to_do(tmp_path: Path) -> None:
    config = _config(tmp_path, 1, 1)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "checkpoints.sqlite3").write_bytes(b"not a database " * 100)
    done = subprocess.run(
        [sys.executable, "-c", LAUNCH, "run", "--config", str(config), "--no-reload"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "checkpoints.sqlite3: file is not a database" in done.stderr
    assert "the file is damaged: restore it, or move it away" in done.stderr


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="a read-only mount needs root (unshare -m)",
)
def test_a_read_only_state_dir_is_one_line_saying_what_to_do(tmp_path: Path) -> None:
    """The state directory, checkpoints and all, on a file system mounted read-only."""
    config = _config(tmp_path, 1, 1)
    state = tmp_path / "state"
    state.mkdir()
    (state / "checkpoints.sqlite3").write_bytes(b"")
    script = (
        f'mount --bind "{state}" "{state}" && mount -o remount,ro,bind "{state}" && '
        f'exec "{sys.executable}" -c "$0" run --config "{config}" --no-reload'
    )
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, LAUNCH],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert (
        f"cannot use state directory {state}: Read-only file system (the state directory "
        "must be writable by the bridge)"
    ) in done.stderr.splitlines()[-1]
