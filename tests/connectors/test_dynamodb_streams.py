"""The dynamodb_streams source against real stream shards (DynamoDB Local, and moto for
its single never-closing shard), delivering to a real handler under awslambdaric."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import connectors.dynamodb_streams
from bridge.checkpoints import SqliteCheckpointStore
from bridge.config import parse_config
from bridge.connector import ConnectorContext
from bridge.errors import ConfigError, NormalizeError, SourceUnavailable
from connectors.dynamodb_streams import DynamoDBStreamsConnector, DynamoDBStreamsSource
from connectors.dynamodb_streams.normalize import batch_info, stream_record
from tests.e2e.harness import RunningBridge, runtime_function, wait_for
from tests.services.fixtures import AwsEndpoint, DynamoTable
from tests.support.jsonl import read_jsonl

REPO = Path(__file__).resolve().parents[2]
HANDLER = REPO / "tests" / "e2e" / "functions" / "ddb_recorder"
VIEW_TYPES = ("KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES")
RECORD_KEYS = [
    "eventID",
    "eventName",
    "eventVersion",
    "eventSource",
    "awsRegion",
    "dynamodb",
    "eventSourceARN",
]


def _mapping(
    name: str,
    endpoint: AwsEndpoint,
    *,
    table: str | None = None,
    stream_arn: str | None = None,
    start: str = "TRIM_HORIZON",
    poll_interval_seconds: float | None = None,
    **options: Any,
) -> str:
    where = f"table_name: {table}" if table else f"stream_arn: {json.dumps(stream_arn)}"
    if poll_interval_seconds is not None:
        where += f"\n      poll_interval_seconds: {poll_interval_seconds}"
    extra = "".join(f"\n    {k}: {json.dumps(v)}" for k, v in options.items())
    return f"""
  - name: {name}
    function: recorder
    source:
      type: dynamodb_streams
      {where}
      starting_position: {start}
      endpoint_url: {endpoint.url}
      region: {endpoint.region}
      aws_access_key_id: {endpoint.access_key}
      aws_secret_access_key: {endpoint.secret_key}
      shard_refresh_interval_seconds: 1{extra}"""


def _config(tmp: Path, *mappings: str) -> str:
    return f"""
