"""``parallelization_factor`` on the kafka source (an extension: AWS takes it for streams
only): a partition's records spread over sub-partitions by record key, against a real
broker and real functions under awslambdaric. Each test tries to break one promise:
order per key, a failing key holding up only its own sub-partition and never letting the
commit pass it, nothing lost or repeated across a rebalance."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any

from bridge.checkpoints import SqliteCheckpointStore
from bridge.connector import ConnectorContext, FailureContext, Record
from connectors.kafka import KafkaConnector, KafkaSource
from tests.e2e.harness import RunningBridge, wait_for
from tests.support.kafka_run import (
    committed_offsets,
    kafka_config,
    kafka_producer,
    read_calls,
    start_bridge,
    stop_bridge,
)

GROUP = "trigger-bridge-k"  # the default group id of mapping "k"


async def _produce_keyed(servers: str, topic: str, values: list[dict[str, Any]]) -> None:
    """One record per value, keyed by its "k" (None: no key), in the given order."""
    async with kafka_producer(servers) as producer:
        sent = []
        for value in values:
            key = value["k"].encode() if value.get("k") is not None else None
            sent.append(await producer.send(topic, json.dumps(value).encode(), key=key))
        await asyncio.gather(*sent)


def _deliveries(tmp: Path) -> list[tuple[float, float, str, dict[str, Any], int]]:
    """(start, end, Kafka partition, value, offset) of every record delivered, by start."""
    out = []
    for call in sorted(read_calls(tmp), key=lambda c: c["at"]):
        for name, records in call["event"]["records"].items():
            for r in records:
                value = json.loads(base64.b64decode(r["value"]))
                out.append((call["at"], call["end"], name, value, r["offset"]))
    return out


def _first_order_per_key(deliveries: list[Any]) -> dict[Any, list[int]]:
    """Each key's offsets in the order of their first delivery."""
    seen: set[tuple[str, int]] = set()
    order: dict[Any, list[int]] = defaultdict(list)
    for _, _, name, value, offset in deliveries:
        if (name, offset) not in seen:
            seen.add((name, offset))
            order[value.get("k")].append(offset)
    return order


async def test_a_partition_s_keys_run_at_once_in_order_per_key_and_are_committed_to_the_end(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic_factory: Any
) -> None:
    topic = await kafka_topic_factory(partitions=1)
    total = 240
    values = [
        {"n": i, "k": f"key-{i % 8}" if i % 10 else None, "sleep": 0.01} for i in range(total)
    ]
    await _produce_keyed(kafka_bootstrap, topic, values)
    text = kafka_config(
        tmp_path, kafka_bootstrap, [topic], concurrency=4,
        batch_size=5, maximum_batching_window_seconds=0, parallelization_factor=4,
    )  # fmt: skip
    async with RunningBridge(text):
        await wait_for(lambda: len(_deliveries(tmp_path)) >= total, timeout=90)
        await _commits_reach(kafka_bootstrap, topic, {0: total})
    deliveries = _deliveries(tmp_path)
    assert sorted(v["n"] for _, _, _, v, _ in deliveries) == list(range(total))  # exactly once
    assert {name for _, _, name, _, _ in deliveries} == {f"{topic}-0"}  # AWS's key, no "#k"
    for key, offsets in _first_order_per_key(deliveries).items():
        assert offsets == sorted(offsets), f"key {key}: out of order"
    spans = sorted({(at, end) for at, end, *_ in deliveries})
    overlapping = sum(1 for (_, e1), (s2, _) in itertools.pairwise(spans) if s2 < e1)
    assert overlapping > 5, "batches of the one partition never ran at once"


async def _commits_reach(servers: str, topic: str, offsets: dict[int, int]) -> None:
    """Wait (30 s at most) until the group committed ``offsets``."""
    got: dict[int, int] = {}
    for _ in range(150):
        got = await committed_offsets(servers, GROUP, topic, len(offsets))
        if got == offsets:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"committed {got}, not {offsets}")


async def test_a_key_failing_holds_the_commit_at_it_but_not_the_other_keys(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic_factory: Any
) -> None:
    """The record at offset 10 (key "bad") fails while a file exists (Kafka's default:
    retried until it succeeds). Keys in the other sub-partitions are delivered to the end
    meanwhile; the committed offset stays at 10, so a crash now would lose nothing. Once
    the file is gone everything is delivered and committed, each key in order."""
    factor = 4
    topic = await kafka_topic_factory(partitions=1)
    gate = tmp_path / "failing"
    gate.touch()
    keys = [f"key-{i}" for i in range(8)]
    bad_sub = zlib.crc32(b"bad") % factor
    free = [k for k in keys if zlib.crc32(k.encode()) % factor != bad_sub]
    assert free, "every key shares the bad key's sub-partition: pick other keys"
    values = [{"n": i, "k": keys[i % 8]} for i in range(200)]
    values[10] = {"n": 10, "k": "bad", "fail_while": str(gate)}
    await _produce_keyed(kafka_bootstrap, topic, values)
    text = kafka_config(
        tmp_path, kafka_bootstrap, [topic], concurrency=4,
        batch_size=5, maximum_batching_window_seconds=0, parallelization_factor=factor,
    )  # fmt: skip
    expected_free = {v["n"] for v in values if v["k"] in free}
    async with RunningBridge(text):

        def free_delivered() -> bool:
            got = {v["n"] for _, _, _, v, _ in _deliveries(tmp_path) if v["k"] in free}
            return got == expected_free

        await wait_for(free_delivered, timeout=60)
        await asyncio.sleep(1.5)  # commits of what settled meanwhile have landed
        held = await committed_offsets(kafka_bootstrap, GROUP, topic, 1)
        assert held.get(0, 0) <= 10, f"the commit passed the failing record: {held}"
        gate.unlink()
        await wait_for(lambda: len({v["n"] for *_, v, _ in _deliveries(tmp_path)}) == 200, 60)
        await _commits_reach(kafka_bootstrap, topic, {0: 200})
    for key, offsets in _first_order_per_key(_deliveries(tmp_path)).items():
        assert offsets == sorted(offsets), f"key {key}: out of order"


