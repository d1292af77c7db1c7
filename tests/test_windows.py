"""Tumbling windows (``tumbling_window_in_seconds``): the pure parts (window of a record,
the event's window properties, the state of an answer), then Kafka and DynamoDB Streams
end to end with a real broker, DynamoDB Local and a real awslambdaric handler."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bridge.checkpoints import SqliteCheckpointStore
from bridge.config import ConfigError, parse_config
from bridge.windows import InvalidState, OpenWindow, Windows, state_of
from tests.e2e.harness import RunningBridge, runtime_function, wait_for

HANDLER = Path(__file__).parent / "e2e" / "functions" / "window_recorder"


# --- pure logic ----------------------------------------------------------------------------


def test_payload_carries_awss_window_properties(tmp_path: Path) -> None:
    store = SqliteCheckpointStore(tmp_path / "c.sqlite3")
    windows = Windows(120, store.namespace("m"), source_arn=lambda: "arn:stream")
    envelope = b'{"Records":[{"a":1}]}'
    body = windows.payload(envelope, "shard-1", OpenWindow(13_395_812, {"n": 2}))
    assert json.loads(body) == {
        "Records": [{"a": 1}],
        "window": {"start": "2020-12-09T07:04:00Z", "end": "2020-12-09T07:06:00Z"},
        "state": {"n": 2},
        "shardId": "shard-1",
        "eventSourceARN": "arn:stream",
        "isFinalInvokeForWindow": False,
        "isWindowTerminatedEarly": False,
    }
    final = json.loads(windows.payload(b"{}", "p", OpenWindow(0, {}), final=True, early=True))
    assert final["isFinalInvokeForWindow"] is True and final["isWindowTerminatedEarly"] is True
    store.close()


def test_a_late_record_joins_the_window_under_way(tmp_path: Path) -> None:
    store = SqliteCheckpointStore(tmp_path / "c.sqlite3")
    windows = Windows(10, store.namespace("m"))
    assert windows.assign("p", 105.0) == 10
    assert windows.assign("p", 99.0) == 10  # late: joins window 10, not a new window 9
    assert windows.assign("q", 99.0) == 9  # per partition
    assert windows.assign("p", 121.0) == 12
    store.close()


def test_an_answer_without_a_state_object_is_refused() -> None:
    assert state_of(b'{"state": {"a": 1}, "batchItemFailures": []}') == {"a": 1}
    for answer in (b"", b"null", b'{"batchItemFailures": []}', b'{"state": 3}', b"nope"):
        with pytest.raises(InvalidState):
            state_of(answer)


def test_config_takes_windows_for_streams_only() -> None:
    def config(source: str, extra: str = "") -> str:
        return (
            "functions: {f: {type: http, url: 'http://127.0.0.1:1'}}\n"
            f"mappings:\n  - {{name: m, function: f, source: {source}, "
            f"tumbling_window_in_seconds: 60{extra}}}\n"
        )

    kafka = "{type: kafka, bootstrap_servers: [127.0.0.1:9092], topics: [t]}"
    parse_config(config(kafka), "ok.yaml")
    with pytest.raises(ConfigError, match="applies to DynamoDB Streams and Kafka only"):
        parse_config(config("{type: sqs, queue_url: 'http://x/q'}"), "sqs.yaml")
    ddb = "{type: dynamodb_streams, table_name: t}"
    with pytest.raises(ConfigError, match="cannot go with parallelization_factor"):
        parse_config(config(ddb, ", parallelization_factor: 2"), "both.yaml")
    with pytest.raises(ConfigError, match="less than or equal to 900"):
        parse_config(config(kafka).replace(": 60", ": 901"), "range.yaml")


# --- end to end ----------------------------------------------------------------------------


def calls(out: Path) -> list[dict[str, Any]]:
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text().splitlines()]


def bridge_text(tmp: Path, mapping: str, env: dict[str, str] | None = None) -> str:
    function = runtime_function(
        HANDLER, {"RECORDER_OUT": str(tmp / "calls.jsonl"), **(env or {})}, concurrency=2
    )
    return f"""
