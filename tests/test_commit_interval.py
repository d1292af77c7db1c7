"""``commit_interval_seconds``: commits coalesced by time for log sources. Unbatched flows
commit far less often, nothing is lost, and a SIGKILL delivers again at most what the
partitions read ahead."""

from __future__ import annotations

import logging
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import (
    RunningBridge,
    config_text,
    delivered_lines,
    wait_for,
    write_journal,
)
from tests.e2e.test_crash_and_shutdown import _start, _stop


def _commit_rounds(caplog: pytest.LogCaptureFixture, mapping: str) -> int:
    return sum(
        1
        for r in caplog.records
        if getattr(r, "event", "") == "records.committed" and r.fields.get("mapping") == mapping  # type: ignore[attr-defined]
    )


@pytest.mark.parametrize("interval", [0, 0.5])
async def test_unbatched_kafka_commits_once_per_interval_not_per_invocation(
    tmp_path: Path,
    kafka_bootstrap: str,
    kafka_topic_factory: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
    interval: float,
) -> None:
    from aiokafka import AIOKafkaProducer

    caplog.set_level(logging.DEBUG, logger="bridge")
    topic = await kafka_topic_factory(partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for i in range(300):
            await producer.send(topic, b"%d" % i, partition=i % 2)
        await producer.flush()
    finally:
        await producer.stop()
    name = f"ci-{tmp_path.name}"
    mapping = f"""  - name: {name}
    function: sink
    batch_size: 1
    commit_interval_seconds: {interval}
    source: {{type: kafka, bootstrap_servers: [{kafka_bootstrap}], topics: [{topic}],
              starting_position: TRIM_HORIZON}}"""
    sink = tmp_path / "sink.jsonl"
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "app.py").write_text(
        "import json, os\n"
        "def handler(event, context):\n"
        "    with open(os.environ['OUT'], 'a') as f:\n"
        "        for records in event['records'].values():\n"
        "            for r in records:\n"
        "                f.write(json.dumps([r['partition'], r['offset']]) + '\\n')\n"
        "    return {}\n"
    )
    text = f"""
state_dir: {tmp_path}/state
functions:
  sink: {{type: runtime, command: python -m awslambdaric app.handler, cwd: {tmp_path}/fn,
          env: {{OUT: {sink}}}, concurrency: 2}}
mappings:
{mapping}
"""

    def delivered() -> int:
        return len(sink.read_text().splitlines()) if sink.exists() else 0

    async with RunningBridge(text) as bridge:
        await wait_for(lambda: delivered() == 300, timeout=60)
        await bridge.supervisor.aclose()  # drained: the last commits go out
    rounds = _commit_rounds(caplog, name)
    seen = Counter(tuple(x) for x in (eval_line(line) for line in sink.read_text().splitlines()))
    assert len(seen) == 300 and max(seen.values()) == 1
    if interval:
        # at most one commit round per partition per interval (plus the drain's)
        assert rounds <= 40, rounds
    else:
        assert rounds > 100, rounds  # behind nearly every invocation


def eval_line(line: str) -> list[int]:
    import json

    value: list[int] = json.loads(line)
    return value


async def test_sigkill_with_a_commit_interval_loses_nothing(tmp_path: Path) -> None:
    total, partitions = 600, 2
    write_journal(tmp_path / "journal.jsonl", [{"sleep": 0.002} for _ in range(total)])
    mapping = f"""  - name: m
    function: recorder
    source: {{type: journal, path: {tmp_path}/journal.jsonl, partitions: {partitions}}}
    batch_size: 1
    commit_interval_seconds: 0.3
    on_failure: file://{tmp_path}/failures.jsonl"""
    config = tmp_path / "bridge.yaml"
    config.write_text(config_text(tmp_path, mapping))
    first = _start(config, tmp_path / "bridge.log")
    try:
        await wait_for(lambda: len(delivered_lines(tmp_path)) >= 150, timeout=60)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        _stop(first, signal.SIGKILL)
    assert len(delivered_lines(tmp_path)) < total, "the kill came too late to test anything"
    second = _start(config, tmp_path / "bridge.log")
    try:
        await wait_for(lambda: set(delivered_lines(tmp_path)) == set(range(total)), timeout=90)
    finally:
        assert _stop(second) == 0
    repeats = Counter(delivered_lines(tmp_path))
    duplicates = sum(n - 1 for n in repeats.values())
    # what settled in the last interval may come again; never more than the read-ahead
    # share of each partition (max(4 x batch_size, 1000 / partitions) records)
    assert duplicates <= partitions * 500, duplicates
