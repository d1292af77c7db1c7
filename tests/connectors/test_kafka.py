"""The kafka source against a real Kafka broker, delivering to a real handler under
awslambdaric (the bridge's ``runtime`` target)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import re
import signal
import socket
import subprocess
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from bridge.checkpoints import SqliteCheckpointStore
from bridge.config import parse_config
from bridge.connector import ConnectorContext, FailureContext, Record
from bridge.errors import CheckpointError, ConfigError, SourceUnavailable
from connectors.kafka import KafkaConnector, KafkaSource
from tests.e2e.harness import RunningBridge, wait_for
from tests.support.kafka_run import (
    committed_offsets,
    kafka_config,
    kafka_producer,
    produce_values,
    read_calls,
    records_of,
    start_bridge,
    stop_bridge,
    values_of,
)

REPO = Path(__file__).resolve().parents[2]
HANDLER = REPO / "tests" / "e2e" / "functions" / "kafka_recorder"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- delivery and shape


async def test_every_record_is_delivered_in_partition_order(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic_factory: Any
) -> None:
    topic = await kafka_topic_factory(partitions=6)
    total = 3000
    await produce_values(kafka_bootstrap, topic, [{"n": i} for i in range(total)])
    async with RunningBridge(kafka_config(tmp_path, kafka_bootstrap, [topic])):
        await wait_for(lambda: len(records_of(read_calls(tmp_path))) >= total, timeout=90)
    calls = read_calls(tmp_path)
    assert sorted(v["n"] for v in values_of(calls)) == list(range(total))  # each exactly once
    by_partition: dict[int, list[int]] = defaultdict(list)
    for call in calls:
        assert len(call["event"]["records"]) == 1  # ordered: one partition per batch
        [(name, records)] = call["event"]["records"].items()
        assert 1 <= len(records) <= 100  # AWS's default batch size
        for r in records:
            assert name == f"{topic}-{r['partition']}"
            by_partition[r["partition"]].append(r["offset"])
    assert sorted(by_partition) == list(range(6))
    for offsets in by_partition.values():
        assert offsets == list(range(len(offsets)))  # offset order, no gap, no repeat
    group = "trigger-bridge-k"
    assert await committed_offsets(kafka_bootstrap, group, topic, 6) == {
        p: len(offsets) for p, offsets in by_partition.items()
    }


async def test_a_backlog_is_read_from_every_partition_at_once(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic_factory: Any
) -> None:
    """A backlog larger than the engine's read-ahead (6,400 records here) must not be read
    one partition after the other: a partition whose records were not read yet has no
    batch in flight, so its share of the throughput is lost."""
    topic = await kafka_topic_factory(partitions=6)
    per_partition = 2000
    for p in range(6):
        await produce_values(
            kafka_bootstrap, topic, [{"p": p, "i": i} for i in range(per_partition)], partition=p
        )
    async with RunningBridge(kafka_config(tmp_path, kafka_bootstrap, [topic], concurrency=6)):
        await wait_for(lambda: len(read_calls(tmp_path)) >= 12, timeout=60)
    first = [next(iter(c["event"]["records"])) for c in read_calls(tmp_path)[:12]]
    assert len(set(first)) == 6, first


async def test_event_has_aws_self_managed_kafka_shape(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic_factory: Any
) -> None:
    topic = await kafka_topic_factory(partitions=1)
    appended = await kafka_topic_factory(
        partitions=1, config={"message.timestamp.type": "LogAppendTime"}
    )
    async with kafka_producer(kafka_bootstrap) as producer:
        await producer.send_and_wait(
            topic,
            b'{"a": 1}',
            key=b"k1",
            headers=[("h1", b"hi"), ("h2", b"\x00\xff"), ("h1", b"")],
            timestamp_ms=1545084650987,
        )
        await producer.send_and_wait(topic, b"no key", key=None)
        await producer.send_and_wait(topic, None, key=b"gone")  # a tombstone
        await producer.send_and_wait(appended, b"plain", key=b"k")
    async with RunningBridge(
        kafka_config(
            tmp_path, kafka_bootstrap, [topic, appended], maximum_batching_window_seconds=1
        )
    ):
        await wait_for(lambda: len(records_of(read_calls(tmp_path))) >= 4)
    events = [c["event"] for c in read_calls(tmp_path)]
    for event in events:
        assert list(event) == ["eventSource", "bootstrapServers", "records"]
        assert event["eventSource"] == "SelfManagedKafka"
        assert event["bootstrapServers"] == kafka_bootstrap
    records = {
        (r["topic"], r["offset"]): r for e in events for rs in e["records"].values() for r in rs
    }
    first = records[(topic, 0)]
    assert first == {
        "topic": topic,
        "partition": 0,
        "offset": 0,
        "timestamp": 1545084650987,
        "timestampType": "CREATE_TIME",
        "key": base64.b64encode(b"k1").decode(),
        "value": base64.b64encode(b'{"a": 1}').decode(),
        "headers": [{"h1": [104, 105]}, {"h2": [0, 255]}, {"h1": []}],
    }
    assert list(first) == [
        "topic",
        "partition",
        "offset",
        "timestamp",
        "timestampType",
        "key",
        "value",
        "headers",
    ]
    no_key = records[(topic, 1)]
    assert "key" not in no_key  # AWS leaves out a null key
    assert no_key["value"] == base64.b64encode(b"no key").decode()
    tombstone = records[(topic, 2)]
    assert tombstone["key"] == base64.b64encode(b"gone").decode()
    assert tombstone["value"] is None  # and sends a null value as null
    log_append = records[(appended, 0)]
    assert log_append["timestampType"] == "LOG_APPEND_TIME"
    assert abs(log_append["timestamp"] / 1000 - time.time()) < 120
    assert {name for e in events for name in e["records"]} == {f"{topic}-0", f"{appended}-0"}


# ---------------------------------------------------------------- errors


async def test_unreachable_broker_is_source_unavailable_naming_the_servers(
    tmp_path: Path,
) -> None:
    servers = f"127.0.0.1:{_free_port()}"
    config = KafkaSource(type="kafka", bootstrap_servers=servers, topics=["t"])
    store = SqliteCheckpointStore(tmp_path / "c.sqlite3")
    connector = KafkaConnector(
        config, ConnectorContext(mapping="k", checkpoints=store.namespace("k"))
    )
    started = time.monotonic()
    try:
        with pytest.raises(SourceUnavailable) as info:
            await connector.open()
    finally:
        await connector.aclose()
        store.close()
    assert time.monotonic() - started < 20
    assert servers in str(info.value)
    assert "Kafka" in str(info.value)


def _unavailable(caplog: pytest.LogCaptureFixture, servers: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "bridge"
        and r.getMessage().startswith("source.unavailable")
        and servers in r.getMessage()
    ]


async def _proxy(port: int, target: str) -> asyncio.Server:
    """A TCP forwarder on ``port`` to ``target`` (the broker): a bootstrap address that
    becomes reachable only when this starts."""
    host, _, tport = target.rpartition(":")

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(tport))
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    return await asyncio.start_server(handle, "127.0.0.1", port)


async def test_bridge_retries_an_unreachable_broker_and_delivers_once_it_answers(
    tmp_path: Path,
    kafka_bootstrap: str,
    kafka_topic_factory: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic = await kafka_topic_factory(partitions=1)
    await produce_values(kafka_bootstrap, topic, [{"n": i} for i in range(5)])
    port = _free_port()
    servers = f"127.0.0.1:{port}"
    caplog.set_level("ERROR", logger="bridge")
    async with RunningBridge(kafka_config(tmp_path, servers, [topic])) as bridge:
        await wait_for(lambda: len(_unavailable(caplog, servers)) >= 1, timeout=30)
        assert bridge.supervisor.running == ["k"]  # still there: it retries, no crash
        assert read_calls(tmp_path) == []
        proxy = await _proxy(port, kafka_bootstrap)  # the "broker" comes up
        try:
            await wait_for(lambda: len(records_of(read_calls(tmp_path))) == 5, timeout=60)
        finally:
            proxy.close()
    [message, *_] = _unavailable(caplog, servers)
    assert f"cannot connect to Kafka at {servers}" in message
    assert "retry_in=" in message


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ("maximum_concurrency: 5", "maximum_concurrency: not supported for Kafka"),
        ("maximum_record_age_seconds: 30", "maximum_record_age_seconds: must be -1 or between 60"),
        ("on_failure: kafka://t1", "on_failure: the on-failure topic cannot be one of the source"),
    ],
)
def test_options_aws_rejects_for_kafka_are_config_errors(options: str, expected: str) -> None:
    text = f"""