state_dir: {tmp}/state
retry_backoff: {{initial_seconds: 0.05, max_seconds: 0.2}}
shutdown_timeout_seconds: 5
functions:
{runtime_function(HANDLER, {"RECORDER_OUT": f"{tmp}/calls.jsonl"})}
mappings:{"".join(mappings)}
"""


def _calls(tmp: Path) -> list[dict[str, Any]]:
    return read_jsonl(tmp / "calls.jsonl")


def _records(tmp: Path) -> list[dict[str, Any]]:
    return [r for call in _calls(tmp) for r in call["records"]]


def _pk(record: dict[str, Any]) -> str:
    return str(record["dynamodb"]["Keys"]["pk"]["S"])


def _checkpoints(tmp: Path, mapping: str) -> dict[str, Any]:
    db = sqlite3.connect(tmp / "state" / "checkpoints.sqlite3")
    try:
        rows = db.execute(
            "SELECT key, value FROM checkpoints WHERE namespace=?", (mapping,)
        ).fetchall()
    finally:
        db.close()
    return {k: json.loads(v) for k, v in rows}


async def _put(endpoint: AwsEndpoint, table: str, items: list[dict[str, Any]]) -> None:
    async with endpoint.client("dynamodb") as ddb:
        for item in items:
            await ddb.put_item(TableName=table, Item=item)


async def _raw_stream(endpoint: AwsEndpoint, stream_arn: str) -> list[dict[str, Any]]:
    """Every record of the stream as GetRecords returns it, shard by shard."""
    out: list[dict[str, Any]] = []
    async with endpoint.client("dynamodbstreams") as streams:
        shards = (await streams.describe_stream(StreamArn=stream_arn))["StreamDescription"][
            "Shards"
        ]
        for shard in shards:
            iterator = (
                await streams.get_shard_iterator(
                    StreamArn=stream_arn,
                    ShardId=shard["ShardId"],
                    ShardIteratorType="TRIM_HORIZON",
                )
            )["ShardIterator"]
            while iterator:
                response = await streams.get_records(ShardIterator=iterator)
                out.extend(response["Records"])
                if not response["Records"]:
                    break
                iterator = response.get("NextShardIterator")
    return out


# ---------------------------------------------------------------- event shape

ITEM = {
    "pk": {"S": "k1"},
    "n": {"N": "1"},
    "b": {"B": b"\x00\xff"},
    "bs": {"BS": [b"a"]},
    "m": {"M": {"x": {"L": [{"S": "y"}, {"N": "2"}, {"BOOL": True}, {"NULL": True}]}}},
    "ss": {"SS": ["s"]},
}
ITEM_JSON = {
    "pk": {"S": "k1"},
    "n": {"N": "1"},
    "b": {"B": "AP8="},
    "bs": {"BS": ["YQ=="]},
    "m": {"M": {"x": {"L": [{"S": "y"}, {"N": "2"}, {"BOOL": True}, {"NULL": True}]}}},
    "ss": {"SS": ["s"]},
}
ITEM_JSON_2 = {**ITEM_JSON, "n": {"N": "2"}}

# (eventName, images expected) for each stream view type
EXPECTED_IMAGES: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "KEYS_ONLY": [("INSERT", {}), ("MODIFY", {}), ("REMOVE", {})],
    "NEW_IMAGE": [
        ("INSERT", {"NewImage": ITEM_JSON}),
        ("MODIFY", {"NewImage": ITEM_JSON_2}),
        ("REMOVE", {}),
    ],
    "OLD_IMAGE": [
        ("INSERT", {}),
        ("MODIFY", {"OldImage": ITEM_JSON}),
        ("REMOVE", {"OldImage": ITEM_JSON_2}),
    ],
    "NEW_AND_OLD_IMAGES": [
        ("INSERT", {"NewImage": ITEM_JSON}),
        ("MODIFY", {"NewImage": ITEM_JSON_2, "OldImage": ITEM_JSON}),
        ("REMOVE", {"OldImage": ITEM_JSON_2}),
    ],
}


async def test_insert_modify_remove_in_aws_shape_for_every_stream_view_type(
    tmp_path: Path, dynamodb_endpoint: AwsEndpoint, dynamodb_table_factory: Any
) -> None:
    tables: dict[str, DynamoTable] = {}
    for view in VIEW_TYPES:
        tables[view] = await dynamodb_table_factory(stream_view_type=view)
    async with dynamodb_endpoint.client("dynamodb") as ddb:
        for table in tables.values():
            await ddb.put_item(TableName=table.name, Item=ITEM)
            await ddb.update_item(
                TableName=table.name,
                Key={"pk": {"S": "k1"}},
                UpdateExpression="SET n = :v",
                ExpressionAttributeValues={":v": {"N": "2"}},
            )
            await ddb.delete_item(TableName=table.name, Key={"pk": {"S": "k1"}})
    mappings = [
        _mapping(f"m{i}", dynamodb_endpoint, table=t.name) for i, t in enumerate(tables.values())
    ]
    async with RunningBridge(_config(tmp_path, *mappings)):
        await wait_for(lambda: len(_records(tmp_path)) >= 12, timeout=60)
    records = _records(tmp_path)
    assert len(records) == 12
    for view, table in tables.items():
        assert table.stream_arn is not None
        got = [r for r in records if r["eventSourceARN"] == table.stream_arn]
        raw = await _raw_stream(dynamodb_endpoint, table.stream_arn)
        assert [r["eventName"] for r in got] == ["INSERT", "MODIFY", "REMOVE"], view
        for record, source, (name, images) in zip(got, raw, EXPECTED_IMAGES[view], strict=True):
            assert list(record) == RECORD_KEYS
            assert record["eventID"] == source["eventID"]
            assert record["eventName"] == name
            assert record["eventVersion"] == "1.1"
            assert record["eventSource"] == "aws:dynamodb"
            assert record["awsRegion"] == dynamodb_endpoint.region
            body = record["dynamodb"]
            created = source["dynamodb"]["ApproximateCreationDateTime"]
            assert isinstance(body["ApproximateCreationDateTime"], float)
            assert body["ApproximateCreationDateTime"] == float(int(created.timestamp()))
            assert abs(body["ApproximateCreationDateTime"] - time.time()) < 600
            assert body == {
                "ApproximateCreationDateTime": body["ApproximateCreationDateTime"],
                "Keys": {"pk": {"S": "k1"}},
                **images,
                "SequenceNumber": source["dynamodb"]["SequenceNumber"],
                "SizeBytes": source["dynamodb"]["SizeBytes"],
                "StreamViewType": view,
            }, view
            order = ["ApproximateCreationDateTime", "Keys", "NewImage", "OldImage"]
            order += ["SequenceNumber", "SizeBytes", "StreamViewType"]
            assert list(body) == [k for k in order if k in body]
            assert isinstance(body["SizeBytes"], int)


# ---------------------------------------------------------------- order and volume


async def test_many_writes_are_all_delivered_in_order_per_key(
    tmp_path: Path, dynamodb_endpoint: AwsEndpoint, dynamodb_table_factory: Any
) -> None:
    table = await dynamodb_table_factory(stream_view_type="NEW_IMAGE")
    keys, versions = 40, 8

    async def write_key(k: int) -> None:
        async with dynamodb_endpoint.client("dynamodb") as ddb:
            for v in range(versions):
                item = {"pk": {"S": f"key-{k}"}, "v": {"N": str(v)}}
                await ddb.put_item(TableName=table.name, Item=item)

    text = _config(tmp_path, _mapping("m", dynamodb_endpoint, table=table.name, batch_size=25))
    async with RunningBridge(text):
        await asyncio.gather(*(write_key(k) for k in range(keys)))
        await wait_for(lambda: len(_records(tmp_path)) >= keys * versions, timeout=90)
        await asyncio.sleep(0.5)
    calls = _calls(tmp_path)
    records = _records(tmp_path)
    assert len(records) == keys * versions  # nothing twice, nothing lost
    assert all(len(c["records"]) <= 25 for c in calls)
    assert len(calls) >= (keys * versions) // 25
    per_key: dict[str, list[int]] = {}
    for r in records:
        per_key.setdefault(_pk(r), []).append(int(r["dynamodb"]["NewImage"]["v"]["N"]))
    assert per_key == {f"key-{k}": list(range(versions)) for k in range(keys)}
    sequence = [int(r["dynamodb"]["SequenceNumber"]) for r in records]
    assert sequence == sorted(sequence)  # one shard: delivered in stream order
    assert [r["eventName"] for r in records].count("INSERT") == keys


async def test_kill_and_restart_resumes_after_the_checkpoint_without_loss(
    tmp_path: Path, dynamodb_endpoint: AwsEndpoint, dynamodb_table_factory: Any
) -> None:
    table = await dynamodb_table_factory(stream_view_type="NEW_IMAGE")
    total = 200
    items = [{"pk": {"S": f"i{n:03d}"}, "sleep": {"N": "0.02"}} for n in range(total)]
    await _put(dynamodb_endpoint, table.name, items)
    config = tmp_path / "bridge.yaml"
    config.write_text(
        _config(tmp_path, _mapping("m", dynamodb_endpoint, table=table.name, batch_size=10))
    )
    cmd = [sys.executable, "-m", "bridge", "run", "--config", str(config), "--no-reload"]
    with (tmp_path / "bridge.log").open("ab") as log:
        first = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        await wait_for(lambda: len(_records(tmp_path)) >= 60, timeout=60)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    before = len(_records(tmp_path))
    committed = _checkpoints(tmp_path, "m")
    [shard_state] = [v for k, v in committed.items() if k.startswith("shard:")]
    with (tmp_path / "bridge.log").open("ab") as log:
        second = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        await wait_for(
            lambda: {_pk(r) for r in _records(tmp_path)} == {f"i{n:03d}" for n in range(total)},
            timeout=90,
        )
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    records = _records(tmp_path)
    again = records[before:]
    # the second run started right after the committed sequence number, not from the start
    assert int(again[0]["dynamodb"]["SequenceNumber"]) == min(
        int(r["dynamodb"]["SequenceNumber"])
        for r in records
        if int(r["dynamodb"]["SequenceNumber"]) > int(shard_state["seq"])
    )
    assert len(records) - total <= 20  # at most what was in flight came twice
    order = [_pk(r) for r in again]
    assert order == sorted(order)


# ---------------------------------------------------------------- failures


async def test_poison_record_is_isolated_by_bisect_and_dead_lettered_with_batch_info(
    tmp_path: Path, dynamodb_endpoint: AwsEndpoint, dynamodb_table_factory: Any
) -> None:
    table = await dynamodb_table_factory(stream_view_type="NEW_AND_OLD_IMAGES")
    items: list[dict[str, Any]] = [{"pk": {"S": f"p{n}"}} for n in range(10)]
    items[6]["poison"] = {"BOOL": True}
    await _put(dynamodb_endpoint, table.name, items)
    failures = tmp_path / "failures.jsonl"
    mapping = _mapping(
        "m",
        dynamodb_endpoint,
        table=table.name,
        batch_size=10,
        bisect_batch_on_function_error=True,
        maximum_retry_attempts=1,
        on_failure=f"file://{failures}",
    )
    async with RunningBridge(_config(tmp_path, mapping)):
        await wait_for(lambda: failures.exists() and failures.read_text().strip() != "")
        await _put(dynamodb_endpoint, table.name, [{"pk": {"S": "after"}}])
        await wait_for(lambda: "after" in {_pk(r) for r in _records(tmp_path)})
    [doc] = [json.loads(line) for line in failures.read_text().splitlines()]
    [poison] = [
        r
        for r in await _raw_stream(dynamodb_endpoint, str(table.stream_arn))
        if r["dynamodb"]["Keys"]["pk"]["S"] == "p6"
    ]
    info = doc["DDBStreamBatchInfo"]
    seq = poison["dynamodb"]["SequenceNumber"]
    arrival = time.strftime(
        "%Y-%m-%dT%H:%M:%SZ",
        time.gmtime(poison["dynamodb"]["ApproximateCreationDateTime"].timestamp()),
    )
    assert info == {
        "shardId": info["shardId"],
        "startSequenceNumber": seq,
        "endSequenceNumber": seq,
        "approximateArrivalOfFirstRecord": arrival,
        "approximateArrivalOfLastRecord": arrival,
        "batchSize": 1,
        "streamArn": table.stream_arn,
    }
    assert info["shardId"].startswith("shardId-")
    assert doc["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert doc["requestContext"]["approximateInvokeCount"] == 2
    assert doc["responseContext"]["functionError"] == "Unhandled"
    assert doc["version"] == "1.0"
    succeeded = [
        _pk(r)
        for c in _calls(tmp_path)
        if not any(_pk(r) == "p6" for r in c["records"])
        for r in c["records"]
    ]
    assert sorted(set(succeeded)) == sorted([f"p{n}" for n in range(10) if n != 6] + ["after"])
    failed_alone = [c for c in _calls(tmp_path) if [_pk(r) for r in c["records"]] == ["p6"]]
    assert len(failed_alone) == 2  # first try + 1 retry, alone after bisecting


async def test_partial_batch_response_resumes_from_the_failed_sequence_number(
    tmp_path: Path, dynamodb_endpoint: AwsEndpoint, dynamodb_table_factory: Any
) -> None:
    table = await dynamodb_table_factory(stream_view_type="NEW_IMAGE")
    items: list[dict[str, Any]] = [{"pk": {"S": f"r{n}"}} for n in range(4)]
    items[1]["report_once"] = {"BOOL": True}
    await _put(dynamodb_endpoint, table.name, items)
    mapping = _mapping(
        "m",
        dynamodb_endpoint,
        table=table.name,
        batch_size=4,
        function_response_types=["ReportBatchItemFailures"],
    )
    async with RunningBridge(_config(tmp_path, mapping)):
        await wait_for(lambda: len(_records(tmp_path)) >= 7)
        await asyncio.sleep(0.5)
    assert [[_pk(r) for r in c["records"]] for c in _calls(tmp_path)] == [
        ["r0", "r1", "r2", "r3"],
        ["r1", "r2", "r3"],  # r0 was settled; the rest comes again, in order
    ]


async def test_filter_passes_only_matching_records_and_commits_the_rest(
    tmp_path: Path, dynamodb_endpoint: AwsEndpoint, dynamodb_table_factory: Any
) -> None:
    table = await dynamodb_table_factory(stream_view_type="NEW_AND_OLD_IMAGES")
    statuses = ["active", "inactive", "active", "pending", "active"]
    items = [{"pk": {"S": f"f{n}"}, "status": {"S": s}} for n, s in enumerate(statuses)]
    items.append({"pk": {"S": "f0"}, "status": {"S": "active"}, "again": {"BOOL": True}})
    await _put(dynamodb_endpoint, table.name, items)  # the last one is a MODIFY
    pattern = {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"status": {"S": ["active"]}}}}
    mapping = _mapping(
        "m",
        dynamodb_endpoint,
        table=table.name,
        filter_criteria={"filters": [{"pattern": json.dumps(pattern)}]},
    )
    raw = await _raw_stream(dynamodb_endpoint, str(table.stream_arn))
    last = raw[-1]["dynamodb"]["SequenceNumber"]

    def settled() -> bool:
        path = tmp_path / "state" / "checkpoints.sqlite3"
        if not path.exists():
            return False
        states = [v for k, v in _checkpoints(tmp_path, "m").items() if k.startswith("shard:")]
        return [s.get("seq") for s in states] == [last]

    async with RunningBridge(_config(tmp_path, mapping)):
        await wait_for(lambda: len(_records(tmp_path)) >= 3)
        await wait_for(settled)  # the filtered-out MODIFY at the end was committed too
    assert [(_pk(r), r["eventName"]) for r in _records(tmp_path)] == [
        ("f0", "INSERT"),
        ("f2", "INSERT"),
        ("f4", "INSERT"),
    ]


# ---------------------------------------------------------------- starting position


async def test_latest_skips_what_was_written_before_the_first_start(
    tmp_path: Path, dynamodb_endpoint: AwsEndpoint, dynamodb_table_factory: Any
) -> None:
    table = await dynamodb_table_factory(stream_view_type="KEYS_ONLY")
    await _put(dynamodb_endpoint, table.name, [{"pk": {"S": "old"}}])
    text = _config(tmp_path, _mapping("m", dynamodb_endpoint, table=table.name, start="LATEST"))
    async with RunningBridge(text):
        # the reader takes its LATEST iterator some time after start: write until a new
        # record arrives (records written before that moment are rightly skipped too)
        for n in range(60):
            await _put(dynamodb_endpoint, table.name, [{"pk": {"S": f"new-{n}"}}])
            with contextlib.suppress(AssertionError):
                await wait_for(lambda: len(_records(tmp_path)) >= 1, timeout=1)
                break
        await asyncio.sleep(0.5)
    delivered = [_pk(r) for r in _records(tmp_path)]
    assert delivered and "old" not in delivered
    assert all(pk.startswith("new-") for pk in delivered)
    state = _checkpoints(tmp_path, "m")
    assert [k for k in state if k.startswith("shard:")]  # LATEST decided once, stored


async def test_a_closed_shard_is_finished_and_not_read_again(
    tmp_path: Path, dynamodb_endpoint: AwsEndpoint, dynamodb_table_factory: Any
) -> None:
    table = await dynamodb_table_factory(stream_view_type="KEYS_ONLY")
    await _put(dynamodb_endpoint, table.name, [{"pk": {"S": f"c{n}"}} for n in range(3)])
    async with dynamodb_endpoint.client("dynamodb") as ddb:  # closes the stream's shard
        await ddb.update_table(TableName=table.name, StreamSpecification={"StreamEnabled": False})
    text = _config(tmp_path, _mapping("m", dynamodb_endpoint, stream_arn=table.stream_arn))

    def finished() -> bool:
        states = [v for k, v in _checkpoints(tmp_path, "m").items() if k.startswith("shard:")]
        return len(states) == 1 and states[0].get("done") is True

    async with RunningBridge(text):
        await wait_for(lambda: len(_records(tmp_path)) >= 3)
        await wait_for(finished)
    async with RunningBridge(text):
        await asyncio.sleep(2)
    assert [_pk(r) for r in _records(tmp_path)] == ["c0", "c1", "c2"]


# ---------------------------------------------------------------- moto


async def test_delivery_from_motos_single_open_shard(
    tmp_path: Path, moto_endpoint: AwsEndpoint
) -> None:
    name = f"tb-{int(time.time() * 1000)}"
    async with moto_endpoint.client("dynamodb") as ddb:
        created = await ddb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
        )
        stream_arn = created["TableDescription"]["LatestStreamArn"]
        try:
            await _put(moto_endpoint, name, [{"pk": {"S": f"m{n}"}} for n in range(3)])
            text = _config(tmp_path, _mapping("m", moto_endpoint, table=name))
            async with RunningBridge(text):
                await wait_for(lambda: len(_records(tmp_path)) >= 3)
                await _put(moto_endpoint, name, [{"pk": {"S": "m3"}}])
                await wait_for(lambda: len(_records(tmp_path)) >= 4)
        finally:
            await ddb.delete_table(TableName=name)
    records = _records(tmp_path)
    assert [_pk(r) for r in records] == ["m0", "m1", "m2", "m3"]
    assert all(list(r) == RECORD_KEYS for r in records)
    assert {r["eventSourceARN"] for r in records} == {stream_arn}
    assert {r["eventVersion"] for r in records} == {"1.1"}
    assert all(isinstance(r["dynamodb"]["ApproximateCreationDateTime"], float) for r in records)
    assert all(r["dynamodb"]["NewImage"] == {"pk": r["dynamodb"]["Keys"]["pk"]} for r in records)


# ---------------------------------------------------------------- errors


async def _open_fails(tmp: Path, endpoint_url: str, **source: Any) -> BaseException:
    """Open a connector that must fail; return what it raised."""
    config = DynamoDBStreamsSource(
        type="dynamodb_streams",
        starting_position="TRIM_HORIZON",
        endpoint_url=endpoint_url,
        region="us-east-1",
        aws_access_key_id="tbtest",
        aws_secret_access_key="tbtest",
        **source,
    )
    store = SqliteCheckpointStore(tmp / "c.sqlite3")
    connector = DynamoDBStreamsConnector(
        config, ConnectorContext(mapping="m", checkpoints=store.namespace("m"))
    )
    try:
        with pytest.raises((ConfigError, SourceUnavailable)) as info:
            await connector.open()
        return info.value
    finally:
        await connector.aclose()
        store.close()


async def test_table_without_a_stream_is_a_clear_config_error(
    tmp_path: Path, dynamodb_endpoint: AwsEndpoint, dynamodb_table_factory: Any
) -> None:
    table = await dynamodb_table_factory(stream_view_type=None)
    error = await _open_fails(tmp_path, dynamodb_endpoint.url, table_name=table.name)
    assert isinstance(error, ConfigError)
    assert f"DynamoDB table {table.name} has no stream enabled; enable StreamSpecification" in (
        str(error)
    )


async def test_missing_table_is_a_config_error_and_no_server_is_unavailable(
    tmp_path: Path, dynamodb_endpoint: AwsEndpoint
) -> None:
    error = await _open_fails(tmp_path, dynamodb_endpoint.url, table_name="no-such-table")
    assert isinstance(error, ConfigError)
    assert "DynamoDB table no-such-table: ResourceNotFoundException" in str(error)
    arn = "arn:aws:dynamodb:ddblocal:000000000000:table/nope/stream/2026-01-01T00:00:00.000"
    error = await _open_fails(tmp_path, dynamodb_endpoint.url, stream_arn=arn)
    assert isinstance(error, ConfigError)
    assert f"DynamoDB stream {arn}: ResourceNotFoundException" in str(error)
    error = await _open_fails(tmp_path, "http://127.0.0.1:9", table_name="t")
    assert isinstance(error, SourceUnavailable)
    assert "DynamoDB table t: cannot connect" in str(error)


# ---------------------------------------------------------------- pure shaping


def test_ttl_deletes_carry_user_identity_and_binary_sets_are_base64() -> None:
    raw = {
        "eventID": "e1",
        "eventName": "REMOVE",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "eu-west-1",
        "dynamodb": {
            "ApproximateCreationDateTime": datetime(2026, 1, 2, 3, 4, 5, 900000, tzinfo=UTC),
            "Keys": {"pk": {"S": "a"}},
            "OldImage": {
                "pk": {"S": "a"},
                "bs": {"BS": [b"\x01", b"\x02"]},
                "ns": {"NS": ["1", "2.5"]},
            },
            "SequenceNumber": "111",
            "SizeBytes": 26,
            "StreamViewType": "OLD_IMAGE",
        },
        "userIdentity": {"PrincipalId": "dynamodb.amazonaws.com", "Type": "Service"},
    }
    record = stream_record(raw, stream_arn="arn:s", region="eu-west-1")
    assert record["userIdentity"] == {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    assert record["dynamodb"]["ApproximateCreationDateTime"] == 1767323045.0
    assert record["dynamodb"]["OldImage"]["bs"] == {"BS": ["AQ==", "Ag=="]}
    assert record["dynamodb"]["OldImage"]["ns"] == {"NS": ["1", "2.5"]}
    assert record["eventSourceARN"] == "arn:s"
    info = batch_info([raw, raw], shard_id="shardId-1", stream_arn="arn:s")
    assert info["approximateArrivalOfFirstRecord"] == "2026-01-02T03:04:05Z"
    assert info["batchSize"] == 2
    del raw["dynamodb"]["Keys"]
    with pytest.raises(NormalizeError):
        stream_record(raw, stream_arn="arn:s", region="eu-west-1")


def test_public_surface() -> None:
    assert connectors.dynamodb_streams.__all__ == [
        "DynamoDBStreamsConnector",
        "DynamoDBStreamsSource",
    ]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ("maximum_concurrency: 5", "maximum_concurrency: not supported for DynamoDB Streams"),
        ("maximum_record_age_seconds: 30", "maximum_record_age_seconds: must be -1 (no limit)"),
    ],
)
def test_options_aws_rejects_for_dynamodb_streams_are_config_errors(
    options: str, expected: str
) -> None:
    text = f"""
