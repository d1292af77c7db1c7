"""``parallelization_factor`` on the dynamodb_streams source: up to N batches of a shard at
once, the changes of one item in order, and a shard checkpoint that never passes a record
not yet settled. Against DynamoDB Local with a real awslambdaric handler, plus the pure
bookkeeping and the read-ahead bound with a fake stream."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

from bridge.checkpoints import SqliteCheckpointStore
from bridge.config import parse_config
from bridge.connector import ConnectorContext, PartitionControl, Record
from bridge.errors import ConfigError
from connectors.dynamodb_streams import DynamoDBStreamsConnector, DynamoDBStreamsSource
from tests.e2e.harness import RunningBridge, runtime_function, wait_for
from tests.services.fixtures import AwsEndpoint
from tests.support.jsonl import read_jsonl

HANDLER = Path(__file__).parent / "functions" / "ddb_parallel"
FACTOR = 4


def _slot(key: str, factor: int = FACTOR) -> int:
    """The sub-partition of the item with partition key ``key``, computed here as the
    contract says (CRC-32 of the canonical JSON of ``Keys``), not with the bridge's code."""
    keys = json.dumps({"pk": {"S": key}}, sort_keys=True, separators=(",", ":"))
    return zlib.crc32(keys.encode()) % factor


def _keys_in(slot: int, count: int, prefix: str) -> list[str]:
    """``count`` keys of sub-partition ``slot``."""
    out = [f"{prefix}{n}" for n in range(1000) if _slot(f"{prefix}{n}") == slot]
    return out[:count]


def _config(tmp: Path, endpoint: AwsEndpoint, table: str, **options: Any) -> str:
    extra = "".join(f"\n    {k}: {json.dumps(v)}" for k, v in options.items())
    function = runtime_function(HANDLER, {"RECORDER_OUT": f"{tmp}/calls.jsonl"}, concurrency=6)
    return f"""
state_dir: {tmp}/state
retry_backoff: {{initial_seconds: 0.05, max_seconds: 0.2}}
shutdown_timeout_seconds: 5
functions:
{function}
mappings:
  - name: m
    function: recorder
    source:
      type: dynamodb_streams
      table_name: {table}
      starting_position: TRIM_HORIZON
      endpoint_url: {endpoint.url}
      region: {endpoint.region}
      aws_access_key_id: {endpoint.access_key}
      aws_secret_access_key: {endpoint.secret_key}
      poll_interval_seconds: 0.05
      shard_refresh_interval_seconds: 1{extra}
"""


def _calls(tmp: Path) -> list[dict[str, Any]]:
    return read_jsonl(tmp / "calls.jsonl")


def _pk(record: dict[str, Any]) -> str:
    return str(record["dynamodb"]["Keys"]["pk"]["S"])


def _seq(record: dict[str, Any]) -> int:
    return int(record["dynamodb"]["SequenceNumber"])


def _succeeded(tmp: Path) -> list[dict[str, Any]]:
    """Records of the invocations that succeeded, in the order the calls ended."""
    return [r for c in _calls(tmp) if not c["failed"] for r in c["records"]]


def _checkpoint(tmp: Path) -> str | None:
    """The stored sequence number of the table's (single) shard."""
    path = tmp / "state" / "checkpoints.sqlite3"
    if not path.exists():
        return None
    db = sqlite3.connect(path)
    try:
        rows = db.execute(
            "SELECT value FROM checkpoints WHERE namespace='m' AND key LIKE 'shard:%'"
        ).fetchall()
    except sqlite3.OperationalError:  # not created yet
        return None
    finally:
        db.close()
    seqs = [json.loads(v).get("seq") for (v,) in rows]
    return seqs[0] if seqs else None


def _item(key: str, version: int, **flags: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"pk": {"S": key}, "v": {"N": str(version)}}
    for name, value in flags.items():
        item[name] = {"BOOL": value} if isinstance(value, bool) else {"N": str(value)}
    return item


async def _put(endpoint: AwsEndpoint, table: str, items: list[dict[str, Any]]) -> None:
    async with endpoint.client("dynamodb") as ddb:
        for item in items:
            await ddb.put_item(TableName=table, Item=item)