state_dir: {tmp}/state
retry_backoff: {{initial_seconds: 0.01, max_seconds: 0.05}}
shutdown_timeout_seconds: 5
functions:
{function}
mappings:
{mapping}
"""


async def produce(bootstrap: str, topic: str, values: list[tuple[str, float]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for value, at in values:
            await producer.send_and_wait(
                topic, value.encode(), partition=0, timestamp_ms=int(at * 1000)
            )
    finally:
        await producer.stop()


async def test_kafka_windows_pass_state_and_end_with_a_final_invocation(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic_factory: Callable[..., Any]
) -> None:
    """Records of two past 10 s windows: each window's invocations get the state the
    previous one answered, batches never mix windows, a batch of the next window first
    closes the open one with a final invocation (no records), and the last window is
    closed by time once it is over and nothing of it waits."""
    topic = await kafka_topic_factory(partitions=1)
    base = (time.time() // 10 - 3) * 10  # window starts, 30 s ago
    first = [(f"a{i}", base + 1 + i * 0.5) for i in range(5)]
    second = [(f"b{i}", base + 11 + i) for i in range(4)]
    await produce(kafka_bootstrap, topic, first + second)
    mapping = f"""  - name: win
    function: recorder
    batch_size: 2
    tumbling_window_in_seconds: 10
    source: {{type: kafka, bootstrap_servers: [{kafka_bootstrap}], topics: [{topic}],
              starting_position: TRIM_HORIZON}}"""
    out = tmp_path / "calls.jsonl"
    async with RunningBridge(bridge_text(tmp_path, mapping)):
        await wait_for(lambda: sum(1 for c in calls(out) if c["final"]) == 2, timeout=40)
    got = calls(out)
    a = [c for c in got if c["window"]["start"] == _iso(base)]
    b = [c for c in got if c["window"]["start"] == _iso(base + 10)]
    assert [c["items"] for c in a] == [["a0", "a1"], ["a2", "a3"], ["a4"], []]
    assert [c["state"].get("count", 0) for c in a] == [0, 2, 4, 5]  # passed along
    assert [c["final"] for c in a] == [False, False, False, True]
    assert a[-1]["state"]["keys"] == ["a0", "a1", "a2", "a3", "a4"]
    assert a[0]["window"]["end"] == _iso(base + 10) and a[0]["shardId"] == f"{topic}-0"
    assert [c["items"] for c in b] == [["b0", "b1"], ["b2", "b3"], []]
    assert b[0]["state"] == {} and b[-1]["state"]["count"] == 4 and b[-1]["final"]
    assert got.index(a[-1]) < got.index(b[0])  # the final of a before anything of b
    assert not any(c["early"] for c in got)


async def test_a_restart_goes_on_with_the_windows_state(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic_factory: Callable[..., Any]
) -> None:
    topic = await kafka_topic_factory(partitions=1)
    base = (time.time() // 900 + 1) * 900  # a window that is not over during the test
    mapping = f"""  - name: win
    function: recorder
    batch_size: 2
    tumbling_window_in_seconds: 900
    source: {{type: kafka, bootstrap_servers: [{kafka_bootstrap}], topics: [{topic}],
              starting_position: TRIM_HORIZON}}"""
    out = tmp_path / "calls.jsonl"
    text = bridge_text(tmp_path, mapping)
    await produce(kafka_bootstrap, topic, [(f"x{i}", base + i) for i in range(4)])
    async with RunningBridge(text):
        await wait_for(lambda: sum(len(c["items"]) for c in calls(out)) == 4, timeout=30)
    await produce(kafka_bootstrap, topic, [(f"y{i}", base + 10 + i) for i in range(2)])
    async with RunningBridge(text):
        await wait_for(lambda: sum(len(c["items"]) for c in calls(out)) == 6, timeout=30)
    last = calls(out)[-1]
    assert last["items"] == ["y0", "y1"]
    assert last["state"] == {"count": 4, "keys": ["x0", "x1", "x2", "x3"]}  # kept across


async def test_an_answer_without_state_fails_the_invocation(
    tmp_path: Path,
    kafka_bootstrap: str,
    kafka_topic_factory: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic = await kafka_topic_factory(partitions=1)
    await produce(kafka_bootstrap, topic, [("z", time.time())])
    mapping = f"""  - name: win
    function: recorder
    tumbling_window_in_seconds: 900
    maximum_retry_attempts: 1
    on_failure: file://{tmp_path}/dlq.jsonl
    source: {{type: kafka, bootstrap_servers: [{kafka_bootstrap}], topics: [{topic}],
              starting_position: TRIM_HORIZON}}"""
    dlq = tmp_path / "dlq.jsonl"
    async with RunningBridge(bridge_text(tmp_path, mapping, {"NO_STATE": "1"})):
        await wait_for(lambda: dlq.exists() and bool(dlq.read_text().strip()), timeout=30)
    [dead] = [json.loads(line) for line in dlq.read_text().splitlines()]
    assert dead["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert dead["responseContext"]["functionError"] == "Unhandled"  # AWS's record says no more
    assert "error_type=InvalidStateResponse" in caplog.text
    assert "the answer has no state object" in caplog.text
    assert len(calls(tmp_path / "calls.jsonl")) == 2  # the attempt and its one retry


async def test_dynamodb_stream_windows_carry_the_shard_and_stream(
    tmp_path: Path, dynamodb_endpoint: Any, dynamodb_table_factory: Callable[..., Any]
) -> None:
    table = await dynamodb_table_factory()
    mapping = f"""  - name: ddbwin
    function: recorder
    tumbling_window_in_seconds: 2
    batch_size: 10
    source: {{type: dynamodb_streams, table_name: {table.name}, starting_position: TRIM_HORIZON,
              endpoint_url: {dynamodb_endpoint.url}, region: {dynamodb_endpoint.region},
              aws_access_key_id: {dynamodb_endpoint.access_key},
              aws_secret_access_key: {dynamodb_endpoint.secret_key},
              poll_interval_seconds: 0.2}}"""
    out = tmp_path / "calls.jsonl"
    async with dynamodb_endpoint.client("dynamodb") as ddb:
        for i in range(3):
            await ddb.put_item(TableName=table.name, Item={"pk": {"S": f"k{i}"}})
    async with RunningBridge(bridge_text(tmp_path, mapping)):
        await wait_for(lambda: any(c["final"] for c in calls(out)), timeout=40)
    got = calls(out)
    final = next(c for c in got if c["final"])
    assert final["items"] == [] and sorted(final["state"]["keys"]) == ["k0", "k1", "k2"]
    assert final["eventSourceARN"] == table.stream_arn
    assert final["shardId"].startswith("shardId-")
    delivered = [c for c in got if c["items"]]
    assert all(c["shardId"] == final["shardId"] for c in delivered)


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