functions:
  f: {{type: http, url: "http://127.0.0.1:1"}}
mappings:
  - name: k
    function: f
    source: {{type: kafka, bootstrap_servers: "127.0.0.1:9092", topics: [t1, t2]}}
    {options}
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text, "b.yaml", {})
    assert f"b.yaml:8: mappings[0].{expected}" in str(info.value)


def test_source_options_are_validated() -> None:
    ok = KafkaSource.model_validate(
        {"type": "kafka", "bootstrap_servers": "a:1, b:2", "topics": "t"}
    )
    assert ok.bootstrap_servers == ["a:1", "b:2"] and ok.topics == ["t"]
    assert ok.group_id("m") == "trigger-bridge-m"
    with pytest.raises(ValueError, match="AT_TIMESTAMP needs"):
        KafkaSource.model_validate(
            {
                "type": "kafka",
                "bootstrap_servers": "a:1",
                "topics": ["t"],
                "starting_position": "AT_TIMESTAMP",
            }
        )
    with pytest.raises(ValueError, match="not host:port"):
        KafkaSource.model_validate({"type": "kafka", "bootstrap_servers": "a", "topics": ["t"]})
    with pytest.raises(ValueError, match="extra"):
        KafkaSource.model_validate(
            {"type": "kafka", "bootstrap_servers": "a:1", "topics": ["t"], "nope": 1}
        )


def test_item_identifiers_take_aws_kafka_form(tmp_path: Path) -> None:
    store = SqliteCheckpointStore(tmp_path / "c.sqlite3")
    try:
        config = KafkaSource(type="kafka", bootstrap_servers=["h:1"], topics=["t"])
        c = KafkaConnector(config, ConnectorContext(mapping="k", checkpoints=store.namespace("k")))
        record = Record(partition="t-3", position=7, data=None)
        key = c.item_identifier(record)
        assert c.identifier_key({"partition": "t-3", "offset": 7}) == key
        assert c.identifier_key({"partition": "t-3", "offset": "7"}) == key
        for bad in (
            "7",
            7,
            {"offset": 7},
            {"partition": "t-3"},
            {"partition": "t-3", "offset": True},
            {"partition": "", "offset": 1},
            {"partition": "t-3", "offset": -1},
            None,
        ):
            assert c.identifier_key(bad) is None
    finally:
        store.close()


# ---------------------------------------------------------------- retries, dead letters


async def _read_topic(servers: str, topic: str, count: int, timeout: float = 30) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=servers, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    got: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            got.extend(m for ms in batch.values() for m in ms)
    finally:
        await consumer.stop()
    return got