functions:
  f: {{type: http, url: "http://127.0.0.1:1"}}
mappings:
  - name: m
    function: f
    source: {{type: dynamodb_streams, table_name: t, starting_position: LATEST}}
    {options}
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text, "b.yaml", {})
    assert f"b.yaml:8: mappings[0].{expected}" in str(info.value)


def test_source_needs_exactly_one_of_table_name_or_stream_arn() -> None:
    for source in (
        "{type: dynamodb_streams, starting_position: LATEST}",
        "{type: dynamodb_streams, table_name: t, stream_arn: a, starting_position: LATEST}",
    ):
        text = f"""
functions:
  f: {{type: http, url: "http://127.0.0.1:1"}}
mappings:
  - name: m
    function: f
    source: {source}
"""
        with pytest.raises(ConfigError) as info:
            parse_config(text, "b.yaml", {})
        assert "exactly one of table_name or stream_arn" in str(info.value)


def test_a_busy_shard_keeps_its_pace_through_short_gaps_and_an_idle_one_backs_off() -> None:
    from connectors.dynamodb_streams.shards import PollPace

    now = [0.0]
    pace = PollPace(0.05, 1.0, quiet_seconds=2.0, clock=lambda: now[0])
    assert pace.next_wait(True) == 0.05
    now[0] = 0.5  # empty answers half a second after records: still busy
    assert [pace.next_wait(False) for _ in range(3)] == [0.05, 0.05, 0.05]
    assert pace.next_wait(True) == 0.05
    now[0] = 3.0  # quiet for longer than 2 s: idle, the wait doubles up to the maximum
    assert [pace.next_wait(False) for _ in range(6)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0]
    assert pace.next_wait(True) == 0.05  # records again: back to the poll interval
    now[0] = 3.1
    assert pace.next_wait(False) == 0.05