async def test_a_rebalance_between_two_bridges_loses_nothing_and_keeps_each_key_in_order(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic_factory: Any
) -> None:
    """A second bridge joins the group mid-stream: partitions are revoked from the first
    (drained, committed up to what every key settled), then read again by their new
    owner from that commit. Every record arrives; a key's records are never delivered by
    two bridges at once, and each key's first deliveries are in offset order. The second
    half of the records is produced once the second bridge holds partitions, so both
    deliver whatever the machine's speed."""
    partitions, total = 4, 800
    topic = await kafka_topic_factory(partitions=partitions)
    values = [{"n": i, "k": f"key-{i % 16}", "sleep": 0.02} for i in range(total)]
    await _produce_keyed(kafka_bootstrap, topic, values[: total // 2])
    source = {"consumer_group_id": "shared"}

    def config(name: str) -> str:
        return kafka_config(
            tmp_path, kafka_bootstrap, [topic], name=name, concurrency=3, source=source,
            batch_size=4, maximum_batching_window_seconds=0, parallelization_factor=3,
        )  # fmt: skip

    a = start_bridge(tmp_path, config("a"), "a")
    b = None
    try:
        await wait_for(lambda: len(_deliveries(tmp_path)) >= 60, timeout=60)
        b = start_bridge(tmp_path, config("b"), "b")
        log = tmp_path / "b.log"
        await wait_for(
            lambda: log.exists() and "partitions assigned" in log.read_text(), 60, "b assigned"
        )
        await _produce_keyed(kafka_bootstrap, topic, values[total // 2 :])
        await wait_for(
            lambda: {v["n"] for *_, v, _ in _deliveries(tmp_path)} == set(range(total)), 120
        )
    finally:
        codes = [stop_bridge(p) for p in (a, b) if p is not None]
    assert codes == [0, 0]
    calls = read_calls(tmp_path)
    assert {c["who"] for c in calls} == {"a", "b"}
    by_key: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for c in calls:
        for records in c["event"]["records"].values():
            for k in {json.loads(base64.b64decode(r["value"]))["k"] for r in records}:
                by_key[k].append((c["at"], c["end"], c["who"]))
    for key, spans in by_key.items():  # one batch of a key at a time, whoever delivers it
        spans.sort()
        for (_, end, _), (start, _, _) in itertools.pairwise(spans):
            assert end <= start, f"{key}: two batches overlapped"
    first: dict[str, list[int]] = defaultdict(list)
    seen: set[tuple[str, int]] = set()
    for _, _, name, value, offset in _deliveries(tmp_path):
        if (name, offset) not in seen:
            seen.add((name, offset))
            first[f"{name}/{value['k']}"].append(offset)
    for key, offsets in first.items():
        assert offsets == sorted(offsets), f"{key}: out of order"
    committed = await committed_offsets(kafka_bootstrap, "shared", topic, partitions)
    assert sum(committed.values()) == total


def test_events_identifiers_and_failure_records_name_the_kafka_partition(tmp_path: Path) -> None:
    """Records live in sub-partitions ("t-0#2") inside the engine; whatever a function or
    a destination sees names the Kafka partition, as AWS does."""
    store = SqliteCheckpointStore(tmp_path / "c.sqlite3")
    try:
        config = KafkaSource(type="kafka", bootstrap_servers=["h:1"], topics=["t"])
        context = ConnectorContext(
            mapping="k", checkpoints=store.namespace("k"), parallelization_factor=3
        )
        c = KafkaConnector(config, context)

        class Msg:
            topic, partition, key, timestamp = "t", 0, b"k", 1573690684835

        records = [Record(partition="t-0#2", position=o, data=Msg(), encoded=b"{}") for o in (4, 5)]
        assert json.loads(c.encode_event(records))["records"] == {"t-0": [{}, {}]}
        assert c.item_identifier(records[0]) == c.identifier_key({"partition": "t-0", "offset": 4})
        ctx = FailureContext(
            condition="RetryAttemptsExhausted", function_arn="arn:f", request_id="r",
            attempts=3, payload=b"{}",
        )  # fmt: skip
        doc = dict(c.failure_record(records, ctx))
        assert list(doc["KafkaBatchInfo"]["recordsInfo"]) == ["t-0"]
    finally:
        store.close()