async def test_poison_record_is_dead_lettered_to_a_kafka_topic_while_others_flow(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic_factory: Any
) -> None:
    topic = await kafka_topic_factory(partitions=3)
    dlq = await kafka_topic_factory(partitions=1)
    await produce_values(
        kafka_bootstrap, topic, [{"n": 0}, {"n": 1, "fail": True}, {"n": 2}], partition=0
    )
    await produce_values(kafka_bootstrap, topic, [{"n": 10 + i} for i in range(50)], partition=1)
    await produce_values(kafka_bootstrap, topic, [{"n": 100 + i} for i in range(50)], partition=2)
    text = kafka_config(
        tmp_path,
        kafka_bootstrap,
        [topic],
        maximum_retry_attempts=2,
        bisect_batch_on_function_error=True,
        on_failure=f"kafka://{dlq}",
    ).replace("initial_seconds: 0.05, max_seconds: 0.2", "initial_seconds: 1, max_seconds: 1")
    async with RunningBridge(text):
        await wait_for(
            lambda: {0, 2} <= {v["n"] for v in values_of(read_calls(tmp_path))}, timeout=60
        )
        [message] = await _read_topic(kafka_bootstrap, dlq, 1)
        await wait_for(lambda: len(values_of(read_calls(tmp_path))) >= 103, timeout=30)
        await asyncio.sleep(1)  # nothing more comes: the poison is not retried again
    calls = read_calls(tmp_path)
    ok = [v["n"] for v in values_of(calls) if not v.get("fail")]
    assert sorted(set(ok)) == [0, 2, *range(10, 60), *range(100, 150)]
    poison_calls = [c for c in calls if any(v.get("fail") for v in values_of([c]))]
    assert len([c for c in poison_calls if len(records_of([c])) == 1]) == 3  # 1 try + 2 retries
    others_done = max(c["end"] for c in calls if any(v["n"] >= 10 for v in values_of([c])))
    assert others_done < max(c["at"] for c in poison_calls)  # partitions 1, 2 did not wait
    # partition 0 stayed in order: 2 only after the poison was given up
    assert [v["n"] for v in values_of(calls) if v["n"] < 10][-1] == 2
    assert message.key == b"1"  # keyed like the original record, as AWS does
    doc = json.loads(message.value)
    assert list(doc) == [
        "requestContext",
        "responseContext",
        "version",
        "timestamp",
        "KafkaBatchInfo",
        "payload",
    ]
    assert doc["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert doc["requestContext"]["approximateInvokeCount"] == 3
    assert doc["responseContext"]["functionError"] == "Unhandled"
    info = doc["KafkaBatchInfo"]
    assert info["batchSize"] == 1 and info["bootstrapServers"] == kafka_bootstrap
    assert info["recordInfo"]["offset"] == "1"
    assert info["recordInfo"]["timestamp"].endswith("Z")
    payload = doc["payload"]
    assert info["payloadSize"] == len(json.dumps(payload, separators=(",", ":")).encode())
    assert payload["eventSource"] == "SelfManagedKafka"
    [(name, [record])] = payload["records"].items()
    assert name == f"{topic}-0" and record["offset"] == 1
    assert json.loads(base64.b64decode(record["value"])) == {"n": 1, "fail": True}
    # dead-lettered counts as settled: everything is committed
    assert await committed_offsets(kafka_bootstrap, "trigger-bridge-k", topic, 3) == {
        0: 3,
        1: 50,
        2: 50,
    }


async def test_a_dead_letter_larger_than_the_topic_takes_is_sent_without_its_payload(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic_factory: Any
) -> None:
    """The destination topic takes messages of 2,000 bytes; the failed record is 5,000.
    Retrying the same message forever would hold the partition forever: as AWS does for
    a destination's size limit, the failure record goes without its payload."""
    topic = await kafka_topic_factory(partitions=1)
    dlq = await kafka_topic_factory(partitions=1, config={"max.message.bytes": "2000"})
    await produce_values(
        kafka_bootstrap, topic, [{"n": 0, "fail": True, "pad": "x" * 5000}, {"n": 1}]
    )
    text = kafka_config(
        tmp_path,
        kafka_bootstrap,
        [topic],
        batch_size=1,
        maximum_retry_attempts=0,
        on_failure=f"kafka://{dlq}",
    )
    async with RunningBridge(text):
        [message] = await _read_topic(kafka_bootstrap, dlq, 1)
        await wait_for(lambda: 1 in [v["n"] for v in values_of(read_calls(tmp_path))], timeout=30)
    doc = json.loads(message.value)
    assert "payload" not in doc and len(message.value) < 2000
    assert doc["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert doc["KafkaBatchInfo"]["recordInfo"]["offset"] == "0"
    assert doc["KafkaBatchInfo"]["payloadSize"] > 5000  # what the payload would have been
    assert await committed_offsets(kafka_bootstrap, "trigger-bridge-k", topic, 1) == {0: 2}


async def test_a_partition_failing_forever_does_not_stop_the_others(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic_factory: Any
) -> None:
    """Partition 0 fails forever (Kafka's default: retried until it succeeds); partition 1
    has a backlog three times the mapping's read-ahead. Partition 0 is paused at its
    share, partition 1 is read and delivered to the end."""
    topic = await kafka_topic_factory(partitions=2)
    await produce_values(
        kafka_bootstrap, topic, [{"n": i, "fail": True} for i in range(3000)], partition=0
    )
    await produce_values(kafka_bootstrap, topic, [{"n": i} for i in range(3000)], partition=1)
    text = kafka_config(tmp_path, kafka_bootstrap, [topic], batch_size=10)  # read-ahead 1,000
    async with RunningBridge(text):
        await wait_for(
            lambda: len([v for v in values_of(read_calls(tmp_path)) if not v.get("fail")]) >= 3000,
            timeout=90,
        )
        committed = {}
        for _ in range(100):
            committed = await committed_offsets(kafka_bootstrap, "trigger-bridge-k", topic, 2)
            if committed.get(1) == 3000:
                break
            await asyncio.sleep(0.1)
    assert committed == {1: 3000}  # and nothing of partition 0
    ok = [v["n"] for v in values_of(read_calls(tmp_path)) if not v.get("fail")]
    assert sorted(set(ok)) == list(range(3000))


async def test_a_function_failing_on_every_partition_does_not_make_the_member_leave(
    tmp_path: Path,
    kafka_bootstrap: str,
    kafka_topic_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every partition holds its share and nothing moves for longer than
    ``max_poll_interval_ms``: the source keeps polling (everything paused), so the group
    keeps the member; once the function recovers, everything is delivered."""
    import connectors.kafka.connector as kafka_connector

    monkeypatch.setattr(kafka_connector, "MAX_POLL_INTERVAL_MS", 6000)
    monkeypatch.setattr(kafka_connector, "KEEPALIVE_AFTER", 0.5)
    caplog.set_level("INFO", logger="connectors.kafka.connector")
    topic = await kafka_topic_factory(partitions=2)
    flag = tmp_path / "failing"
    flag.touch()
    await produce_values(
        kafka_bootstrap, topic, [{"n": i, "fail_while": str(flag)} for i in range(3000)]
    )
    async with RunningBridge(kafka_config(tmp_path, kafka_bootstrap, [topic], batch_size=10)):
        await wait_for(lambda: len(read_calls(tmp_path)) >= 2, timeout=30)
        await asyncio.sleep(10)  # well past max_poll_interval_ms
        assert not [r for r in caplog.records if "partitions revoked" in r.getMessage()]
        flag.unlink()
        await wait_for(
            lambda: {v["n"] for v in values_of(read_calls(tmp_path))} >= set(range(3000))
        )
        committed: dict[int, int] = {}
        for _ in range(100):
            committed = await committed_offsets(kafka_bootstrap, "trigger-bridge-k", topic, 2)
            if sum(committed.values()) == 3000:
                break
            await asyncio.sleep(0.1)
    assert sum(committed.values()) == 3000


def test_failure_record_for_other_destinations_has_aws_sqs_sns_shape(tmp_path: Path) -> None:
    store = SqliteCheckpointStore(tmp_path / "c.sqlite3")
    try:
        config = KafkaSource(type="kafka", bootstrap_servers=["h:1", "h:2"], topics=["t"])
        c = KafkaConnector(config, ConnectorContext(mapping="k", checkpoints=store.namespace("k")))

        class Msg:
            topic, partition, key = "t", 0, b"k"

            def __init__(self, offset: int, ts: int) -> None:
                self.offset, self.timestamp = offset, ts

        records = [
            Record(partition="t-0", position=o, data=Msg(o, 1573690684835 + o)) for o in (4, 5)
        ]
        ctx = FailureContext(
            condition="MaximumPayloadSizeExceeded",
            function_arn="arn:f",
            request_id="r",
            attempts=0,
            payload=b"x" * 10,
        )
        doc = dict(c.failure_record(records, ctx))
        assert json.loads(json.dumps(doc))["KafkaBatchInfo"] == {
            "batchSize": 2,
            "bootstrapServers": "h:1,h:2",
            "payloadSize": 10,
            "recordsInfo": {
                "t-0": {
                    "firstRecordOffset": "4",
                    "lastRecordOffset": "5",
                    "firstRecordTimestamp": "2019-11-14T00:18:04.839Z",
                    "lastRecordTimestamp": "2019-11-14T00:18:04.840Z",
                }
            },
        }
        assert doc["responseContext"] is None  # AWS: null for MaximumPayloadSizeExceeded
        assert doc["requestContext"]["condition"] == "MaximumPayloadSizeExceeded"
    finally:
        store.close()


async def test_partial_batch_response_retries_from_the_first_reported_record(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic_factory: Any
) -> None:
    topic = await kafka_topic_factory(partitions=1)
    values = [{"n": i} for i in range(5)]
    values[2]["report_once"] = True
    await produce_values(kafka_bootstrap, topic, values)
    text = kafka_config(
        tmp_path,
        kafka_bootstrap,
        [topic],
        batch_size=5,
        maximum_batching_window_seconds=2,
        function_response_types=["ReportBatchItemFailures"],
    )
    async with RunningBridge(text):
        await wait_for(lambda: len(read_calls(tmp_path)) >= 2, timeout=30)
        await asyncio.sleep(1)
    calls = read_calls(tmp_path)
    assert [[r["offset"] for r in records_of([c])] for c in calls] == [[0, 1, 2, 3, 4], [2, 3, 4]]
    assert await committed_offsets(kafka_bootstrap, "trigger-bridge-k", topic, 1) == {0: 5}


async def test_filter_matches_the_json_value_and_settles_the_rest(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic_factory: Any
) -> None:
    topic = await kafka_topic_factory(partitions=1)
    await produce_values(kafka_bootstrap, topic, [{"n": i, "keep": i % 2 == 0} for i in range(6)])
    async with kafka_producer(kafka_bootstrap) as producer:
        await producer.send_and_wait(topic, b"plain text, not JSON")
        await producer.send_and_wait(topic, b'{"n": 99, "keep": true}')
    pattern = {"value": {"keep": [True]}}
    text = kafka_config(
        tmp_path, kafka_bootstrap, [topic], filter_criteria={"filters": [{"pattern": pattern}]}
    )
    async with RunningBridge(text):
        await wait_for(lambda: len(records_of(read_calls(tmp_path))) >= 4, timeout=30)
        for _ in range(100):  # filtered records are settled, so committed too
            if await committed_offsets(kafka_bootstrap, "trigger-bridge-k", topic, 1) == {0: 8}:
                break
            await asyncio.sleep(0.1)
    assert sorted(v["n"] for v in values_of(read_calls(tmp_path))) == [0, 2, 4, 99]
    assert await committed_offsets(kafka_bootstrap, "trigger-bridge-k", topic, 1) == {0: 8}


async def test_a_value_that_is_not_json_never_matches_a_pattern_on_its_contents(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic_factory: Any
) -> None:
    """Lambda decodes Kafka values as UTF-8 before filtering: a plain-string value cannot
    satisfy a pattern inside it (not even ``exists: false``), a value that is not UTF-8 no
    pattern on ``value`` at all (its base64 text is not what is matched), while plain
    string patterns match plain-string values."""
    topic = await kafka_topic_factory(partitions=1)
    async with kafka_producer(kafka_bootstrap) as producer:
        for value in (b'{"n": 1}', b"plain text", b"\xff\xfe\xfd", b'{"n": 2, "kind": "x"}'):
            await producer.send_and_wait(topic, value)
        await producer.send_and_wait(topic, b"wanted")
    filters = [
        {"pattern": {"value": {"kind": [{"exists": False}]}}},  # JSON without "kind"
        {"pattern": {"value": [{"prefix": "want"}]}},  # plain strings starting so
        {"pattern": {"value": [{"anything-but": ["error"]}]}},  # any string but "error"
    ]
    text = kafka_config(tmp_path, kafka_bootstrap, [topic], filter_criteria={"filters": filters})
    async with RunningBridge(text):
        for _ in range(100):  # filtered records are settled, so committed too
            if await committed_offsets(kafka_bootstrap, "trigger-bridge-k", topic, 1) == {0: 5}:
                break
            await asyncio.sleep(0.1)
    delivered = [base64.b64decode(r["value"]) for r in records_of(read_calls(tmp_path))]
    assert delivered == [b'{"n": 1}', b"plain text", b"wanted"]
    assert await committed_offsets(kafka_bootstrap, "trigger-bridge-k", topic, 1) == {0: 5}


async def test_only_records_older_than_the_maximum_age_are_dead_lettered(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic_factory: Any
) -> None:
    """Three records written an hour ago (their Kafka timestamps), two just now, in one
    batch; maximum_record_age_seconds 60: the old three are dead-lettered, the two are
    delivered."""
    topic = await kafka_topic_factory(partitions=1)
    an_hour_ago = int((time.time() - 3600) * 1000)
    async with kafka_producer(kafka_bootstrap) as producer:
        for n in range(5):
            stamp = an_hour_ago if n < 3 else None
            value = json.dumps({"n": n}).encode()
            await producer.send_and_wait(topic, value, timestamp_ms=stamp)
    failures = tmp_path / "failures.jsonl"
    text = kafka_config(
        tmp_path,
        kafka_bootstrap,
        [topic],
        maximum_record_age_seconds=60,
        on_failure=f"file://{failures}",
    )
    async with RunningBridge(text):
        await wait_for(lambda: len(values_of(read_calls(tmp_path))) >= 2, timeout=30)
        await wait_for(lambda: failures.exists() and failures.read_text().strip() != "")
    assert [v["n"] for v in values_of(read_calls(tmp_path))] == [3, 4]
    [doc] = [json.loads(line) for line in failures.read_text().splitlines()]
    assert doc["requestContext"]["condition"] == "RecordAgeExceeded"
    info = doc["KafkaBatchInfo"]
    assert info["batchSize"] == 3
    assert info["recordsInfo"][f"{topic}-0"]["lastRecordOffset"] == "2"


async def test_infinite_retries_with_an_on_failure_destination_stop_after_ten(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic_factory: Any
) -> None:
    """AWS: "When you configure both infinite retries and an on-failure destination,
    Lambda automatically applies a maximum of 10 retry attempts.\""""
    topic = await kafka_topic_factory(partitions=1)
    await produce_values(kafka_bootstrap, topic, [{"n": 0, "fail": True}, {"n": 1}])
    failures = tmp_path / "failures.jsonl"
    text = kafka_config(
        tmp_path, kafka_bootstrap, [topic], batch_size=1, on_failure=f"file://{failures}"
    )
    async with RunningBridge(text):
        await wait_for(lambda: 1 in [v["n"] for v in values_of(read_calls(tmp_path))], timeout=60)
    [doc] = [json.loads(line) for line in failures.read_text().splitlines()]
    assert doc["requestContext"]["approximateInvokeCount"] == 11  # 1 + 10 retries
    assert [v["n"] for v in values_of(read_calls(tmp_path))].count(0) == 11


async def test_latest_starts_at_the_end_and_trim_horizon_at_the_beginning(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic_factory: Any
) -> None:
    topic = await kafka_topic_factory(partitions=2)
    await produce_values(kafka_bootstrap, topic, [{"n": i, "old": True} for i in range(10)])
    latest = kafka_config(
        tmp_path,
        kafka_bootstrap,
        [topic],
        source={"starting_position": "LATEST", "consumer_group_id": "g-latest"},
    )
    async with RunningBridge(latest):
        # the position LATEST found is committed as soon as the group has the partitions
        async def positioned() -> bool:
            got = await committed_offsets(kafka_bootstrap, "g-latest", topic, 2)
            return sum(got.values()) == 10 and len(got) == 2

        for _ in range(300):
            if await positioned():
                break
            await asyncio.sleep(0.1)
        assert await positioned()
        await produce_values(kafka_bootstrap, topic, [{"n": 100 + i} for i in range(4)])
        await wait_for(lambda: len(records_of(read_calls(tmp_path))) >= 4, timeout=30)
        await asyncio.sleep(1)
    assert sorted(v["n"] for v in values_of(read_calls(tmp_path))) == [100, 101, 102, 103]
    out = "horizon.jsonl"
    horizon = kafka_config(
        tmp_path,
        kafka_bootstrap,
        [topic],
        out=out,
        name="h",
        source={"consumer_group_id": "g-horizon"},
    )
    async with RunningBridge(horizon):
        await wait_for(lambda: len(records_of(read_calls(tmp_path, out))) >= 14, timeout=30)
    assert sorted(v["n"] for v in values_of(read_calls(tmp_path, out))) == [
        *range(10),
        100,
        101,
        102,
        103,
    ]


async def test_at_timestamp_starts_at_the_first_record_at_or_after_it(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic_factory: Any
) -> None:
    topic = await kafka_topic_factory(partitions=1)
    base = 1_700_000_000_000
    async with kafka_producer(kafka_bootstrap) as producer:
        for i in range(6):
            await producer.send_and_wait(
                topic, json.dumps({"n": i}).encode(), timestamp_ms=base + i * 1000
            )
    source = {"starting_position": "AT_TIMESTAMP", "starting_position_timestamp": base / 1000 + 3}
    async with RunningBridge(kafka_config(tmp_path, kafka_bootstrap, [topic], source=source)):
        await wait_for(lambda: len(records_of(read_calls(tmp_path))) >= 3, timeout=30)
        await asyncio.sleep(1)
    assert [v["n"] for v in values_of(read_calls(tmp_path))] == [3, 4, 5]


# ---------------------------------------------------------------- crashes and groups


async def test_kill_mid_stream_loses_nothing_and_repeats_only_what_was_in_flight(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic_factory: Any
) -> None:
    partitions, batch, total = 6, 10, 600
    topic = await kafka_topic_factory(partitions=partitions)
    await produce_values(kafka_bootstrap, topic, [{"n": i, "sleep": 0.01} for i in range(total)])
    config = kafka_config(tmp_path, kafka_bootstrap, [topic], batch_size=batch, concurrency=3)
    first = start_bridge(tmp_path, config, "first")
    try:
        await wait_for(lambda: len(records_of(read_calls(tmp_path))) >= 150, timeout=60)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    before = len(records_of(read_calls(tmp_path)))
    assert before < total  # killed mid-stream
    second = start_bridge(tmp_path, config, "second")
    try:
        await wait_for(
            lambda: {v["n"] for v in values_of(read_calls(tmp_path))} == set(range(total)),
            timeout=90,
        )
        await asyncio.sleep(1)
    finally:
        assert stop_bridge(second) == 0
    seen = Counter(v["n"] for v in values_of(read_calls(tmp_path)))
    duplicates = sum(n - 1 for n in seen.values())
    # at most two batches per partition: one in flight, one delivered and committing
    assert duplicates <= 2 * partitions * batch
    committed = await committed_offsets(kafka_bootstrap, "trigger-bridge-k", topic, partitions)
    assert sum(committed.values()) == total  # and the restart committed everything


async def test_two_bridges_in_one_group_share_partitions_without_overlap_or_loss(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic_factory: Any
) -> None:
    partitions, total = 6, 600
    topic = await kafka_topic_factory(partitions=partitions)
    await produce_values(kafka_bootstrap, topic, [{"n": i, "sleep": 0.02} for i in range(total)])
    source = {"consumer_group_id": "shared"}
    a = start_bridge(
        tmp_path,
        kafka_config(tmp_path, kafka_bootstrap, [topic], name="a", batch_size=5, source=source),
        "a",
    )
    b: subprocess.Popen[bytes] | None = None
    try:
        await wait_for(lambda: len(records_of(read_calls(tmp_path))) >= 60, timeout=60)
        b = start_bridge(
            tmp_path,
            kafka_config(tmp_path, kafka_bootstrap, [topic], name="b", batch_size=5, source=source),
            "b",
        )
        await wait_for(
            lambda: {v["n"] for v in values_of(read_calls(tmp_path))} == set(range(total)),
            timeout=120,
        )
    finally:
        codes = [stop_bridge(p) for p in (a, b) if p is not None]
    assert codes == [0, 0]
    calls = read_calls(tmp_path)
    assert {c["who"] for c in calls} == {"a", "b"}  # the second process got partitions
    spans: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for c in calls:
        [name] = c["event"]["records"]
        spans[name].append((c["at"], c["end"], c["who"]))
    for name, items in spans.items():  # one owner at a time: no overlapping deliveries
        items.sort()
        for (_, end, _), (start, _, _) in itertools.pairwise(items):
            assert end <= start, f"{name}: two batches of one partition overlapped"
    assert (
        sum((await committed_offsets(kafka_bootstrap, "shared", topic, partitions)).values())
        == total
    )


async def test_a_revoked_partition_is_never_invoked_again_by_its_old_owner(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic_factory: Any
) -> None:
    """The function fails forever, so every batch retries forever. When a second member
    joins, the first one's batches of the partitions it loses do not finish: after the
    shutdown timeout they are cancelled, and from the moment the new owner invokes a
    partition the old one never invokes it again."""
    topic = await kafka_topic_factory(partitions=2)
    await produce_values(kafka_bootstrap, topic, [{"n": i, "fail": True} for i in range(40)])
    source = {"consumer_group_id": f"revoke-{topic}"}  # no members left over from other runs

    def config(name: str) -> str:
        text = kafka_config(
            tmp_path, kafka_bootstrap, [topic], name=name, batch_size=5, source=source
        )
        return text.replace("shutdown_timeout_seconds: 10", "shutdown_timeout_seconds: 2")

    a = start_bridge(tmp_path, config("a"), "a")
    b: subprocess.Popen[bytes] | None = None
    try:
        await wait_for(lambda: len({c["who"] for c in read_calls(tmp_path)}) == 1, timeout=60)
        await wait_for(
            lambda: len({n for c in read_calls(tmp_path) for n in c["event"]["records"]}) == 2
        )
        b = start_bridge(tmp_path, config("b"), "b")
        await wait_for(lambda: "b" in {c["who"] for c in read_calls(tmp_path)}, timeout=60)
        await asyncio.sleep(3)  # both go on retrying their own partitions
    finally:
        codes = [stop_bridge(p) for p in (a, b) if p is not None]
    assert codes == [0, 0]
    calls = read_calls(tmp_path)
    [(moved, _)] = {(n, 0) for c in calls if c["who"] == "b" for n in c["event"]["records"]}
    taken_over = min(c["at"] for c in calls if c["who"] == "b")
    by_a = [c["at"] for c in calls if c["who"] == "a" and moved in c["event"]["records"]]
    assert by_a and max(by_a) < taken_over  # a had it, and stopped before b began
    kept = [
        n for c in calls if c["who"] == "a" and c["at"] > taken_over for n in c["event"]["records"]
    ]
    assert kept and moved not in kept  # a went on with the partition it kept


async def test_a_spare_member_stays_in_its_group_and_takes_over(
    tmp_path: Path,
    kafka_bootstrap: str,
    kafka_topic_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two members, one partition: the spare one has nothing assigned for longer than
    ``max_poll_interval_ms``. It keeps polling, so it is still a member when the owner
    stops, and takes the partition over."""
    import connectors.kafka.connector as kafka_connector

    monkeypatch.setattr(kafka_connector, "MAX_POLL_INTERVAL_MS", 6000)
    topic = await kafka_topic_factory(partitions=1)
    source = {"consumer_group_id": f"spare-{topic}"}
    await produce_values(kafka_bootstrap, topic, [{"n": i} for i in range(5)])
    bridges = {
        name: RunningBridge(
            kafka_config(tmp_path, kafka_bootstrap, [topic], name=name, batch_size=5, source=source)
        )
        for name in ("a", "b")
    }
    async with bridges["a"], bridges["b"]:
        await wait_for(lambda: len(values_of(read_calls(tmp_path))) >= 5, timeout=60)
        await asyncio.sleep(9)  # the spare member polls with nothing assigned

        def owns(name: str) -> bool:
            runner = bridges[name].supervisor._runners["k"]
            pipeline = runner._pipeline
            return pipeline is not None and bool(pipeline.connector._consumer.assignment())

        await wait_for(lambda: owns("a") or owns("b"))
        owner = "a" if owns("a") else "b"
        await bridges[owner].supervisor.aclose()
        await produce_values(kafka_bootstrap, topic, [{"n": i} for i in range(5, 10)])
        await wait_for(lambda: {v["n"] for v in values_of(read_calls(tmp_path))} >= set(range(10)))


# ---------------------------------------------------------------- static membership


def _source_at(state: Path, mapping: str, **options: Any) -> tuple[KafkaConnector, Any]:
    state.mkdir(parents=True, exist_ok=True)
    config = KafkaSource.model_validate(
        {"type": "kafka", "bootstrap_servers": "h:1", "topics": ["t"], **options}
    )
    store = SqliteCheckpointStore(state / "checkpoints.sqlite3")
    context = ConnectorContext(mapping=mapping, checkpoints=store.namespace(mapping))
    return KafkaConnector(config, context), store


async def test_the_member_id_is_stable_per_state_dir_and_mapping(tmp_path: Path) -> None:
    ids = []
    for state, mapping, options in [
        ("a", "m", {}),
        ("a", "m", {}),  # restarted: the same member
        ("b", "m", {}),  # another bridge (another state_dir)
        ("a", "n", {}),  # another mapping
        ("a", "m", {"topics": ["t", "u"]}),  # other topics: a new member
        ("a", "m", {"consumer_group_id": "g"}),  # another group
    ]:
        connector, store = _source_at(tmp_path / state, mapping, **options)
        try:
            ids.append(await connector.instance_id())
        finally:
            store.close()
    assert all(i and re.fullmatch(r"trigger-bridge-[0-9a-f]{16}", i) for i in ids), ids
    assert ids[0] == ids[1]
    assert len({ids[0], *ids[2:]}) == 5
    for setting, expected in [(False, None), ("o-1", "o-1")]:
        connector, store = _source_at(tmp_path / "a", "m", group_instance_id=setting)
        try:
            assert await connector.instance_id() == expected
        finally:
            store.close()
    with pytest.raises(ValueError, match="letters, digits"):
        _source_at(tmp_path / "c", "m", group_instance_id="a b")


async def test_a_bridge_restarted_after_kill_9_delivers_long_before_the_session_ends(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic_factory: Any
) -> None:
    """The killed bridge's member stays in the group until its session (10 s, the
    default) expires, and a new member would wait for that before the group rebalances.
    The restarted bridge is the same static member: it is given its partitions at once."""
    session = 10.0
    topic = await kafka_topic_factory(partitions=3)
    config = kafka_config(tmp_path, kafka_bootstrap, [topic], source={"consumer_group_id": topic})
    first = start_bridge(tmp_path, config, "first")
    second: subprocess.Popen[bytes] | None = None
    try:
        await produce_values(kafka_bootstrap, topic, [{"n": i} for i in range(3)])
        await wait_for(lambda: len(values_of(read_calls(tmp_path))) >= 3, timeout=60)
        await asyncio.sleep(1)  # its commits are in
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        seen = len(values_of(read_calls(tmp_path)))
        restarted = time.monotonic()
        second = start_bridge(tmp_path, config, "second")
        await produce_values(kafka_bootstrap, topic, [{"n": i} for i in range(3, 6)])
        await wait_for(lambda: len(values_of(read_calls(tmp_path))) > seen, timeout=60)
        first_delivery = time.monotonic() - restarted
        await wait_for(
            lambda: {v["n"] for v in values_of(read_calls(tmp_path))} >= set(range(6)), timeout=60
        )
    finally:
        if first.poll() is None:
            first.kill()
        if second is not None:
            assert stop_bridge(second) == 0
    # the process and its function runtimes start, the member joins: a second or two
    assert first_delivery < session / 2, first_delivery


async def test_a_stopped_static_member_hands_its_partitions_over_at_once(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic_factory: Any
) -> None:
    """A static member that stops leaves the group, as a dynamic one does: the other
    member takes its partition over without waiting out its session."""
    session = 10.0
    topic = await kafka_topic_factory(partitions=1)
    source = {"consumer_group_id": f"handover-{topic}"}
    bridges = {
        name: RunningBridge(
            kafka_config(tmp_path, kafka_bootstrap, [topic], name=name, source=source)
        )
        for name in ("a", "b")
    }

    def owns(name: str) -> bool:
        pipeline = bridges[name].supervisor._runners["k"]._pipeline
        consumer = pipeline.connector._consumer if pipeline is not None else None
        return consumer is not None and bool(consumer.assignment())

    async with bridges["a"], bridges["b"]:
        await wait_for(lambda: owns("a") or owns("b"), timeout=60)
        owner, other = ("a", "b") if owns("a") else ("b", "a")
        await bridges[owner].supervisor.aclose()
        stopped = time.monotonic()
        await produce_values(kafka_bootstrap, topic, [{"n": 1}])
        await wait_for(lambda: bool(values_of(read_calls(tmp_path))), timeout=60)
        taken_over = time.monotonic() - stopped
    assert {c["who"] for c in read_calls(tmp_path)} == {other}
    assert taken_over < session / 2, taken_over


def test_encode_event_groups_encoded_records_by_partition_without_reencoding(
    tmp_path: Path,
) -> None:
    store = SqliteCheckpointStore(tmp_path / "c.sqlite3")
    try:
        config = KafkaSource(type="kafka", bootstrap_servers=["h:1", "h:2"], topics=["t"])
        c = KafkaConnector(config, ConnectorContext(mapping="k", checkpoints=store.namespace("k")))
        records = [
            Record(partition=p, position=i, data=None, encoded=e)
            for i, (p, e) in enumerate(
                [("t-1", b'{"a":1}'), ("t-0", b'{"b":2}'), ("t-1", b'{"c": 3}')]
            )
        ]
        payload = c.encode_event(records)
        assert payload == (
            b'{"eventSource":"SelfManagedKafka","bootstrapServers":"h:1,h:2",'
            b'"records":{"t-1":[{"a":1},{"c": 3}],"t-0":[{"b":2}]}}'
        )  # the record bytes are used as they are (note the space kept in {"c": 3})
    finally:
        store.close()


@pytest.mark.parametrize(
    ("topic", "key", "value", "headers", "timestamp_type"),
    [
        ("orders", None, b'{"a":1}', (), 0),
        ("orders", b"k", None, (), 1),  # a tombstone, log-append time
        ('we"ird\\topic-ü', b"\x00\xff", b"", (("h", b"hi"), ("h", None), ("ü", b"")), 0),
        ("t", b"", b"x" * 1000, (("a", b"\x00"),), 7),  # unknown timestamp type
    ],
)
def test_direct_record_encoding_is_byte_identical_to_the_dict_path(
    topic: str,
    key: bytes | None,
    value: bytes | None,
    headers: tuple[tuple[str, bytes | None], ...],
    timestamp_type: int,
) -> None:
    from aiokafka.structs import ConsumerRecord

    from bridge.events import dumps
    from connectors.kafka.normalize import RecordEncoder, kafka_record

    message = ConsumerRecord(
        topic=topic, partition=5, offset=2**40, timestamp=1545084650987,
        timestamp_type=timestamp_type, key=key, value=value, checksum=None,
        serialized_key_size=-1, serialized_value_size=-1, headers=headers,
    )  # fmt: skip
    encoder = RecordEncoder()
    assert encoder(message) == dumps(kafka_record(message))
    assert encoder(message) == encoder(message)  # the topic's cached encoding too


def test_direct_record_encoding_of_a_malformed_record_is_a_normalize_error() -> None:
    from aiokafka.structs import ConsumerRecord

    from bridge.errors import NormalizeError
    from connectors.kafka.normalize import RecordEncoder

    message = ConsumerRecord(
        topic="t", partition=0, offset=1, timestamp=0, timestamp_type=0, key="not bytes",
        value=b"v", checksum=None, serialized_key_size=-1, serialized_value_size=1,
        headers=(),
    )  # fmt: skip
    with pytest.raises(NormalizeError, match="malformed Kafka record"):
        RecordEncoder()(message)


def test_public_surface() -> None:
    import connectors.kafka

    assert connectors.kafka.__all__ == ["KafkaConnector", "KafkaSource"]
    assert KafkaConnector.type == "kafka" and KafkaConnector.ordered is True
    assert KafkaConnector.redelivery == "bridge"
    assert KafkaConnector.defaults["batch_size"] == 100
    assert KafkaConnector.defaults["maximum_batching_window_seconds"] == 0.5


class _GatedConsumer:
    """Stands in for AIOKafkaConsumer in commit(): records each OffsetCommit, waits for
    ``gate`` first, raises what ``errors`` holds."""

    def __init__(self, owned: set[TopicPartition]) -> None:
        self.owned = owned
        self.requests: list[dict[TopicPartition, int]] = []
        self.gate = asyncio.Event()
        self.errors: list[BaseException] = []

    def assignment(self) -> set[TopicPartition]:
        return self.owned

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        await self.gate.wait()
        self.requests.append(dict(offsets))
        if self.errors:
            raise self.errors.pop(0)


def _connector_with(consumer: _GatedConsumer, tmp_path: Path) -> tuple[KafkaConnector, Any]:
    store = SqliteCheckpointStore(tmp_path / "c.sqlite3")
    config = KafkaSource(type="kafka", bootstrap_servers=["h:1"], topics=["t"])
    c = KafkaConnector(config, ConnectorContext(mapping="k", checkpoints=store.namespace("k")))
    c._consumer = consumer  # type: ignore[assignment]
    return c, store


def _at(partition: int, offset: int) -> Record:
    from aiokafka.structs import ConsumerRecord

    m = ConsumerRecord(
        topic="t", partition=partition, offset=offset, timestamp=0, timestamp_type=0,
        key=None, value=b"", checksum=None, serialized_key_size=-1,
        serialized_value_size=0, headers=(),
    )  # fmt: skip
    return Record(partition=f"t-{partition}", position=offset, data=m)


async def test_commits_arriving_during_a_commit_share_the_next_request(tmp_path: Path) -> None:
    tps = {TopicPartition("t", p) for p in range(3)}
    consumer = _GatedConsumer(tps)
    c, store = _connector_with(consumer, tmp_path)
    try:
        first = asyncio.create_task(c.commit([_at(0, 4)]))
        await asyncio.sleep(0)  # its request is on its way, waiting at the gate
        later = [
            asyncio.create_task(c.commit([_at(1, 7)])),
            asyncio.create_task(c.commit([_at(2, 1)])),
            asyncio.create_task(c.commit([_at(1, 9)])),
        ]
        await asyncio.sleep(0)
        consumer.gate.set()
        await asyncio.wait_for(asyncio.gather(first, *later), 5)
        assert consumer.requests == [
            {TopicPartition("t", 0): 5},
            {TopicPartition("t", 1): 10, TopicPartition("t", 2): 2},  # one request, newest
        ]
    finally:
        store.close()


async def test_a_failed_commit_request_fails_every_commit_in_it(tmp_path: Path) -> None:
    from aiokafka.errors import KafkaConnectionError

    consumer = _GatedConsumer({TopicPartition("t", 0), TopicPartition("t", 1)})
    consumer.errors = [KafkaConnectionError("broker gone"), RuntimeError("a bug")]
    consumer.gate.set()
    c, store = _connector_with(consumer, tmp_path)
    try:
        with pytest.raises(CheckpointError, match="committing t-0 failed"):
            await asyncio.wait_for(c.commit([_at(0, 1)]), 5)
        with pytest.raises(RuntimeError, match="a bug"):  # reaches the engine, no hang
            await asyncio.wait_for(c.commit([_at(1, 1)]), 5)
        await asyncio.wait_for(c.commit([_at(1, 1)]), 5)  # and the next one goes through
        assert consumer.requests[-1] == {TopicPartition("t", 1): 2}
    finally:
        store.close()


async def test_a_commit_the_group_refused_is_retried_not_taken_for_done(tmp_path: Path) -> None:
    """During a rebalance the group answers an OffsetCommit with CommitFailedError: the
    offset is not stored, so the commit must fail (the engine retries it)."""
    from aiokafka.errors import CommitFailedError

    consumer = _GatedConsumer({TopicPartition("t", 0)})
    consumer.errors = [CommitFailedError("the group rebalanced")]
    consumer.gate.set()
    c, store = _connector_with(consumer, tmp_path)
    try:
        with pytest.raises(CheckpointError, match="refused the commit of t-0"):
            await asyncio.wait_for(c.commit([_at(0, 4)]), 5)
        await asyncio.wait_for(c.commit([_at(0, 4)]), 5)  # the retry goes through
        assert consumer.requests == [{TopicPartition("t", 0): 5}] * 2
    finally:
        store.close()


# ---------------------------------------------------------------- idle pace


async def test_an_idle_consumer_asks_less_often_and_a_new_record_still_comes_at_once(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic_factory: Any
) -> None:
    """A second without records puts the consumer at its idle pace: the broker holds each
    Fetch up to the heartbeat interval (3 s) instead of 500 ms. A broker answers a held
    Fetch as soon as a record arrives, so one produced then comes at once all the same,
    and puts the consumer back to its busy pace."""
    topic = await kafka_topic_factory(partitions=2)
    await produce_values(kafka_bootstrap, topic, [{"n": 0}])
    store = SqliteCheckpointStore(tmp_path / "c.sqlite3")
    config = KafkaSource(
        type="kafka",
        bootstrap_servers=[kafka_bootstrap],
        topics=[topic],
        consumer_group_id=f"idle-{topic}",
    )
    c = KafkaConnector(config, ConnectorContext(mapping="k", checkpoints=store.namespace("k")))
    reader = c.read()
    fetches: list[float] = []
    try:
        await c.open()
        assert c._consumer is not None and c._pace is not None
        client = c._consumer._client
        send = client.send

        def counting(node_id: int, request: Any, **kw: Any) -> Any:
            if type(request).__name__.startswith("FetchRequest"):
                fetches.append(time.monotonic())
            return send(node_id, request, **kw)

        client.send = counting
        [first] = await asyncio.wait_for(reader.__anext__(), 30)
        assert json.loads(first.data.value) == {"n": 0}
        following = asyncio.ensure_future(reader.__anext__())
        await wait_for(lambda: c._pace is not None and c._pace.idle, timeout=5)
        await asyncio.sleep(1)  # the last busy Fetch ends
        idle_since = time.monotonic()
        await asyncio.sleep(6.5)
        assert 1 <= len([t for t in fetches if t > idle_since]) <= 3  # one every 3 s, not 13
        async with kafka_producer(kafka_bootstrap) as producer:
            sent = time.monotonic()
            await producer.send_and_wait(topic, b'{"n": 1}', partition=1)
            [record] = await asyncio.wait_for(following, 5)
            latency = time.monotonic() - sent
        assert json.loads(record.data.value) == {"n": 1}
        assert latency < 1.0, latency  # not the 3 s a Fetch may be held
        assert not c._pace.idle
    finally:
        await reader.aclose()  # type: ignore[attr-defined]
        await c.aclose()
        store.close()


async def test_an_idle_member_reads_a_partition_it_is_given_at_once(
    tmp_path: Path,
    kafka_bootstrap: str,
    kafka_topic_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An idle member's Fetch is held by the broker for seconds (8 here, so that it
    outlasts the rebalance); aiokafka gives it up when the group rebalances, the broker
    does not. The partitions the member is given must not wait for it: their first
    requests do not queue behind it."""
    import connectors.kafka.connector as kafka_connector

    monkeypatch.setattr(kafka_connector, "idle_wait_ms", lambda *_: 8000)
    topic = await kafka_topic_factory(partitions=2)
    group = f"given-{topic}"
    store = SqliteCheckpointStore(tmp_path / "c.sqlite3")
    config = KafkaSource(
        type="kafka", bootstrap_servers=[kafka_bootstrap], topics=[topic], consumer_group_id=group
    )
    c = KafkaConnector(config, ConnectorContext(mapping="k", checkpoints=store.namespace("k")))
    assigned: list[tuple[float, int]] = []
    real = c.partitions_assigned

    async def noting(partitions: Any) -> None:
        assigned.append((time.monotonic(), len(partitions)))
        await real(partitions)

    c.partitions_assigned = noting  # type: ignore[method-assign]
    arrived: asyncio.Queue[tuple[float, Record]] = asyncio.Queue()

    async def pull() -> None:
        async for chunk in c.read():
            for record in chunk:
                arrived.put_nowait((time.monotonic(), record))

    other = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=group)
    puller = polling = None
    try:
        await c.open()
        puller = asyncio.create_task(pull())
        await wait_for(lambda: bool(assigned) and assigned[-1][1] == 2, timeout=30)
        await other.start()

        async def poll() -> None:
            while True:
                await other.getmany(timeout_ms=500)

        polling = asyncio.create_task(poll())
        await wait_for(lambda: len(other.assignment()) == 1 and assigned[-1][1] == 1, timeout=30)
        [theirs] = other.assignment()
        await wait_for(lambda: c._pace is not None and c._pace.idle, timeout=10)
        await asyncio.sleep(1)  # a Fetch held for 8 s is on its way
        polling.cancel()
        await other.stop()  # leaves the group: the partition comes back
        await produce_values(kafka_bootstrap, topic, [{"n": 1}], partition=theirs.partition)
        at, record = await asyncio.wait_for(arrived.get(), 30)
        given = assigned[-1][0]
        assert assigned[-1][1] == 2 and record.data.partition == theirs.partition
        assert at - given < 1.0, at - given  # not the rest of the held Fetch's 8 s
    finally:
        for task in (puller, polling):
            if task is not None:
                task.cancel()
        await asyncio.gather(*[t for t in (puller, polling) if t], return_exceptions=True)
        await other.stop()
        await c.aclose()
        store.close()