# --------------------------------------------------------------------- read-ahead


class _FailingFunction:
    """A target whose function fails every time: the shard never moves."""

    name = "failing"

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    async def invoke(self, payload: bytes, *, request_id: str, timeout: float | None) -> bytes:
        from bridge.errors import FunctionError

        await asyncio.sleep(0.01)
        raise FunctionError("fails", error_type="Boom")


class _Sink:
    uri = "memory://"

    async def write(self, documents: Any) -> None: ...

    async def aclose(self) -> None: ...


def _stuck_pipeline(connector: Any, batch_size: int) -> Any:
    from bridge.pipeline import Pipeline, PipelineOptions
    from bridge.retry import RetryPolicy

    options = PipelineOptions(
        batch_size=batch_size,
        window=0,
        maximum_concurrency=1000,
        policy=RetryPolicy(backoff_initial_seconds=0.01, backoff_max_seconds=0.02),
        shutdown_timeout=1,
    )
    return Pipeline(
        mapping="stuck",
        connector=connector,
        target=_FailingFunction(),  # type: ignore[arg-type]
        destination=_Sink(),  # type: ignore[arg-type]
        options=options,
        filters=None,
        function_arn="arn:aws:lambda:us-east-1:000000000000:function:failing",
        partitions=connector.context.partitions,
    )