async def _stream(endpoint: AwsEndpoint, stream_arn: str) -> tuple[str, list[dict[str, Any]]]:
    """The shard id of the table's stream (DynamoDB Local has one) and its records."""
    out: list[dict[str, Any]] = []
    async with endpoint.client("dynamodbstreams") as streams:
        description = await streams.describe_stream(StreamArn=stream_arn)
        [shard] = description["StreamDescription"]["Shards"]
        iterator = (
            await streams.get_shard_iterator(
                StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )
        )["ShardIterator"]
        while iterator:
            response = await streams.get_records(ShardIterator=iterator)
            out.extend(response["Records"])
            if not response["Records"]:
                break
            iterator = response.get("NextShardIterator")
    return str(shard["ShardId"]), out


def _most_at_once(calls: list[dict[str, Any]]) -> int:
    events = sorted([(c["start"], 1) for c in calls] + [(c["end"], -1) for c in calls])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


# ---------------------------------------------------------------- the bookkeeping


def test_parallelization_factor_is_refused_where_aws_refuses_it() -> None:
    def config(source: str, factor: int) -> str:
        return (
            "functions: {f: {type: http, url: 'http://127.0.0.1:1'}}\n"
            f"mappings:\n  - {{name: m, function: f, source: {source}, "
            f"parallelization_factor: {factor}}}\n"
        )

    ddb = "{type: dynamodb_streams, table_name: t, starting_position: LATEST}"
    parsed = parse_config(config(ddb, 4), "ok.yaml")
    assert parsed.mappings[0].parallelization_factor == 4
    with pytest.raises(ConfigError) as refused:
        parse_config(config("{type: sqs, queue_url: 'http://x/q'}", 4), "sqs.yaml")
    assert "parallelization_factor" in str(refused.value)
    assert "applies to DynamoDB Streams (and Kinesis) and Kafka only" in str(refused.value)
    with pytest.raises(ConfigError) as too_many:
        parse_config(config(ddb, 11), "range.yaml")
    assert "parallelization_factor" in str(too_many.value)
    assert "less than or equal to 10" in str(too_many.value)


# ---------------------------------------------------------------- partitions


