"""A bridge on a real Kafka broker for the kafka source's tests: its configuration (a
``kafka_recorder`` handler under awslambdaric that writes each event to a JSONL file),
what the handler recorded, producing, the group's committed offsets, and a bridge in a
process of its own."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.e2e.harness import runtime_function
from tests.support.jsonl import read_jsonl

__all__ = [
    "committed_offsets",
    "kafka_config",
    "kafka_producer",
    "produce_values",
    "read_calls",
    "records_of",
    "start_bridge",
    "stop_bridge",
    "values_of",
]

REPO = Path(__file__).resolve().parents[2]
HANDLER = REPO / "tests" / "e2e" / "functions" / "kafka_recorder"


def kafka_config(
    tmp: Path,
    servers: str,
    topics: list[str],
    *,
    out: str = "calls.jsonl",
    name: str = "",
    concurrency: int = 2,
    source: dict[str, Any] | None = None,
    **options: Any,
) -> str:
    src = {"type": "kafka", "bootstrap_servers": servers, "topics": topics, **(source or {})}
    extra = "".join(f"\n    {k}: {json.dumps(v)}" for k, v in options.items())
    env = {"RECORDER_OUT": f"{tmp}/{out}", "RECORDER_NAME": name}
    function = runtime_function(HANDLER, env, concurrency=concurrency, timeout=30)
    return f"""
state_dir: {tmp}/state-{name or "a"}
shutdown_timeout_seconds: 10
retry_backoff: {{initial_seconds: 0.05, max_seconds: 0.2}}
functions:
{function}
mappings:
  - name: k
    function: recorder
    source: {json.dumps(src)}{extra}
"""


def read_calls(tmp: Path, out: str = "calls.jsonl") -> list[dict[str, Any]]:
    return read_jsonl(tmp / out)


def records_of(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for c in calls for rs in c["event"]["records"].values() for r in rs]


def values_of(calls: list[dict[str, Any]]) -> list[Any]:
    return [json.loads(base64.b64decode(r["value"])) for r in records_of(calls) if r["value"]]


@contextlib.asynccontextmanager
async def kafka_producer(servers: str) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all")
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def produce_values(
    servers: str, topic: str, values: list[Any], *, partition: int | None = None, **kw: Any
) -> None:
    async with kafka_producer(servers) as producer:
        sent = [
            await producer.send(
                topic,
                json.dumps(v).encode(),
                key=str(v["n"]).encode() if isinstance(v, dict) and "n" in v else None,
                partition=partition if partition is not None else None,
                **kw,
            )
            for v in values
        ]
        await asyncio.gather(*sent)


async def committed_offsets(
    servers: str, group: str, topic: str, partitions: int
) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, group_id=group)
    await consumer.start()
    try:
        out = {}
        for p in range(partitions):
            got = await consumer.committed(TopicPartition(topic, p))
            if got is not None:
                out[p] = got
        return out
    finally:
        await consumer.stop()


def start_bridge(tmp: Path, config: str, name: str) -> subprocess.Popen[bytes]:
    path = tmp / f"{name}.yaml"
    path.write_text(config)
    cmd = [sys.executable, "-m", "bridge", "run", "--config", str(path), "--no-reload"]
    with (tmp / f"{name}.log").open("ab") as log:
        return subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)


def stop_bridge(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=60)
