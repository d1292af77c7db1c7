"""Kafka: restart-to-first-delivery after a ``kill -9``, with static group membership off
(``group_instance_id: false``, a new member each start) and on (the default), in one run.

A bridge (``python -m bridge run``, ``http`` target, the minimal endpoint) reads a
3-partition topic in a consumer group of its own. Each round: once the bridge has
delivered and committed, and 1 to 4 s later (at random, so that the kill falls anywhere
between two heartbeats), it is killed (``SIGKILL``) and at once started again on the same
config and state_dir, as a supervisor (systemd, Kubernetes) would; one record is produced
right after the start. The figure is the time from the start of the new process to the
endpoint receiving that record (the endpoint's own clock; same machine).

A new member has to wait until the group drops the dead one, which happens when its
session (``session_timeout_seconds``, 10 s) expires, counted from its last heartbeat. The
same static member (same ``group.instance.id``) replaces it at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import time
from pathlib import Path

from bench._common import (
    BridgeProcess,
    Report,
    Sink,
    bridge_config,
    create_topic,
    delete_topic,
    http_function,
    services_env,
    unique,
    workdir,
)

__all__ = ["run"]

PARTITIONS = 3
SESSION_SECONDS = 10.0
SETTLE_SECONDS = (1.0, 4.0)  # after a delivery, before the kill: at random in between,
# so the kill falls anywhere between two heartbeats (every 3 s)
MODES = {"static membership off": False, "static membership on (default)": True}


def _config(tmp: Path, url: str, bootstrap: str, topic: str, static: bool) -> str:
    source = {
        "type": "kafka",
        "bootstrap_servers": bootstrap,
        "topics": [topic],
        "consumer_group_id": unique("restart"),
        "group_instance_id": static,
        "session_timeout_seconds": SESSION_SECONDS,
    }
    mapping = f"""
  - name: restart
    function: fn
    batch_size: 100
    maximum_batching_window_seconds: 0
    source: {json.dumps(source)}
"""
    return bridge_config(tmp, http_function(url), mapping)


async def _produce_one(bootstrap: str, topic: str, n: int) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b'{"round":%d}' % n)
    finally:
        await producer.stop()


async def _delivered_after(sink: Sink, count: int, timeout: float) -> float:
    """Wait until the endpoint has seen more than ``count`` records; its time (epoch s)
    of the last one."""
    deadline = time.monotonic() + timeout
    while (await sink.stats("count"))["records"] <= count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no delivery in {timeout} s")
        await asyncio.sleep(0.05)
    last: float = (await sink.stats())["last"]
    return last


async def _rounds(sink: Sink, bootstrap: str, static: bool, rounds: int) -> list[float]:
    settle = random.Random(rounds)  # the same pauses for both modes
    topic = unique("restart")
    await create_topic(bootstrap, topic, PARTITIONS)
    times: list[float] = []
    try:
        async with workdir("restart") as tmp:
            config = _config(tmp, sink.url, bootstrap, topic, static)
            seen = (await sink.stats("count"))["records"]
            bridge = BridgeProcess(config, tmp)
            await bridge.__aenter__()
            try:
                await _produce_one(bootstrap, topic, 0)
                await _delivered_after(sink, seen, timeout=60)  # joined and delivering
                for n in range(1, rounds + 1):
                    await asyncio.sleep(settle.uniform(*SETTLE_SECONDS))
                    assert bridge.proc is not None
                    bridge.proc.kill()  # SIGKILL: no LeaveGroup, no commit, nothing
                    await bridge.proc.wait()
                    await bridge.__aexit__()
                    seen = (await sink.stats("count"))["records"]
                    started = time.time()
                    bridge = BridgeProcess(config, tmp)
                    await bridge.__aenter__()
                    await _produce_one(bootstrap, topic, n)
                    try:
                        delivered = await _delivered_after(sink, seen, timeout=60)
                    except TimeoutError:
                        bridge.check_alive()
                        raise
                    times.append(delivered - started)
            finally:
                await bridge.__aexit__()
    finally:
        await delete_topic(bootstrap, topic)
    return times


async def run(*, quick: bool, label: str) -> Report:
    rounds = 3 if quick else 5
    # the running test services' broker if exported (`source` their env), else started
    bootstrap = os.environ.get("TB_KAFKA_BOOTSTRAP") or services_env("kafka")["TB_KAFKA_BOOTSTRAP"]
    report = Report("kafka-restart", quick, label)
    report.params = {
        "rounds per mode": rounds,
        "partitions": PARTITIONS,
        "session_timeout_seconds": SESSION_SECONDS,
        "pause before the kill (s)": f"{SETTLE_SECONDS[0]:g}-{SETTLE_SECONDS[1]:g}, at random",
        "bridge": "python -m bridge run (subprocess), http target",
    }
    results: dict[str, list[float]] = {}
    async with Sink() as sink:
        for mode, static in MODES.items():
            results[mode] = times = await _rounds(sink, bootstrap, static, rounds)
            report.rows.append(
                {
                    "mode": mode,
                    "median s": statistics.median(times),
                    "min s": min(times),
                    "max s": max(times),
                    "each round s": ", ".join(f"{t:.2f}" for t in times),
                }
            )
    report.series = {"restart_to_first_delivery": results}
    report.notes.append(
        "seconds from the start of the restarted bridge process to the endpoint receiving "
        "the first record produced after it; the bridge had been SIGKILLed just before"
    )
    report.write()
    return report
