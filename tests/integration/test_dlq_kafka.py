"""Dead letters of a Kafka mapping on the real broker: a ``file://`` destination (batch
records: offsets only, re-read from the source topic) and a ``kafka://`` destination
(one message per record with its payload), replayed to a real function or put back."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from tests.e2e.harness import RunningBridge, failures, wait_for
from tests.support.dlq import cli, events, fix_function, flaky_function


def kafka_config(tmp: Path, bootstrap: str, topic: str, *, on_failure: str = "") -> str:
    return f"""
state_dir: {tmp}/state
retry_backoff: {{initial_seconds: 0.01, max_seconds: 0.05}}
shutdown_timeout_seconds: 5
functions:
{flaky_function(tmp)}
mappings:
  - name: orders
    function: flaky
    source: {{type: kafka, bootstrap_servers: [{bootstrap}], topics: [{topic}]}}
    maximum_retry_attempts: 0
    maximum_batching_window_seconds: 1
    filter_criteria:
      filters: [{{pattern: '{{"value": {{"skip": [{{"exists": false}}]}}}}'}}]
    {on_failure}
"""


async def produce(bootstrap: str, topic: str, values: list[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for n, value in enumerate(values):
            await producer.send_and_wait(
                topic,
                json.dumps(value).encode(),
                key=f"k{n}".encode(),
                partition=0,
                headers=[("h", f"v{n}".encode())],
            )
    finally:
        await producer.stop()


async def read_topic(bootstrap: str, topic: str, start: int = 0) -> list[Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        consumer.seek(tp, start)
        out: list[Any] = []
        while await consumer.position(tp) < end:
            out.extend((await consumer.getmany(tp, timeout_ms=500)).get(tp, []))
        return out
    finally:
        await consumer.stop()


def offsets(event: dict[str, Any]) -> list[int]:
    return [r["offset"] for rs in event["records"].values() for r in rs]


async def test_file_dead_letters_are_re_read_from_the_topic_filters_applied_again(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic_factory: Any
) -> None:
    topic = await kafka_topic_factory()
    await produce(kafka_bootstrap, topic, [{"n": 0}, {"n": 1, "skip": True}, {"n": 2}])
    config = tmp_path / "bridge.yaml"
    config.write_text(kafka_config(tmp_path, kafka_bootstrap, topic))
    dead = tmp_path / "state" / "failures" / "orders.jsonl"
    async with RunningBridge(config.read_text()):
        await wait_for(lambda: sum(d["KafkaBatchInfo"]["batchSize"] for d in failures(dead)) == 2)
    delivered = [o for e in events(tmp_path) for o in offsets(e)]
    assert sorted(delivered) == [0, 2]  # offset 1 was filtered out

    listed = await cli("dlq", "list", "--config", str(config), "--json")
    assert listed.status == 0, listed.err
    assert {x["replay"]["how"] for x in listed.json()} == {"re-read"}
    assert {x["condition"] for x in listed.json()} == {"RetryAttemptsExhausted"}

    fix_function(tmp_path)
    before = len(events(tmp_path))
    replayed = await cli("dlq", "replay", "--config", str(config), "--mapping", "orders")
    assert replayed.status == 0, replayed.out + replayed.err
    again = events(tmp_path)[before:]
    assert sorted(o for e in again for o in offsets(e)) == [0, 2]  # not the filtered one
    records = [r for e in again for rs in e["records"].values() for r in rs]
    assert sorted(json.loads(base64.b64decode(r["value"]))["n"] for r in records) == [0, 2]
    assert {r["topic"] for r in records} == {topic}

    second = await cli("dlq", "replay", "--config", str(config))
    assert second.status == 0 and "replayed 0," in second.out
    assert len(events(tmp_path)) == before + len(again)


async def test_records_no_longer_in_the_topic_are_reported_not_skipped(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic_factory: Any
) -> None:
    topic = await kafka_topic_factory()
    await produce(kafka_bootstrap, topic, [{"n": 0}, {"n": 1}])
    config = tmp_path / "bridge.yaml"
    config.write_text(kafka_config(tmp_path, kafka_bootstrap, topic))
    dead = tmp_path / "state" / "failures" / "orders.jsonl"
    async with RunningBridge(config.read_text()):
        await wait_for(lambda: sum(d["KafkaBatchInfo"]["batchSize"] for d in failures(dead)) == 2)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_records({TopicPartition(topic, 0): RecordsToDelete(2)})
    finally:
        await admin.close()

    fix_function(tmp_path)
    before = len(events(tmp_path))
    replayed = await cli("dlq", "replay", "--config", str(config))
    assert replayed.status == 1
    assert "cannot be replayed" in replayed.out
    assert f"{topic}-0 offsets 0..1 are no longer retained" in replayed.out
    assert "(the partition now starts at offset 2)" in replayed.out
    assert len(events(tmp_path)) == before
    listed = (await cli("dlq", "list", "--config", str(config), "--json")).json()
    assert all(x["replayed"] is None for x in listed)


async def test_kafka_topic_dead_letters_replay_their_payload_or_go_back_to_the_source(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic_factory: Any
) -> None:
    topic = await kafka_topic_factory()
    dlq_topic = await kafka_topic_factory(prefix="tb-dlq")
    await produce(kafka_bootstrap, topic, [{"n": 0}, {"n": 1}])
    config = tmp_path / "bridge.yaml"
    config.write_text(
        kafka_config(
            tmp_path, kafka_bootstrap, topic, on_failure=f"on_failure: kafka://{dlq_topic}"
        )
    )
    async with RunningBridge(config.read_text()):
        deadline = time.monotonic() + 30
        while len(await read_topic(kafka_bootstrap, dlq_topic)) < 2:
            assert time.monotonic() < deadline, "records not dead-lettered in time"
            await asyncio.sleep(0.2)
    originals = [r for e in events(tmp_path) for rs in e["records"].values() for r in rs]

    listed = await cli("dlq", "list", "--config", str(config), "--json")
    assert listed.status == 0, listed.err
    letters = listed.json()
    assert [x["location"] for x in letters] == [f"{dlq_topic}-0@0", f"{dlq_topic}-0@1"]
    assert [x["replay"]["how"] for x in letters] == ["payload", "payload"]

    back = await cli("dlq", "replay", "--to-source", "--config", str(config))
    assert back.status == 0, back.out + back.err
    put_back = await read_topic(kafka_bootstrap, topic, start=2)
    assert [(m.key, json.loads(m.value), m.headers) for m in put_back] == [
        (b"k0", {"n": 0}, (("h", b"v0"),)),
        (b"k1", {"n": 1}, (("h", b"v1"),)),
    ]
    marks = (await cli("dlq", "list", "--config", str(config), "--json")).json()
    assert [x["replayed"]["how"] for x in marks] == ["to-source", "to-source"]
    again = await cli("dlq", "replay", "--to-source", "--config", str(config))
    assert "replayed 0, skipped 2" in again.out
    assert len(await read_topic(kafka_bootstrap, topic, start=2)) == 2

    fix_function(tmp_path)
    before = len(events(tmp_path))
    forced = await cli("dlq", "replay", "--force", "--config", str(config))
    assert forced.status == 0, forced.out + forced.err
    replayed = [r for e in events(tmp_path)[before:] for rs in e["records"].values() for r in rs]
    assert replayed == originals  # each record's own event, exactly as first delivered