async def test_a_stuck_shard_is_not_read_past_its_share(
    tmp_path: Path, dynamodb_endpoint: AwsEndpoint, dynamodb_table_factory: Any
) -> None:
    """The function fails forever on the shard's first batch: the shard reader stops at
    the engine's read-ahead, it does not keep a GetRecords answer (up to 1,000 records)
    of its own waiting behind it, nor eight more in a queue."""
    from bridge.connector import PartitionControl

    table = await dynamodb_table_factory(stream_view_type="NEW_IMAGE")
    async with dynamodb_endpoint.client("dynamodb") as ddb:
        for start in range(0, 3000, 25):
            await ddb.batch_write_item(
                RequestItems={
                    table.name: [
                        {"PutRequest": {"Item": {"pk": {"S": f"k{n}"}}}}
                        for n in range(start, start + 25)
                    ]
                }
            )
    read = 0

    class Counting(DynamoDBStreamsConnector):
        async def open(self) -> None:
            await super().open()
            get_records = self._streams.get_records

            async def counted(**kwargs: Any) -> Any:
                nonlocal read
                response = await get_records(**kwargs)
                read += len(response.get("Records", []))
                return response

            self._streams.get_records = counted

    store = SqliteCheckpointStore(tmp_path / "state.sqlite3")
    source = DynamoDBStreamsSource(
        type="dynamodb_streams",
        table_name=table.name,
        starting_position="TRIM_HORIZON",
        endpoint_url=dynamodb_endpoint.url,
        region=dynamodb_endpoint.region,
        aws_access_key_id=dynamodb_endpoint.access_key,
        aws_secret_access_key=dynamodb_endpoint.secret_key,
        poll_interval_seconds=0.05,
    )
    connector = Counting(
        source,
        ConnectorContext(
            mapping="stuck", checkpoints=store.namespace("stuck"), partitions=PartitionControl()
        ),
    )
    pipeline = _stuck_pipeline(connector, batch_size=10)  # read-ahead: 1,000 records
    run = asyncio.create_task(pipeline.run())
    try:
        await wait_for(lambda: read >= 1000, timeout=30)
        await asyncio.sleep(2.0)  # time for a reader that does not stop to read on
        assert read <= 1000
        assert pipeline.lanes.count == read
    finally:
        pipeline.stop()
        await asyncio.wait_for(run, 30)
        store.close()


