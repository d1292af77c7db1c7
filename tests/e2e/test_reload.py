"""Editing the config while running: changed mappings restart, others keep flowing,
and an invalid edit is rejected while the old config keeps running."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from bridge import telemetry
from bridge.config import load_config
from bridge.reload import watch_config
from bridge.supervisor import Supervisor
from tests.e2e.harness import config_text, delivered_lines, wait_for, write_journal


def _mapping(tmp: Path, name: str, journal: str, batch_size: int = 1) -> str:
    return f"""  - name: {name}
    function: recorder
    source: {{type: journal, path: {tmp}/{journal}, partitions: 1}}
    batch_size: {batch_size}"""


def _starts(mapping: str) -> int:
    return telemetry.counters().get((telemetry.MAPPING_STARTED, mapping), 0)


async def test_edit_restarts_only_the_changed_mapping(tmp_path: Path) -> None:
    path = tmp_path / "bridge.yaml"
    a, b = f"a-{tmp_path.name}", f"b-{tmp_path.name}"
    write_journal(tmp_path / "a.jsonl", [{"n": i} for i in range(3)])
    write_journal(tmp_path / "b.jsonl", [{"n": i} for i in range(3)])
    both = _mapping(tmp_path, a, "a.jsonl") + "\n" + _mapping(tmp_path, b, "b.jsonl")
    path.write_text(config_text(tmp_path, both))
    stop = asyncio.Event()
    supervisor = Supervisor()
    await supervisor.apply(load_config(path))
    watcher = asyncio.create_task(watch_config(path, supervisor, stop))
    try:
        await wait_for(lambda: len(delivered_lines(tmp_path)) == 6)
        await asyncio.sleep(0.3)  # the watcher is watching
        edited = _mapping(tmp_path, a, "a.jsonl") + "\n" + _mapping(tmp_path, b, "b.jsonl", 5)
        path.write_text(config_text(tmp_path, edited))
        await wait_for(lambda: _starts(b) == 2, timeout=15)
        assert _starts(a) == 1
        write_journal(tmp_path / "a.jsonl", [{"n": 3}])
        await wait_for(lambda: len(delivered_lines(tmp_path)) == 7)

        # an invalid edit: rejected, the running mappings are untouched
        path.write_text(config_text(tmp_path, edited + "\n    batch_size: -3"))
        await asyncio.sleep(1.0)
        assert supervisor.running == sorted([a, b])
        assert telemetry.counters().get((telemetry.CONFIG_REJECTED, ""), 0) >= 1
        write_journal(tmp_path / "b.jsonl", [{"n": 3}])
        await wait_for(lambda: len(delivered_lines(tmp_path)) == 8)
        assert (_starts(a), _starts(b)) == (1, 2)

        # a YAML tag the bridge does not know (CloudFormation's !Ref): rejected, watcher lives
        rejected = telemetry.counters().get((telemetry.CONFIG_REJECTED, ""), 0)
        tagged = edited + "\n    maximum_retry_attempts: !Ref Retries"
        path.write_text(config_text(tmp_path, tagged))
        await wait_for(
            lambda: telemetry.counters().get((telemetry.CONFIG_REJECTED, ""), 0) > rejected
        )
        assert not watcher.done() and supervisor.running == sorted([a, b])

        # removing a mapping stops it
        path.write_text(config_text(tmp_path, _mapping(tmp_path, a, "a.jsonl")))
        await wait_for(lambda: supervisor.running == [a], timeout=15)
    finally:
        stop.set()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await supervisor.aclose()


async def test_an_edit_that_validates_but_cannot_be_applied_leaves_the_old_config_running(
    tmp_path: Path,
) -> None:
    """``state_dir`` under a regular file: the file validates, but its checkpoint store
    cannot be opened. The edit is rejected with the reason, nothing stops, and the
    watcher goes on applying later edits."""
    path = tmp_path / "bridge.yaml"
    name = f"a-{tmp_path.name}"
    write_journal(tmp_path / "a.jsonl", [{"n": 0}])
    good = config_text(tmp_path, _mapping(tmp_path, name, "a.jsonl"))
    path.write_text(good)
    (tmp_path / "blocker").write_text("a file, not a folder")
    stop = asyncio.Event()
    supervisor = Supervisor()
    await supervisor.apply(load_config(path))
    watcher = asyncio.create_task(watch_config(path, supervisor, stop))
    rejected = telemetry.counters().get((telemetry.CONFIG_REJECTED, ""), 0)
    try:
        await wait_for(lambda: len(delivered_lines(tmp_path)) == 1)
        await asyncio.sleep(0.3)  # the watcher is watching
        path.write_text(good.replace(f"{tmp_path}/state", f"{tmp_path}/blocker/state"))
        await wait_for(
            lambda: telemetry.counters().get((telemetry.CONFIG_REJECTED, ""), 0) > rejected
        )
        assert not watcher.done() and supervisor.running == [name]
        write_journal(tmp_path / "a.jsonl", [{"n": 1}])  # the old config still delivers
        await wait_for(lambda: len(delivered_lines(tmp_path)) == 2)
        # and a later valid edit is applied
        path.write_text(config_text(tmp_path, _mapping(tmp_path, name, "a.jsonl", 5)))
        await wait_for(lambda: _starts(name) == 2, timeout=15)
        write_journal(tmp_path / "a.jsonl", [{"n": 2}])
        await wait_for(lambda: len(delivered_lines(tmp_path)) == 3)
    finally:
        stop.set()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await supervisor.aclose()


async def test_a_bug_restarts_the_mapping_from_its_checkpoint_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    """Building one batch's event raises (a bug, once): the traceback is logged, the
    mapping is restarted by the supervisor, and every line is delivered, the ones around
    the bug included."""
    name = f"bug-{tmp_path.name}"
    write_journal(tmp_path / "a.jsonl", [{"n": i} for i in range(30)])
    mapping = f"""  - name: {name}
    function: recorder
    source: {{type: journal, path: {tmp_path}/a.jsonl, partitions: 2, bug_at_line: 12}}
    batch_size: 4"""
    path = tmp_path / "bridge.yaml"
    path.write_text(config_text(tmp_path, mapping))
    supervisor = Supervisor()
    await supervisor.apply(load_config(path))
    try:
        await wait_for(lambda: set(delivered_lines(tmp_path)) == set(range(30)), timeout=30)
    finally:
        await supervisor.aclose()
    assert telemetry.counters().get((telemetry.MAPPING_CRASHED, name)) == 1
    assert _starts(name) == 2
