"""Produce (Kafka) -> handler start latency at a steady 1,000 records/s, window 0.

Each record carries its send time (``{"t": <epoch s>}``, taken just before
``producer.send``); the handler notes the time it started. Both clocks are this machine's.
``http``: the minimal endpoint (its own process) stamps when it has read the request.
``runtime``: an awslambdaric handler (6 processes) stamps at handler start.
A warm-up phase (group joined, connections open, runtimes started) is not counted.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from bench._common import (
    BridgeProcess,
    Report,
    Sink,
    bridge_config,
    create_topic,
    delete_topic,
    http_function,
    kafka_mapping,
    percentile,
    plot_latency,
    runtime_function,
    services_env,
    unique,
    workdir,
)

__all__ = ["run"]

PARTITIONS = 6
RATE = 1000
WARMUP_SECONDS = 3.0


async def produce_steady(bootstrap: str, topic: str, seconds: float) -> tuple[int, float]:
    """Send RATE records/s for ``seconds``, paced every millisecond; return (count, start)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks=1)
    await producer.start()
    started_wall = time.time()
    started = time.monotonic()
    sent = 0
    pending = []
    try:
        while True:
            elapsed = time.monotonic() - started
            if elapsed >= seconds:
                break
            due = int(elapsed * RATE)
            while sent < due:
                value = b'{"t":%.6f}' % time.time()
                pending.append(await producer.send(topic, value, partition=sent % PARTITIONS))
                sent += 1
            await asyncio.sleep(0.001)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent, started_wall


def _stats(name: str, latencies_ms: list[float]) -> dict[str, Any]:
    return {
        "path": name,
        "records": len(latencies_ms),
        "p50 ms": percentile(latencies_ms, 0.50),
        "p95 ms": percentile(latencies_ms, 0.95),
        "p99 ms": percentile(latencies_ms, 0.99),
        "max ms": max(latencies_ms) if latencies_ms else float("nan"),
    }


def _read_stamps(path: Path) -> list[tuple[float, float]]:
    if not path.exists():
        return []
    pairs = []
    for line in path.read_text().splitlines():
        produced, started = line.split()
        pairs.append((float(produced), float(started)))
    return pairs


async def _measure(
    target: str, *, bootstrap: str, seconds: float
) -> tuple[list[float], list[tuple[float, float]]]:
    topic = unique(f"latency-{target}")
    await create_topic(bootstrap, topic, PARTITIONS)
    try:
        async with workdir(f"latency-{target}") as tmp, Sink(stamp=True) as sink:
            stamps = tmp / "stamps.txt"
            if target == "http":
                functions = http_function(sink.url)
            else:
                functions = runtime_function("stamp", PARTITIONS, {"STAMP_OUT": str(stamps)})
            mapping = kafka_mapping(
                "latency", function="fn", bootstrap=bootstrap, topic=topic,
                group=unique("group-latency"), batch_size=100, window=0,
            )  # fmt: skip
            async with BridgeProcess(bridge_config(tmp, functions, mapping), tmp) as bridge:

                async def seen() -> int:
                    if target == "http":
                        return int((await sink.stats("count"))["records"])
                    return len(_read_stamps(stamps))

                async def wait_seen(count: int) -> list[tuple[float, float]]:
                    deadline = time.monotonic() + 120
                    while True:
                        got = await seen()
                        if got >= count:
                            if target == "http":
                                return [(p, s) for p, s in (await sink.stats())["pairs"]]
                            return _read_stamps(stamps)
                        if time.monotonic() > deadline:
                            bridge.check_alive()
                            raise TimeoutError(f"{target}: {got}/{count} records seen")
                        await asyncio.sleep(0.5)

                warm, _ = await produce_steady(bootstrap, topic, WARMUP_SECONDS)
                await wait_seen(warm)
                count, start = await produce_steady(bootstrap, topic, seconds)
                pairs = await wait_seen(warm + count)
                rss = bridge.rss
        measured = [(p, s) for p, s in pairs if p >= start]
        return [(s - p) * 1000 for p, s in measured], rss
    finally:
        await delete_topic(bootstrap, topic)


async def run(*, quick: bool, label: str, targets: list[str]) -> Report:
    seconds = 10.0 if quick else 30.0
    env = services_env("kafka")
    bootstrap = env["TB_KAFKA_BOOTSTRAP"]
    report = Report("latency", quick, label)
    report.params = {
        "rate": f"{RATE} records/s",
        "seconds": seconds,
        "partitions": PARTITIONS,
        "maximum_batching_window_seconds": 0,
        "batch_size": 100,
        "bridge": "python -m bridge run (subprocess)",
    }
    samples: dict[str, list[float]] = {}
    for target in targets:
        latencies, _ = await _measure(target, bootstrap=bootstrap, seconds=seconds)
        name = f"Kafka produce -> handler start ({target})"
        samples[name] = latencies
        report.rows.append(_stats(name, latencies))
    first = report.rows[0] if report.rows else None
    if first is not None:
        report.targets.append({"target": "produce-to-handler p99 < 50 ms at 1,000 records/s, "
                               "window 0", "measured": f"{first['p99 ms']:.1f} ms "
                               f"({first['path']})", "met": first["p99 ms"] < 50})  # fmt: skip
    report.notes.append(
        "MinIO PUT -> handler and DynamoDB item write -> handler are not measured yet "
        "(see docs/benchmarks.md)"
    )
    report.series["latencies_ms"] = samples
    stem = report.write()
    plot_latency(stem.with_suffix(".latency.png"), samples,
                 title=f"produce -> handler start, {RATE} records/s, window 0")  # fmt: skip
    return report