class _ManyShardsApi:
    """The DynamoDB and DynamoDB Streams APIs of a stream with ``shards`` open shards, each
    with an endless backlog. DynamoDB Local gives every stream a single shard, so a stream
    of a hundred shards can only be made this way."""

    def __init__(self, shards: int) -> None:
        self.shards = [f"shardId-{n:05d}" for n in range(shards)]
        self.read = 0

    async def __aenter__(self) -> _ManyShardsApi:
        return self

    async def __aexit__(self, *exc: object) -> None: ...

    async def describe_stream(self, **_: Any) -> dict[str, Any]:
        shards = [
            {"ShardId": s, "SequenceNumberRange": {"StartingSequenceNumber": "1"}}
            for s in self.shards
        ]
        return {"StreamDescription": {"Shards": shards}}

    async def get_shard_iterator(self, **kwargs: Any) -> dict[str, Any]:
        return {"ShardIterator": f"{kwargs['ShardId']}|{kwargs.get('SequenceNumber', '0')}"}

    async def get_records(self, *, ShardIterator: str, Limit: int) -> dict[str, Any]:
        shard, after = ShardIterator.split("|")
        first = int(after) + 1
        records = [
            {
                "eventID": f"{shard}-{seq}",
                "eventName": "INSERT",
                "dynamodb": {
                    "Keys": {"pk": {"S": f"{shard}-{seq}"}},
                    "SequenceNumber": str(seq),
                    "SizeBytes": 10,
                    "StreamViewType": "KEYS_ONLY",
                },
            }
            for seq in range(first, first + Limit)
        ]
        self.read += len(records)
        return {"Records": records, "NextShardIterator": f"{shard}|{first + Limit - 1}"}