class _Engine:
    """What the connector tells the engine about partitions."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.ended: list[str] = []

    def reading(self, partitions: list[str]) -> None:
        self.started += partitions

    def finished(self, partitions: list[str]) -> None:
        self.ended += partitions

    def room_for(self, partition: str) -> int:
        return 1000

    async def wait_room_for(self, partition: str) -> None:
        return None


async def _first_chunk(
    tmp: Path, endpoint: AwsEndpoint, table: str, factor: int
) -> tuple[list[Record], _Engine]:
    engine = _Engine()
    control = PartitionControl()
    control.bind(lambda _p: asyncio.sleep(0), engine)
    store = SqliteCheckpointStore(tmp / f"state-{factor}.sqlite3")
    source = DynamoDBStreamsSource(
        type="dynamodb_streams",
        table_name=table,
        starting_position="TRIM_HORIZON",
        endpoint_url=endpoint.url,
        region=endpoint.region,
        aws_access_key_id=endpoint.access_key,
        aws_secret_access_key=endpoint.secret_key,
    )
    context = ConnectorContext(
        mapping="m",
        checkpoints=store.namespace("m"),
        partitions=control,
        parallelization_factor=factor,
    )
    connector = DynamoDBStreamsConnector(source, context)
    try:
        await connector.open()
        chunk = await asyncio.wait_for(anext(aiter(connector.read())), 30)
    finally:
        await connector.aclose()
        store.close()
    return list(chunk), engine


async def test_records_go_to_sub_partitions_by_key_and_factor_one_keeps_shard_ids(
    tmp_path: Path, dynamodb_endpoint: AwsEndpoint, dynamodb_table_factory: Any
) -> None:
    table = await dynamodb_table_factory(stream_view_type="KEYS_ONLY")
    keys = [f"k{n}" for n in range(12)]
    await _put(dynamodb_endpoint, table.name, [_item(k, 0) for k in keys])
    shard_id, _ = await _stream(dynamodb_endpoint, str(table.stream_arn))

    plain, engine = await _first_chunk(tmp_path, dynamodb_endpoint, table.name, 1)
    assert {r.partition for r in plain} == {shard_id}
    assert engine.started == [shard_id]

    spread, engine = await _first_chunk(tmp_path, dynamodb_endpoint, table.name, FACTOR)
    assert len(spread) == len(keys)
    for record in spread:
        assert record.partition == f"{shard_id}#{_slot(record.data['dynamodb']['Keys']['pk']['S'])}"
    assert len({r.partition for r in spread}) > 1
    assert engine.started == [f"{shard_id}#{k}" for k in range(FACTOR)]


# ---------------------------------------------------------------- end to end


async def test_batches_of_one_shard_overlap_and_each_item_keeps_its_order(
    tmp_path: Path, dynamodb_endpoint: AwsEndpoint, dynamodb_table_factory: Any
) -> None:
    table = await dynamodb_table_factory(stream_view_type="NEW_IMAGE")
    keys, versions = [f"item-{n}" for n in range(16)], 4
    items = [_item(k, v, sleep=0.05) for v in range(versions) for k in keys]
    await _put(dynamodb_endpoint, table.name, items)
    _, raw = await _stream(dynamodb_endpoint, str(table.stream_arn))
    last = raw[-1]["dynamodb"]["SequenceNumber"]
    text = _config(
        tmp_path, dynamodb_endpoint, table.name, batch_size=4, parallelization_factor=FACTOR
    )
    async with RunningBridge(text):
        await wait_for(lambda: len(_succeeded(tmp_path)) >= len(items), timeout=90)
        await wait_for(lambda: _checkpoint(tmp_path) == last, timeout=30)
    calls = _calls(tmp_path)
    records = _succeeded(tmp_path)
    assert len(records) == len(items) and not any(c["failed"] for c in calls)
    # several batches of the one shard were in flight at once, never more than the factor
    assert 2 <= _most_at_once(calls) <= FACTOR
    for call in calls:
        # a batch is of one sub-partition, in stream order
        assert len({_slot(_pk(r)) for r in call["records"]}) == 1
        assert [_seq(r) for r in call["records"]] == sorted(_seq(r) for r in call["records"])
    for one in calls:  # one batch at a time per sub-partition
        for other in calls:
            if one is not other and _slot(_pk(one["records"][0])) == _slot(
                _pk(other["records"][0])
            ):
                assert one["end"] <= other["start"] or other["end"] <= one["start"]
    per_key: dict[str, list[int]] = {}
    for call in sorted(calls, key=lambda c: c["start"]):
        for r in call["records"]:
            per_key.setdefault(_pk(r), []).append(int(r["dynamodb"]["NewImage"]["v"]["N"]))
    assert per_key == {k: list(range(versions)) for k in keys}


async def test_a_stop_mid_stream_with_one_key_failing_loses_nothing(
    tmp_path: Path, dynamodb_endpoint: AwsEndpoint, dynamodb_table_factory: Any
) -> None:
    """The supervisor stops while batches of several sub-partitions are in flight and one
    key's batches fail: the stored checkpoint is right before that key's record, although
    later records of other keys were delivered; after a restart everything arrives."""
    table = await dynamodb_table_factory(stream_view_type="NEW_IMAGE")
    [blocked] = _keys_in(0, 1, "blocked-")
    [behind] = _keys_in(0, 1, "behind-")  # same sub-partition: waits behind it
    movers = [k for slot in (1, 2, 3) for k in _keys_in(slot, 2, "mover-")]
    items = [_item(k, v) for v in range(2) for k in movers]
    items.append(_item(blocked, 0, blocked=True))
    items += [_item(k, v, sleep=0.15) for v in range(2, 8) for k in [*movers, behind]]
    await _put(dynamodb_endpoint, table.name, items)
    _, raw = await _stream(dynamodb_endpoint, str(table.stream_arn))
    seqs = [int(r["dynamodb"]["SequenceNumber"]) for r in raw]
    blocked_seq = next(_seq(r) for r in raw if _pk(r) == blocked)
    before = [s for s in seqs if s < blocked_seq]
    (tmp_path / "calls.blocked").touch()
    text = _config(
        tmp_path, dynamodb_endpoint, table.name, batch_size=2, parallelization_factor=FACTOR
    )

    def moved_past() -> bool:
        done = {_seq(r) for r in _succeeded(tmp_path)}
        failed = [c for c in _calls(tmp_path) if c["failed"]]
        later = [s for s in done if s > blocked_seq]
        return set(before) <= done and bool(failed) and len(later) >= 6

    async with RunningBridge(text):
        await wait_for(moved_past, timeout=60)
    first_run = _succeeded(tmp_path)
    done = {_seq(r) for r in first_run}
    assert len(done) < len(seqs), "everything was delivered before the stop: nothing tested"
    assert max(done) > blocked_seq  # other keys went past the failing one
    assert behind not in {_pk(r) for r in first_run}  # its sub-partition waited
    unsettled = min(set(seqs) - done)
    assert unsettled == blocked_seq
    stored = _checkpoint(tmp_path)
    assert stored is not None and int(stored) < unsettled
    assert int(stored) == max(before)  # and no further back: it did move

    (tmp_path / "calls.blocked").unlink()
    async with RunningBridge(text):
        await wait_for(lambda: {_seq(r) for r in _succeeded(tmp_path)} == set(seqs), timeout=90)
        last = raw[-1]["dynamodb"]["SequenceNumber"]  # as DynamoDB writes it: zero-padded
        await wait_for(lambda: _checkpoint(tmp_path) == last, timeout=30)
    second_run = _succeeded(tmp_path)[len(first_run) :]
    assert min(_seq(r) for r in second_run) > int(stored)  # resumed after the checkpoint
    assert blocked_seq in {_seq(r) for r in second_run}
    for key in {_pk(r) for r in second_run}:  # in order per item within the run
        mine = [_seq(r) for r in second_run if _pk(r) == key]
        assert mine == sorted(mine) and len(mine) == len(set(mine)), key


async def test_a_poison_key_is_dead_lettered_while_other_keys_move_on(
    tmp_path: Path, dynamodb_endpoint: AwsEndpoint, dynamodb_table_factory: Any
) -> None:
    table = await dynamodb_table_factory(stream_view_type="NEW_IMAGE")
    [poison] = _keys_in(0, 1, "poison-")
    [behind] = _keys_in(0, 1, "behind-")
    movers = [k for slot in (1, 2, 3) for k in _keys_in(slot, 2, "mover-")]
    items = [_item(k, 0) for k in movers]
    items.append(_item(poison, 0, poison=True, sleep=0.3))
    items += [_item(k, v, sleep=0.05) for v in range(1, 6) for k in [*movers, behind]]
    await _put(dynamodb_endpoint, table.name, items)
    shard_id, raw = await _stream(dynamodb_endpoint, str(table.stream_arn))
    seqs = [int(r["dynamodb"]["SequenceNumber"]) for r in raw]
    [poison_raw] = [r for r in raw if _pk(r) == poison]
    poison_seq = _seq(poison_raw)
    failures = tmp_path / "failures.jsonl"
    text = _config(
        tmp_path,
        dynamodb_endpoint,
        table.name,
        batch_size=1,
        parallelization_factor=FACTOR,
        maximum_retry_attempts=2,
        on_failure=f"file://{failures}",
    )
    samples: list[tuple[float, int | None, bool]] = []  # (when, checkpoint, dead-lettered)

    def settled() -> bool:
        stored = _checkpoint(tmp_path)  # first the checkpoint, then the failure record
        dead = failures.exists() and failures.read_text().strip() != ""
        samples.append((time.time(), None if stored is None else int(stored), dead))
        return stored == raw[-1]["dynamodb"]["SequenceNumber"]

    async with RunningBridge(text):
        await wait_for(settled, timeout=90)
    dead_at = min(when for when, _, dead in samples if dead)
    while_retried = [stored for when, stored, dead in samples if not dead]
    assert all(s is None or s < poison_seq for s in while_retried)
    assert max(s or 0 for s in while_retried) == max(s for s in seqs if s < poison_seq)
    calls = _calls(tmp_path)
    passed = [c for c in calls if not c["failed"] and _seq(c["records"][0]) > poison_seq]
    assert min(c["end"] for c in passed) < dead_at  # others moved on meanwhile
    attempts = [c for c in calls if _pk(c["records"][0]) == poison]
    assert len(attempts) == 3 and all(c["failed"] for c in attempts)
    behind_first = min(c["start"] for c in calls if _pk(c["records"][0]) == behind)
    assert behind_first >= max(c["end"] for c in attempts)  # its sub-partition waited
    assert {_seq(r) for r in _succeeded(tmp_path)} == set(seqs) - {poison_seq}
    [doc] = [json.loads(line) for line in failures.read_text().splitlines()]
    info = doc["DDBStreamBatchInfo"]
    assert info["shardId"] == shard_id  # the shard, not its sub-partition
    written = poison_raw["dynamodb"]["SequenceNumber"]
    assert info["startSequenceNumber"] == info["endSequenceNumber"] == written
    assert info["batchSize"] == 1
    assert doc["requestContext"]["condition"] == "RetryAttemptsExhausted"


# ---------------------------------------------------------------- read-ahead


class _OneShardApi:
    """A stream of one open shard with an endless backlog. Its first record is of key
    ``stuck``; every other record has a key of another sub-partition."""

    shard = "shardId-00001"

    def __init__(self, stuck: str, others: list[str]) -> None:
        self.stuck, self.others = stuck, others
        self.read = 0

    async def __aenter__(self) -> _OneShardApi:
        return self

    async def __aexit__(self, *exc: object) -> None: ...

    async def describe_stream(self, **_: Any) -> dict[str, Any]:
        shard = {"ShardId": self.shard, "SequenceNumberRange": {"StartingSequenceNumber": "1"}}
        return {"StreamDescription": {"Shards": [shard]}}

    async def get_shard_iterator(self, **kwargs: Any) -> dict[str, Any]:
        return {"ShardIterator": kwargs.get("SequenceNumber", "0")}

    async def get_records(self, *, ShardIterator: str, Limit: int) -> dict[str, Any]:
        first = int(ShardIterator) + 1
        records = []
        for seq in range(first, first + Limit):
            key = self.stuck if seq == 1 else self.others[seq % len(self.others)]
            records.append(
                {
                    "eventID": str(seq),
                    "eventName": "MODIFY",
                    "dynamodb": {
                        "Keys": {"pk": {"S": key}},
                        "SequenceNumber": str(seq),
                        "SizeBytes": 10,
                        "StreamViewType": "KEYS_ONLY",
                    },
                }
            )
        self.read += len(records)
        return {"Records": records, "NextShardIterator": str(first + Limit - 1)}


class _FailsOnKey:
    """A function that fails every batch holding key ``key`` and takes the others."""

    name = "fails-on-key"

    def __init__(self, key: str) -> None:
        self.key = key

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    async def invoke(self, payload: bytes, *, request_id: str, timeout: float | None) -> bytes:
        from bridge.errors import FunctionError

        await asyncio.sleep(0.005)
        if any(_pk(r) == self.key for r in json.loads(payload)["Records"]):
            raise FunctionError("fails", error_type="Boom")
        return b"{}"


class _Sink:
    uri = "memory://"

    async def write(self, documents: Any) -> None: ...

    async def aclose(self) -> None: ...


async def test_a_key_that_never_settles_stops_its_shard_at_factor_shares(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its sub-partition holds one record and never fills its share, while the other
    sub-partitions are delivered and committed: the shard's checkpoint cannot pass it, so
    the shard is read no further than ``factor`` shares past it."""
    from bridge.pipeline import Pipeline, PipelineOptions
    from bridge.retry import RetryPolicy

    [stuck] = _keys_in(0, 1, "stuck-")
    api = _OneShardApi(stuck, [k for s in (1, 2, 3) for k in _keys_in(s, 3, "other-")])
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
    control = PartitionControl()
    context = ConnectorContext(
        mapping="stuck",
        checkpoints=store.namespace("stuck"),
        partitions=control,
        parallelization_factor=FACTOR,
    )
    connector = DynamoDBStreamsConnector(source, context)
    options = PipelineOptions(
        batch_size=10,
        window=0,
        maximum_concurrency=1000,
        policy=RetryPolicy(backoff_initial_seconds=0.01, backoff_max_seconds=0.02),
        shutdown_timeout=1,
    )
    pipeline = Pipeline(
        mapping="stuck",
        connector=connector,
        target=_FailsOnKey(stuck),  # type: ignore[arg-type]
        destination=_Sink(),  # type: ignore[arg-type]
        options=options,
        filters=None,
        function_arn="arn:aws:lambda:us-east-1:000000000000:function:f",
        partitions=control,
    )
    run = asyncio.create_task(pipeline.run())
    try:
        await wait_for(lambda: api.read >= 500, timeout=30)
        await asyncio.sleep(2.0)  # time for a reader that does not stop to read on
        # the read-ahead of 1,000 over 4 sub-partitions: a share is 250; 4 shares
        share = max(4 * options.batch_size, options.record_limit // FACTOR)
        assert api.read <= FACTOR * share
        assert pipeline.stats.read == api.read
        # the others were delivered and committed by the engine, not the shard
        assert pipeline.lanes.count < api.read // 2
        assert await store.namespace("stuck").get(f"shard:{_OneShardApi.shard}") is None
    finally:
        pipeline.stop()
        await asyncio.wait_for(run, 30)
        store.close()
