"""Worker processes (``workers:``): a real daemon whose mappings run in worker processes,
delivering to a real HTTP function; workers hung, killed, and the daemon killed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from tests.e2e.harness import wait_for
from tests.support.daemon import (
    Recorder,
    daemon_status,
    http_recorder,
    start_daemon,
    wait_daemon_up,
)

REPO = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):  # a zombie is not alive
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    return False


def _mapping(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(m for m in doc["mappings"] if m["mapping"] == name)


def _dir_config(tmp: Path, url: str, names: list[str], workers: int = 2) -> Path:
    mappings = "".join(
        f"  - {{name: {n}, function: sink, source: {{type: local_dir, path: {tmp / n}}}}}\n"
        for n in names
    )
    for n in names:
        (tmp / n).mkdir()
    config = tmp / "bridge.yaml"
    config.write_text(
        f"""
state_dir: {tmp}/state
admin: {{port: 0}}
workers: {workers}
shutdown_timeout_seconds: 5
retry_backoff: {{initial_seconds: 0.05, max_seconds: 0.2}}
functions:
  sink: {{type: http, url: "{url}", concurrency: 4}}
mappings:
{mappings}"""
    )
    return config


async def test_mappings_run_in_workers_that_report_pause_and_survive_a_hang_and_a_kill(
    tmp_path: Path,
) -> None:
    async with http_recorder() as sink:
        config = _dir_config(tmp_path, sink.url, ["a", "b", "c"])
        state = tmp_path / "state"
        daemon = start_daemon(config, tmp_path / "bridge.log")
        try:
            doc = await wait_daemon_up(state, workers=2)
            pids = {int(i): pid for i, pid in doc["workers"].items()}
            assert daemon.pid not in pids.values() and all(_alive(p) for p in pids.values())
            for name in ("a", "b", "c"):
                (tmp_path / name / "first.txt").write_text(name)
            await wait_for(lambda: len(sink.got()) == 3, what="the first three files")
            assert sorted(sink.got()) == ["first.txt"] * 3
            doc = await daemon_status(state)
            assert all(_mapping(doc, n)["records"]["delivered"] == 1 for n in "abc")

            # pause a mapping of a worker: nothing of it is delivered until it resumes
            pause = [sys.executable, "-m", "bridge", "pause", "b", "--config", str(config)]
            subprocess.run(pause, cwd=REPO, check=True, capture_output=True, timeout=60)
            assert _mapping(await daemon_status(state), "b")["state"] == "paused"
            (tmp_path / "b" / "while-paused.txt").write_text("b")
            await asyncio.sleep(1.5)
            assert "while-paused.txt" not in sink.got()
            resume = [sys.executable, "-m", "bridge", "resume", "b", "--config", str(config)]
            subprocess.run(resume, cwd=REPO, check=True, capture_output=True, timeout=60)
            await wait_for(lambda: "while-paused.txt" in sink.got(), what="the paused file")

            # a hung worker (SIGSTOP: a mapping burning its CPU, a stuck call) holds up only
            # its own mappings; the daemon still answers
            hung, other = pids[0], pids[1]  # a and c are in worker 0, b in worker 1
            os.kill(hung, signal.SIGSTOP)
            try:
                (tmp_path / "a" / "during-hang.txt").write_text("a")
                (tmp_path / "b" / "during-hang.txt").write_text("b")
                await wait_for(
                    lambda: sink.got().count("during-hang.txt") == 1, what="b during the hang"
                )
                started = time.monotonic()
                doc = await daemon_status(state)
                assert time.monotonic() - started < 5  # answered with what it last knew
                assert _mapping(doc, "b")["records"]["delivered"] == 3
            finally:
                os.kill(hung, signal.SIGCONT)
            await wait_for(lambda: sink.got().count("during-hang.txt") == 2, what="a after it")
            before = _mapping(await daemon_status(state), "a")["records"]["read"]

            # a killed worker is started again and its mappings resume from their checkpoints
            os.kill(hung, signal.SIGKILL)
            (tmp_path / "a" / "while-dead.txt").write_text("a")
            (tmp_path / "c" / "while-dead.txt").write_text("c")
            await wait_for(
                lambda: sink.got().count("while-dead.txt") == 2, timeout=30, what="after restart"
            )
            doc = await daemon_status(state)
            assert int(doc["workers"]["0"]) != hung and doc["workers"]["1"] == other
            assert _mapping(doc, "a")["records"]["read"] >= before + 1  # counts never go back
            log = (tmp_path / "bridge.log").read_text()
            assert re.search(r"worker 0 exited with code -9; restarting it in \d+ s", log)
        finally:
            daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(timeout=60)
        assert code == 0
        await wait_for(lambda: not any(_alive(p) for p in pids.values()), timeout=5)
        # every file delivered; a kill may repeat, never lose (a's were all settled before)
        assert set(sink.got()) == {
            "first.txt",
            "while-paused.txt",
            "during-hang.txt",
            "while-dead.txt",
        }


async def test_a_killed_daemon_takes_its_workers_down(tmp_path: Path) -> None:
    async with http_recorder() as sink:
        config = _dir_config(tmp_path, sink.url, ["a", "b"])
        daemon = start_daemon(config, tmp_path / "bridge.log")
        try:
            doc = await wait_daemon_up(tmp_path / "state", workers=2)
        finally:
            daemon.send_signal(signal.SIGKILL)
            daemon.wait(timeout=10)
        pids = [int(p) for p in doc["workers"].values()]
        # they see the daemon's end of their socket close, drain and exit
        await wait_for(lambda: not any(_alive(p) for p in pids), timeout=20, what="workers gone")


# ---------------------------------------------------------------- Kafka: parallelism


def _kafka_config(tmp: Path, url: str, servers: str, topic: str) -> Path:
    config = tmp / "kafka.yaml"
    source = {"type": "kafka", "bootstrap_servers": servers, "topics": [topic]}
    config.write_text(
        f"""