async def test_a_hundred_stuck_shards_hold_their_shares_and_no_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bridge.connector import PartitionControl

    api = _ManyShardsApi(100)
    monkeypatch.setattr(
        "connectors.dynamodb_streams.connector.create_client", lambda *_a, **_k: api
    )
    store = SqliteCheckpointStore(tmp_path / "state.sqlite3")
    source = DynamoDBStreamsSource(
        type="dynamodb_streams",
        stream_arn="arn:aws:dynamodb:us-east-1:000000000000:table/t/stream/2026-01-01T00:00:00.000",
        starting_position="TRIM_HORIZON",
        poll_interval_seconds=0.01,
    )
    connector = DynamoDBStreamsConnector(
        source,
        ConnectorContext(
            mapping="stuck", checkpoints=store.namespace("stuck"), partitions=PartitionControl()
        ),
    )
    pipeline = _stuck_pipeline(connector, batch_size=10)
    run = asyncio.create_task(pipeline.run())
    try:
        await asyncio.sleep(3.0)
        # each shard: its share, 4 batches of 10 (the read-ahead of 1,000 split 100 ways
        # is less); without flow control this was 108,000 (1,000 per shard, held by the
        # readers, plus the engine's 1,000 and a queue of eight answers)
        assert api.read <= 100 * 40
        assert pipeline.lanes.count == api.read
    finally:
        pipeline.stop()
        await asyncio.wait_for(run, 30)
        store.close()


# --------------------------------------------------------------------- what DynamoDB Local
# cannot do on demand: expired iterators, trimmed data, shard splits (tests/support)


@contextlib.asynccontextmanager
async def _proxied(endpoint: AwsEndpoint) -> Any:
    from dataclasses import replace

    from tests.support.streams_proxy import StreamsProxy

    async with StreamsProxy(endpoint.url) as proxy:
        yield proxy, replace(endpoint, url=proxy.url)


def _seqs(tmp: Path) -> list[str]:
    return [r["dynamodb"]["SequenceNumber"] for r in _records(tmp)]


