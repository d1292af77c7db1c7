"""The kafka source when its broker goes away under a running bridge: one line each way,
the library's noise thinned out, nothing lost."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from datetime import datetime
from pathlib import Path

from tests.e2e.harness import wait_for
from tests.support.kafka_broker import PrivateKafka
from tests.support.kafka_run import (
    kafka_config,
    produce_values,
    read_calls,
    start_bridge,
    stop_bridge,
    values_of,
)

# "2026-11-30 08:45:27,341 WARNING bridge: source.unavailable mapping=k since=..."
_LINE = re.compile(r"^\S+ (\S+),\d+ (\w+) (\S+): (.*)$")


def _log(path: Path) -> list[tuple[str, str, str, str]]:
    """(time, level, logger, message) of each line the bridge logged."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        m = _LINE.match(line)
        if m:
            out.append((m[1], m[2], m[3], m[4]))
    return out


def _bridge(path: Path, event: str) -> list[str]:
    return [msg for _, _, name, msg in _log(path) if name == "bridge" and msg.startswith(event)]


async def test_a_broker_killed_mid_run_is_one_line_each_way_and_nothing_is_lost(
    tmp_path: Path,
    kafka_bootstrap: str,  # never killed: it stands for the jars and the kafka marker
) -> None:
    """A broker of the test's own is killed (``kill -9``) under a running bridge and
    started again about 40 s later. The bridge says so once when it notices and once when
    it is back. aiokafka's lines (about 80 a second while the broker is down) pass once
    per template, then once per 30 s with the count of those held back. Every record
    produced before and after the outage is delivered."""
    broker = PrivateKafka(tmp_path / "broker")
    await broker.start()
    bridge = None
    try:
        topic = "outage"
        await broker.create_topic(topic, partitions=2)
        await produce_values(broker.bootstrap, topic, [{"n": i} for i in range(10)])
        bridge = start_bridge(tmp_path, kafka_config(tmp_path, broker.bootstrap, [topic]), "bridge")
        await wait_for(lambda: len(values_of(read_calls(tmp_path))) >= 10, timeout=60)
        await asyncio.sleep(5)  # idle for longer than the 3 s grace: no outage
        assert not _bridge(tmp_path / "bridge.log", "source.unavailable")
        before = len(_log(tmp_path / "bridge.log"))
        broker.kill()
        killed = datetime.now().timestamp()
        await asyncio.sleep(32)
        await broker.start()
        await produce_values(broker.bootstrap, topic, [{"n": i} for i in range(10, 20)])
        await wait_for(
            lambda: {v["n"] for v in values_of(read_calls(tmp_path))} == set(range(20)), timeout=90
        )
        await wait_for(lambda: bool(_bridge(tmp_path / "bridge.log", "source.recovered")))
    finally:
        if bridge is not None:
            assert stop_bridge(bridge) == 0
        broker.kill()
    log = tmp_path / "bridge.log"
    [down] = _bridge(log, "source.unavailable")
    match = re.fullmatch(r"source\.unavailable mapping=k since=(\S+) reason=(.+)", down)
    assert match, down
    since = datetime.fromisoformat(match[1].replace("Z", "+00:00")).timestamp()
    assert killed - 1 < since < killed + 5
    assert match[2] == f"cannot connect to Kafka at {broker.bootstrap}: no broker answers"
    [back] = _bridge(log, "source.recovered")
    after = re.fullmatch(r"source\.recovered mapping=k after=([0-9.]+)s", back)
    assert after and float(after[1]) >= 32, back
    library = [
        (level, msg) for _, level, name, msg in _log(log)[before:] if name.startswith("aiokafka")
    ]
    errors = [msg for level, msg in library if level in ("WARNING", "ERROR")]
    suffix = re.compile(r" \((\d+) more like this suppressed\)$")
    held = sum(int(m[1]) for m in map(suffix.search, errors) if m)
    templates = Counter(re.sub(r"\d+", "N", suffix.sub("", m)) for m in errors)
    # each template once, then once every 30 s with the count held back since
    assert max(templates.values()) <= 2 + float(after[1]) // 30, templates
    assert held > 20 * len(errors), (held, errors)  # hundreds held, a dozen or so shown
    assert sorted({v["n"] for v in values_of(read_calls(tmp_path))}) == list(
        range(20)
    )  # nothing lost