state_dir: {tmp}/state
admin: {{port: 0}}
workers: 2
shutdown_timeout_seconds: 5
functions:
  sink: {{type: http, url: "{url}", concurrency: 4}}
mappings:
  - name: k
    function: sink
    parallelism: 2
    batch_size: 10
    maximum_batching_window_seconds: 0.05
    source: {json.dumps(source)}
"""
    )
    return config


def _offsets(sink: Recorder) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for event in sink.events:
        for partition, records in event.get("records", {}).items():
            out[partition] += [r["offset"] for r in records]
    return out


async def test_a_kafka_mapping_with_parallelism_runs_a_member_per_worker(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic_factory: Any
) -> None:
    from aiokafka import AIOKafkaProducer

    partitions = 4
    topic = await kafka_topic_factory(partitions=partitions)

    async def produce(start: int, count: int) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for i in range(start, start + count):
                await producer.send(topic, json.dumps({"n": i}).encode(), partition=i % partitions)
            await producer.flush()
        finally:
            await producer.stop()

    async with http_recorder(delay=0.02) as sink:
        config = _kafka_config(tmp_path, sink.url, kafka_bootstrap, topic)
        log = tmp_path / "bridge.log"
        daemon = start_daemon(config, log)
        try:
            doc = await wait_daemon_up(tmp_path / "state", workers=2)
            await wait_for(
                lambda: (
                    len(set(re.findall(r"\[worker (\d)\].*partitions assigned", log.read_text())))
                    == 2
                ),
                timeout=60,
                what="both members assigned partitions",
            )
            await produce(0, 600)
            total = lambda: sum(len(v) for v in _offsets(sink).values())  # noqa: E731
            await wait_for(lambda: total() >= 200, timeout=60, what="200 records")
            # a member dies mid-stream: it is started again and rejoins; nothing is lost
            os.kill(int(doc["workers"]["1"]), signal.SIGKILL)
            assert total() < 500
            complete = lambda: all(  # noqa: E731
                set(_offsets(sink).get(f"{topic}-{p}", [])) >= set(range(150))
                for p in range(partitions)
            )
            await wait_for(complete, timeout=90, what="every record of every partition")
        finally:
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=60) == 0
        offsets = _offsets(sink)
        assert sorted(offsets) == [f"{topic}-{p}" for p in range(partitions)]
        for partition, seen in offsets.items():
            assert set(seen) == set(range(150)), partition  # 600 / 4 partitions, no gap
            first = list(dict.fromkeys(seen))  # in order of first delivery
            assert first == sorted(first), f"{partition} out of order"
        assigned = re.findall(r"\[worker (\d)\].*partitions assigned: (.*)", log.read_text())
        assert {w for w, _ in assigned} == {"0", "1"}


async def test_a_reload_that_removes_a_worker_moves_its_mappings_without_running_them_twice(
    tmp_path: Path,
) -> None:
    async with http_recorder(delay=0.05) as sink:
        config = _dir_config(tmp_path, sink.url, ["a", "b"])
        state = tmp_path / "state"
        daemon = start_daemon(config, tmp_path / "bridge.log")
        try:
            doc = await wait_daemon_up(state, workers=2)
            retired = int(doc["workers"]["1"])  # b's
            for i in range(20):
                (tmp_path / "b" / f"before-{i}.txt").write_text("b")
            config.write_text(config.read_text().replace("workers: 2", "workers: 1"))
            daemon.send_signal(signal.SIGHUP)
            doc = await wait_daemon_up(state, workers=1)
            for i in range(5):
                (tmp_path / "b" / f"after-{i}.txt").write_text("b")
            wanted = {f"before-{i}.txt" for i in range(20)} | {f"after-{i}.txt" for i in range(5)}
            await wait_for(lambda: set(sink.got()) >= wanted, what="b's files in its new worker")
            assert list(doc["workers"]) == ["0"]
            await wait_for(lambda: not _alive(retired), timeout=10, what="worker 1 gone")
        finally:
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=60) == 0
        log = (tmp_path / "bridge.log").read_text()
        # b stopped in worker 1 (drained) before it started in worker 0
        stopped = log.index("[worker 1] bridge: mapping.stopped mapping=b")
        assert log.index("[worker 0] bridge: mapping.started mapping=b") > stopped
        # drained, not killed: nothing of b was delivered twice
        assert len(sink.got()) == len(set(sink.got()))


async def test_a_worker_hung_through_a_reload_is_killed_and_started_with_the_new_config(
    tmp_path: Path,
) -> None:
    async with http_recorder() as sink:
        config = _dir_config(tmp_path, sink.url, ["a", "b"])
        config.write_text(
            config.read_text().replace("shutdown_timeout_seconds: 5", "shutdown_timeout_seconds: 1")
        )
        state = tmp_path / "state"
        daemon = start_daemon(config, tmp_path / "bridge.log")
        try:
            doc = await wait_daemon_up(state, workers=2)
            hung = int(doc["workers"]["0"])  # a's
            os.kill(hung, signal.SIGSTOP)
            edited = config.read_text().replace("sink, source", "sink, batch_size: 1, source", 1)
            config.write_text(edited)
            daemon.send_signal(signal.SIGHUP)
            (tmp_path / "a" / "after.txt").write_text("a")
            (tmp_path / "b" / "after.txt").write_text("b")
            # b's worker is not held up by a's
            await wait_for(lambda: sink.got().count("after.txt") == 1, what="b's file")
            await wait_for(
                lambda: sink.got().count("after.txt") == 2, timeout=40, what="a's, after the kill"
            )
            doc = await daemon_status(state)
            assert int(doc["workers"]["0"]) != hung and not _alive(hung)
        finally:
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=60) == 0
        log = (tmp_path / "bridge.log").read_text()
        assert "worker 0 did not apply its configuration in 11 s: killing it" in log