async def test_an_expired_iterator_is_renewed_after_the_last_record_read(
    tmp_path: Path, dynamodb_endpoint: AwsEndpoint, dynamodb_table_factory: Any
) -> None:
    table = await dynamodb_table_factory(stream_view_type="KEYS_ONLY")
    async with _proxied(dynamodb_endpoint) as (proxy, endpoint):
        mapping = _mapping("m", endpoint, stream_arn=table.stream_arn, poll_interval_seconds=0.05)
        async with RunningBridge(_config(tmp_path, mapping)):
            await _put(dynamodb_endpoint, table.name, [{"pk": {"S": f"a{n}"}} for n in range(5)])
            await wait_for(lambda: len(_records(tmp_path)) == 5)
            proxy.expire_next(2)
            await _put(dynamodb_endpoint, table.name, [{"pk": {"S": f"b{n}"}} for n in range(5)])
            await wait_for(lambda: len(_records(tmp_path)) >= 10)
            await asyncio.sleep(0.5)
    expected = [f"a{n}" for n in range(5)] + [f"b{n}" for n in range(5)]
    assert [_pk(r) for r in _records(tmp_path)] == expected  # no gap, nothing twice
    assert proxy.calls.count("GetShardIterator") >= 3  # the first, and one per expiry


async def test_trimmed_data_while_reading_skips_to_the_oldest_record_and_says_so(
    tmp_path: Path,
    dynamodb_endpoint: AwsEndpoint,
    dynamodb_table_factory: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The checkpoint is older than the stream's retention when the bridge comes back:
    it goes on from the oldest record kept, logs the gap, and delivers nothing twice."""
    table = await dynamodb_table_factory(stream_view_type="KEYS_ONLY")
    async with _proxied(dynamodb_endpoint) as (proxy, endpoint):
        mapping = _mapping("m", endpoint, stream_arn=table.stream_arn, poll_interval_seconds=0.05)
        text = _config(tmp_path, mapping)
        async with RunningBridge(text):
            await _put(dynamodb_endpoint, table.name, [{"pk": {"S": f"a{n}"}} for n in range(3)])
            await wait_for(lambda: len(_records(tmp_path)) == 3)
            await wait_for(lambda: _checkpoint_seq(tmp_path) == _seqs(tmp_path)[-1])
        # while the bridge is down: five more writes, of which the first three age out
        await _put(dynamodb_endpoint, table.name, [{"pk": {"S": f"b{n}"}} for n in range(5)])
        raw = await _raw_stream(dynamodb_endpoint, str(table.stream_arn))
        proxy.trim_through(raw[5]["dynamodb"]["SequenceNumber"])  # a0-a2, b0-b2 are gone
        async with RunningBridge(text):
            await wait_for(lambda: len(_records(tmp_path)) == 5)
            await asyncio.sleep(0.5)
    assert [_pk(r) for r in _records(tmp_path)] == ["a0", "a1", "a2", "b3", "b4"]
    gaps = [r.getMessage() for r in caplog.records if "trimmed" in r.getMessage()]
    assert gaps and _seqs(tmp_path)[2] in gaps[0]  # names where the gap starts


def _checkpoint_seq(tmp: Path) -> str | None:
    states = [v for k, v in _checkpoints(tmp, "m").items() if k.startswith("shard:")]
    return states[0].get("seq") if states else None


async def test_a_child_shard_is_read_only_after_its_parent_is_finished(
    tmp_path: Path, dynamodb_endpoint: AwsEndpoint, dynamodb_table_factory: Any
) -> None:
    """A split: the parent shard closes after its fifth record, a child shard carries the
    rest. The child's records come only after every parent record was delivered and the
    parent checkpointed as finished, even when the parent's last record fails first."""
    table = await dynamodb_table_factory(stream_view_type="NEW_IMAGE")
    items: list[dict[str, Any]] = [{"pk": {"S": f"p{n}"}} for n in range(5)]
    items += [{"pk": {"S": f"c{n}"}} for n in range(5)]
    items[4]["report_once"] = {"BOOL": True}  # the parent's last record fails once
    await _put(dynamodb_endpoint, table.name, items)
    raw = await _raw_stream(dynamodb_endpoint, str(table.stream_arn))
    async with _proxied(dynamodb_endpoint) as (proxy, endpoint):
        proxy.split_after(raw[4]["dynamodb"]["SequenceNumber"])
        mapping = _mapping(
            "m",
            endpoint,
            stream_arn=table.stream_arn,
            batch_size=2,
            poll_interval_seconds=0.05,
            function_response_types=["ReportBatchItemFailures"],
        )

        def finished() -> bool:
            shards = {k: v for k, v in _checkpoints(tmp_path, "m").items() if "shard:" in k}
            done = [v for v in shards.values() if v.get("done")]
            return len(shards) == 2 and len(done) == 1

        async with RunningBridge(_config(tmp_path, mapping)):
            wanted = {i["pk"]["S"] for i in items}
            await wait_for(lambda: {_pk(r) for r in _records(tmp_path)} >= wanted)
            await wait_for(finished)
    calls = _calls(tmp_path)
    last_parent = max(c["at"] for c in calls if _pk(c["records"][0]).startswith("p"))
    first_child = min(c["at"] for c in calls if _pk(c["records"][0]).startswith("c"))
    assert last_parent < first_child
    keys = [_pk(r) for r in _records(tmp_path)]
    assert keys.count("p4") == 2  # failed once, retried before the child began
    assert [k for k in keys if k.startswith("c")] == [f"c{n}" for n in range(5)]
    child = _checkpoints(tmp_path, "m")[f"shard:{proxy.child_shard}"]
    assert child["seq"] == raw[9]["dynamodb"]["SequenceNumber"]
