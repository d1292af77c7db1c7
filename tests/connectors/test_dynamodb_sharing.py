"""Several bridges on one DynamoDB Streams mapping, through leases in a shared state
store (``state: {type: dynamodb}``; connectors/dynamodb_streams/sharing.py).

The end-to-end test: three bridges share a stream, one is killed mid-run, one stopped
cleanly. DynamoDB Local gives a table's stream one shard, so the stream is read through
``StreamsProxy.fan_out``: it shows six open shards, each carrying the items whose keys
hash to it, with the real sequence numbers (as DynamoDB spreads a table over shards).
The bridges are real ``trigger-bridge run`` processes, each with its own state_dir and
its own recorder function (so every delivery is known by the bridge that made it).

Then, closer in: a connector whose lease is stolen stops reading and committing that
shard; and a child shard's lease is taken only once another bridge finished its parent."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from bridge.checkpoints import SqliteCheckpointStore
from bridge.connector import ConnectorContext, PartitionControl
from bridge.leases import Leases, SqliteLeaseTable, leases_for
from connectors.dynamodb_state import DynamoDBStateStore
from connectors.dynamodb_streams import DynamoDBStreamsConnector, DynamoDBStreamsSource
from connectors.dynamodb_streams.shards import Shard
from connectors.dynamodb_streams.sharing import ShardLeases
from tests.e2e.harness import runtime_function, wait_for
from tests.services.fixtures import AwsEndpoint, unique_name
from tests.support.jsonl import read_jsonl
from tests.support.streams_proxy import StreamsProxy
from tests.test_leases import state_config

REPO = Path(__file__).resolve().parents[2]
HANDLER = REPO / "tests" / "e2e" / "functions" / "ddb_recorder"
LEASE = 2.0  # seconds: lease_duration_seconds of the bridges
ROUND = LEASE / 3  # how often a bridge renews and balances
SHARDS = 6
BATCH = 5
KEYS_PER_SHARD = 4
VERSIONS = 16
KILL_AT = 5  # the version being delivered when one bridge is killed
STOP_AT = 12  # ... and when another one is stopped cleanly
MAPPING = "shared"


def _config(
    folder: Path, stream: AwsEndpoint, state: AwsEndpoint, table: str, stream_arn: str
) -> str:
    recorder = runtime_function(
        HANDLER, {"RECORDER_OUT": f"{folder}/calls.jsonl"}, concurrency=SHARDS
    )
    return f"""
state_dir: {folder}/state
admin: {{port: 0}}
retry_backoff: {{initial_seconds: 0.05, max_seconds: 0.2}}
shutdown_timeout_seconds: 5
state:
  type: dynamodb
  table: {table}
  endpoint_url: {state.url}
  region: {state.region}
  aws_access_key_id: {state.access_key}
  aws_secret_access_key: {state.secret_key}
  lease_duration_seconds: {LEASE}
functions:
{recorder}
mappings:
  - name: {MAPPING}
    function: recorder
    batch_size: {BATCH}
    source:
      type: dynamodb_streams
      stream_arn: {json.dumps(stream_arn)}
      starting_position: TRIM_HORIZON
      endpoint_url: {stream.url}
      region: {stream.region}
      aws_access_key_id: {stream.access_key}
      aws_secret_access_key: {stream.secret_key}
      poll_interval_seconds: 0.1
      max_idle_poll_interval_seconds: 0.5
      shard_refresh_interval_seconds: 1
"""


class Bridge:
    """One ``trigger-bridge run`` process and what its function recorded."""

    def __init__(self, folder: Path, config: str) -> None:
        folder.mkdir()
        self.folder = folder
        (folder / "bridge.yaml").write_text(config)
        cmd = [sys.executable, "-m", "bridge", "run", "--config", str(folder / "bridge.yaml")]
        with (folder / "bridge.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [*cmd, "--no-reload"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT
            )

    def owns(self, owner: str | None) -> bool:
        """Whether a lease's owner id is this process's (``host:pid:random``)."""
        return owner is not None and owner.split(":")[1] == str(self.proc.pid)

    def records(self) -> list[dict[str, Any]]:
        path = self.folder / "calls.jsonl"
        if not path.exists():
            return []
        calls = read_jsonl(path)
        return [r for call in calls for r in call["records"]]

    def log_tail(self) -> str:
        return (self.folder / "bridge.log").read_text()[-3000:]


def _item(record: dict[str, Any]) -> tuple[str, int]:
    image = record["dynamodb"]["NewImage"]
    return image["pk"]["S"], int(image["v"]["N"])


def _seq(record: dict[str, Any]) -> int:
    return int(record["dynamodb"]["SequenceNumber"])


async def _namespace(endpoint: AwsEndpoint, table: str, namespace: str) -> list[dict[str, Any]]:
    async with endpoint.client("dynamodb") as ddb:
        if table not in (await ddb.list_tables())["TableNames"]:
            return []  # the bridges have not made it yet
        answer = await ddb.query(
            TableName=table,
            KeyConditionExpression="#n = :n",
            ExpressionAttributeNames={"#n": "namespace"},
            ExpressionAttributeValues={":n": {"S": namespace}},
            ConsistentRead=True,
        )
    items: list[dict[str, Any]] = answer["Items"]
    return items


async def _leases(endpoint: AwsEndpoint, table: str) -> dict[str, str | None]:
    items = await _namespace(endpoint, table, f"lease:{MAPPING}")
    return {i["key"]["S"]: i["owner"]["S"] if "owner" in i else None for i in items}


async def _checkpoints(endpoint: AwsEndpoint, table: str) -> dict[str, int]:
    items = await _namespace(endpoint, table, MAPPING)
    out = {}
    for item in items:
        if item["key"]["S"].startswith("shard:"):
            seq = json.loads(item["value"]["S"]).get("seq")
            out[item["key"]["S"].removeprefix("shard:")] = int(seq or 0)
    return out


@contextlib.asynccontextmanager
async def _bridges(tmp: Path, make_config: Any) -> AsyncIterator[list[Bridge]]:
    bridges = [Bridge(tmp / f"b{i}", make_config(tmp / f"b{i}")) for i in range(3)]
    try:
        yield bridges
    except BaseException:
        for i, b in enumerate(bridges):
            print(f"--- bridge {i} (pid {b.proc.pid}) log tail ---\n{b.log_tail()}")
        raise
    finally:
        for b in bridges:
            if b.proc.poll() is None:
                b.proc.kill()
                b.proc.wait(timeout=10)


async def test_three_bridges_share_a_stream_and_take_over_the_shards_of_one_killed(
    tmp_path: Path, dynamodb_endpoint: AwsEndpoint, dynamodb_table_factory: Any
) -> None:
    source = await dynamodb_table_factory(stream_view_type="NEW_IMAGE")
    state_table = unique_name("tb-state")
    async with StreamsProxy(dynamodb_endpoint.url) as proxy:
        proxy.fan_out(SHARDS)
        keys: dict[int, list[str]] = defaultdict(list)  # KEYS_PER_SHARD keys on each shard
        for n in range(1000):
            shard = proxy.fan_index({"pk": {"S": f"k{n:03d}"}})
            if len(keys[shard]) < KEYS_PER_SHARD:
                keys[shard].append(f"k{n:03d}")
        names = sorted(k for ks in keys.values() for k in ks)
        assert len(names) == SHARDS * KEYS_PER_SHARD
        stream = replace(dynamodb_endpoint, url=proxy.url)

        def make_config(folder: Path) -> str:
            return _config(folder, stream, dynamodb_endpoint, state_table, str(source.stream_arn))

        async def leases() -> dict[str, str | None]:
            return await _leases(dynamodb_endpoint, state_table)

        try:
            async with _bridges(tmp_path, make_config) as bridges:
                await _check(proxy, bridges, names, leases, dynamodb_endpoint, state_table, source)
        finally:
            async with dynamodb_endpoint.client("dynamodb") as ddb:
                with contextlib.suppress(ddb.exceptions.ResourceNotFoundException):
                    await ddb.delete_table(TableName=state_table)


async def _check(
    proxy: StreamsProxy,
    bridges: list[Bridge],
    names: list[str],
    leases: Any,
    endpoint: AwsEndpoint,
    state_table: str,
    source: Any,
) -> None:
    victim, survivors = bridges[0], bridges[1:]

    # 1. the three split the six shards evenly before anything is written
    async def balanced() -> bool:
        owners = await leases()
        per_bridge = [sum(b.owns(o) for o in owners.values()) for b in bridges]
        return len(owners) == SHARDS and per_bridge == [2, 2, 2]

    await _wait_async(balanced, 90, "the three bridges hold two shards each")
    # a bridge whose lease was stolen reads on until its next renewal tells it: let
    # that round pass, so that nothing written below is read by two bridges at once
    await asyncio.sleep(2 * ROUND)
    settled = await leases()
    assert await balanced()

    # 2. writes while the three run; the victim is killed mid-run; writes go on
    async def write() -> None:
        async with endpoint.client("dynamodb") as ddb:
            for v in range(VERSIONS):
                for name in names:
                    pause = "0.3" if v == KILL_AT else "0.02"  # the kill lands in these
                    item = {"pk": {"S": name}, "v": {"N": str(v)}, "sleep": {"N": pause}}
                    await ddb.put_item(TableName=source.name, Item=item)
                await asyncio.sleep(0.8)

    writer = asyncio.create_task(write())
    # the recorder writes a batch down as its invocation starts, then sleeps 0.3 s a
    # record of version KILL_AT: killed now, the victim has a batch in flight
    await wait_for(
        lambda: any(_item(r)[1] == KILL_AT for r in victim.records()),
        60,
        f"the victim delivering version {KILL_AT}",
    )
    before = await leases()
    assert before == settled  # no lease changed hands while the three ran
    victim_shards = {shard for shard, owner in before.items() if victim.owns(owner)}
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(timeout=10)
    killed_at = time.monotonic()
    await asyncio.sleep(0.5)  # a request the victim sent just before may still land
    at_kill = await _checkpoints(endpoint, state_table)

    # 3. the survivors take the victim's shards over, within a lease and a few rounds
    async def taken_over() -> bool:
        owners = await leases()
        return all(any(b.owns(owners.get(s)) for b in survivors) for s in victim_shards)

    await _wait_async(taken_over, 30, "the victim's shards taken over")
    took = time.monotonic() - killed_at
    # expiry: the victim's last renewal (up to a round before the kill) is seen up to a
    # round later, then LEASE of silence, then the next round takes it; two survivors
    # racing for one lease cost the loser one more round
    assert took <= LEASE + 3 * ROUND + 1.0, f"takeover took {took:.1f}s"
    owners = await leases()
    assert sorted(sum(b.owns(o) for o in owners.values()) for b in survivors) == [3, 3]

    # 4. a clean stop, also mid-run, gives the leases back at once, after the last
    # commits: the last bridge goes on right after them (no duplicates from it)
    leaving, last = survivors
    await wait_for(
        lambda: any(_item(r)[1] == STOP_AT for r in leaving.records()),
        60,
        f"the second bridge delivering version {STOP_AT}",
    )
    leaving.proc.send_signal(signal.SIGTERM)
    assert leaving.proc.wait(timeout=30) == 0
    stopped_at = time.monotonic()

    async def all_with_the_last() -> bool:
        owners = await leases()
        return len(owners) == SHARDS and all(last.owns(o) for o in owners.values())

    await _wait_async(all_with_the_last, 10, "the stopped bridge's shards taken")
    assert time.monotonic() - stopped_at < LEASE  # released, not left to expire

    # 5. everything written is delivered
    await writer
    wanted = {(n, v) for n in names for v in range(VERSIONS)}

    def delivered() -> set[tuple[str, int]]:
        return {_item(r) for b in bridges for r in b.records()}

    await wait_for(lambda: delivered() >= wanted, 90, "every item delivered")
    await asyncio.sleep(1.0)  # nothing more in flight
    last.proc.send_signal(signal.SIGTERM)
    assert last.proc.wait(timeout=30) == 0
    assert set((await leases()).values()) == {None}  # all released

    _check_deliveries(proxy, bridges, victim, victim_shards, at_kill, wanted)


def _check_deliveries(
    proxy: StreamsProxy,
    bridges: list[Bridge],
    victim: Bridge,
    victim_shards: set[str],
    at_kill: dict[str, int],
    wanted: set[tuple[str, int]],
) -> None:
    def shard_of(record: dict[str, Any]) -> str:
        return proxy.fan_shards[proxy.fan_index(record["dynamodb"]["Keys"])]

    every = [r for b in bridges for r in b.records()]
    counts = Counter(_item(r) for r in every)
    assert set(counts) == wanted  # at least once each
    # per item, each bridge delivered its versions in order, none twice
    for b in bridges:
        versions: dict[str, list[int]] = defaultdict(list)
        for r in b.records():
            name, v = _item(r)
            versions[name].append(v)
        assert all(vs == sorted(set(vs)) for vs in versions.values())
    # the duplicates are exactly what the victim delivered after its shards' last
    # checkpoints: the new owners started right after those (AFTER_SEQUENCE_NUMBER)
    unsettled = {
        _item(r)
        for r in victim.records()
        if shard_of(r) in victim_shards and _seq(r) > at_kill.get(shard_of(r), 0)
    }
    duplicates = {item for item, n in counts.items() if n > 1}
    assert duplicates == unsettled
    assert {v for _, v in duplicates} == {KILL_AT}  # the batches in flight at the kill
    assert all(counts[item] == 2 for item in duplicates)
    # bound: per shard, the batch in flight and the one whose commit was on its way
    assert len(duplicates) <= 2 * BATCH * len(victim_shards)
    for shard in victim_shards:
        later = sorted(
            _seq(r) for b in bridges if b is not victim for r in b.records() if shard_of(r) == shard
        )
        after = [
            s
            for s in sorted({_seq(r) for r in every if shard_of(r) == shard})
            if s > at_kill.get(shard, 0)
        ]
        assert later[0] == after[0]  # the new owner began right after the checkpoint


async def _wait_async(predicate: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not in {timeout}s: {what}")
        await asyncio.sleep(0.1)


async def test_a_bridge_that_lost_a_shard_neither_reads_nor_commits_it_any_more(
    dynamodb_endpoint: AwsEndpoint, dynamodb_table_factory: Any
) -> None:
    """The lease is stolen behind the connector's back (as another bridge does): at its
    next renewal it revokes the shard's partition, stops reading it, and refuses to
    commit it; on a clean stop it releases what it still holds and only that."""
    table = await dynamodb_table_factory(stream_view_type="KEYS_ONLY")
    state_table = unique_name("tb-state")
    store = DynamoDBStateStore(
        state_config(dynamodb_endpoint, state_table, duration=1.0), region="us-east-1"
    )
    revoked: list[list[str]] = []
    partitions = PartitionControl()

    async def revoke(names: Any) -> None:
        revoked.append(sorted(names))

    partitions.bind(revoke)
    context = ConnectorContext(
        mapping="m",
        checkpoints=store.namespace("m"),
        partitions=partitions,
        leases=leases_for(store, "m"),
    )
    source = DynamoDBStreamsSource(
        type="dynamodb_streams",
        stream_arn=table.stream_arn,
        starting_position="TRIM_HORIZON",
        endpoint_url=dynamodb_endpoint.url,
        region=dynamodb_endpoint.region,
        aws_access_key_id=dynamodb_endpoint.access_key,
        aws_secret_access_key=dynamodb_endpoint.secret_key,
        poll_interval_seconds=0.05,
        max_idle_poll_interval_seconds=0.1,
    )
    connector = DynamoDBStreamsConnector(source, context)
    got: list[Any] = []

    async def consume() -> None:
        async for chunk in connector.read():
            got.extend(chunk)

    for n in range(3):
        async with dynamodb_endpoint.client("dynamodb") as ddb:
            await ddb.put_item(TableName=table.name, Item={"pk": {"S": f"a{n}"}})
    await connector.open()
    reader = asyncio.create_task(consume())
    thief: asyncio.Task[None] | None = None
    try:
        await wait_for(lambda: len(got) == 3, 30, "the shard read")
        shard = got[0].partition
        await connector.commit(got[:1])
        namespace = store.namespace("m")
        first = await namespace.get(f"shard:{shard}")
        assert first is not None and json.loads(first)["seq"] == got[0].position
        leases = store.lease_table("m")
        [lease] = await leases.list()
        stolen = await leases.take(lease, "thief:1:x")
        assert stolen is not None

        async def thief_lives_on() -> None:  # renews, so the lease never expires
            nonlocal stolen
            while stolen is not None:
                await asyncio.sleep(0.2)
                stolen = await leases.renew(stolen)

        thief = asyncio.create_task(thief_lives_on())
        await wait_for(lambda: revoked == [[shard]], 10, "the shard revoked")
        await connector.commit(got)  # settled after the loss: not its to commit
        assert await namespace.get(f"shard:{shard}") == first
        async with dynamodb_endpoint.client("dynamodb") as ddb:
            await ddb.put_item(TableName=table.name, Item={"pk": {"S": "b0"}})
        await asyncio.sleep(1.0)
        assert len(got) == 3  # not read any more
        assert not thief.done()  # its renewals all went through
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await connector.aclose()
        if thief is not None:
            thief.cancel()
        remaining = await store.lease_table("m").list()
        await store.aclose()
        async with dynamodb_endpoint.client("dynamodb") as ddb:
            await ddb.delete_table(TableName=state_table)
    assert [(lease.owner, lease.key) for lease in remaining] == [("thief:1:x", shard)]


async def test_a_child_shard_is_taken_only_once_its_parent_is_finished_by_any_bridge(
    tmp_path: Path,
) -> None:
    """Lineage across bridges (sharing.py, on SQLite tables): the child's lease stays
    untaken while its parent is read elsewhere, and is taken in the first round after
    another bridge wrote the parent's ``done`` checkpoint."""
    path = tmp_path / "checkpoints.sqlite3"
    store = SqliteCheckpointStore(path)
    checkpoints = store.namespace("m")
    other, mine = SqliteLeaseTable(path, "m"), SqliteLeaseTable(path, "m")
    elsewhere = Leases(other, owner="elsewhere", duration=10)
    await elsewhere.balance(["parent"])  # another bridge reads the parent
    shards = {"parent": Shard("parent", None), "child": Shard("child", "parent")}
    started: list[str] = []

    def start(shard: Shard) -> None:
        started.append(shard.shard_id)
        shard.task = asyncio.ensure_future(asyncio.sleep(0))

    async def stop(shard: Shard) -> None:
        raise AssertionError("nothing is lost here")

    sharing = ShardLeases(
        Leases(mine, owner="me", duration=10),
        shards=shards,
        checkpoints=checkpoints,
        what="test stream",
        start=start,
        stop=stop,
        spawn=lambda work, name: asyncio.ensure_future(work),
    )
    try:
        await sharing.round()
        await sharing.round()
        assert started == [] and sharing.leases.held == []  # the child waits
        assert {lease.key: lease.owner for lease in await mine.list()} == {
            "parent": "elsewhere",
            "child": None,
        }
        await checkpoints.write({"shard:parent": json.dumps({"seq": "7", "done": True})})
        await checkpoints.write({"shard:child": json.dumps({"seq": "9"})})
        await elsewhere.finish("parent")
        await sharing.round()
        assert shards["parent"].finished.is_set()
        assert started == ["child"]
        assert shards["child"].checkpoint == "9"  # goes on after what was committed
    finally:
        for task in [s.task for s in shards.values() if s.task is not None]:
            await task
        other.close()
        mine.close()
        store.close()


# ---------------------------------------------------------------- workers of one bridge


def _local_leases(state: Path) -> dict[str, str | None]:
    """The mapping's shard leases in the SQLite file of one bridge's state_dir."""
    import sqlite3

    path = state / "checkpoints.sqlite3"
    if not path.exists():
        return {}
    with contextlib.closing(sqlite3.connect(path, timeout=5)) as db:
        try:
            rows = db.execute("SELECT key, owner FROM leases WHERE grp=?", (MAPPING,)).fetchall()
        except sqlite3.OperationalError:
            return {}  # no lease table yet
    return dict(rows)


async def test_parallelism_spreads_a_streams_shards_over_the_workers_of_one_bridge(
    tmp_path: Path, dynamodb_endpoint: AwsEndpoint, dynamodb_table_factory: Any
) -> None:
    """``parallelism: 2``: two members of one mapping in two worker processes share the
    shards by leases in the bridge's own SQLite file; a killed worker is started again
    and the shards it held are read on from their checkpoints (by it or the other)."""
    import os

    from tests.support.daemon import daemon_status, http_recorder, start_daemon, wait_daemon_up

    shards = 4
    source = await dynamodb_table_factory(stream_view_type="NEW_IMAGE")
    async with (
        StreamsProxy(dynamodb_endpoint.url) as proxy,
        http_recorder(delay=0.01) as sink,
    ):
        proxy.fan_out(shards)
        stream = replace(dynamodb_endpoint, url=proxy.url)
        names = [f"k{n:02d}" for n in range(12)]
        config = tmp_path / "bridge.yaml"
        config.write_text(
            f"""
state_dir: {tmp_path}/state
admin: {{port: 0}}
workers: 2
shutdown_timeout_seconds: 5
functions:
  sink: {{type: http, url: "{sink.url}", concurrency: 4}}
mappings:
  - name: {MAPPING}
    function: sink
    parallelism: 2
    batch_size: {BATCH}
    source:
      type: dynamodb_streams
      stream_arn: {json.dumps(str(source.stream_arn))}
      starting_position: TRIM_HORIZON
      endpoint_url: {stream.url}
      region: {stream.region}
      aws_access_key_id: {stream.access_key}
      aws_secret_access_key: {stream.secret_key}
      poll_interval_seconds: 0.1
      max_idle_poll_interval_seconds: 0.5
      shard_refresh_interval_seconds: 1
"""
        )
        state = tmp_path / "state"
        daemon = start_daemon(config, tmp_path / "bridge.log")
        try:
            doc = await wait_daemon_up(state, workers=2)
            pids = {str(p) for p in doc["workers"].values()}

            def split() -> list[int]:
                owners = _local_leases(state).values()
                return sorted(sum(1 for o in owners if o and o.split(":")[1] == p) for p in pids)

            await wait_for(lambda: split() == [2, 2], 60, "the two members hold two shards each")

            async def write(versions: range) -> None:
                async with dynamodb_endpoint.client("dynamodb") as ddb:
                    for v in versions:
                        for name in names:
                            item = {"pk": {"S": name}, "v": {"N": str(v)}}
                            await ddb.put_item(TableName=source.name, Item=item)

            def delivered() -> list[tuple[str, int]]:
                return [_item(r) for e in sink.events for r in e.get("Records", [])]

            await write(range(0, 5))
            await wait_for(lambda: len(set(delivered())) == 5 * len(names), 60, "first writes")
            os.kill(int(doc["workers"]["0"]), signal.SIGKILL)
            await write(range(5, 10))
            wanted = {(n, v) for n in names for v in range(10)}
            await wait_for(lambda: set(delivered()) >= wanted, 90, "every version after the kill")
            doc = await daemon_status(state)
            assert str(doc["workers"]["0"]) not in pids  # started again
        finally:
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=60) == 0
        # per item, versions arrive in order (of first delivery; a kill may repeat some)
        versions: dict[str, list[int]] = defaultdict(list)
        for name, v in delivered():
            versions[name].append(v)
        for name, vs in versions.items():
            first = list(dict.fromkeys(vs))
            assert first == sorted(first), name
        assert set(_local_leases(state).values()) == {None}  # released on the clean stop


# ---------------------------------------------------------------- whole mappings


async def test_a_schedule_fires_on_one_bridge_of_three_and_moves_when_that_one_dies(
    tmp_path: Path, dynamodb_endpoint: AwsEndpoint
) -> None:
    """A ``singleton`` source (a schedule) with shared state runs on the one bridge
    holding its lease; the others are on standby. That bridge killed (its worker too),
    another takes the schedule over after the lease, from the shared checkpoints: with
    ``missed: all`` no second is skipped, and each fires on one bridge only."""
    import os

    from tests.support.daemon import daemon_status, http_recorder, start_daemon

    state_table = unique_name("tb-state")
    async with http_recorder() as sink:

        def config(folder: Path) -> str:
            folder.mkdir()
            return f"""
state_dir: {folder}/state
admin: {{port: 0}}
shutdown_timeout_seconds: 5
state:
  type: dynamodb
  table: {state_table}
  endpoint_url: {dynamodb_endpoint.url}
  region: {dynamodb_endpoint.region}
  aws_access_key_id: {dynamodb_endpoint.access_key}
  aws_secret_access_key: {dynamodb_endpoint.secret_key}
  lease_duration_seconds: {LEASE}
functions:
  sink: {{type: http, url: "{sink.url}"}}
mappings:
  - name: tick
    function: sink
    source: {{type: schedule, expression: "rate(1 second)", missed: all}}
"""

        folders = [tmp_path / f"b{i}" for i in range(3)]
        daemons = []
        for folder in folders:
            (tmp_path / f"{folder.name}.yaml").write_text(config(folder))
            daemons.append(start_daemon(tmp_path / f"{folder.name}.yaml", folder / "bridge.log"))

        async def states() -> list[str]:
            out = []
            for folder in folders:
                try:
                    doc = await daemon_status(folder / "state")
                except (AssertionError, OSError):
                    out.append("down")
                    continue
                out.append(next(m["state"] for m in doc["mappings"] if m["mapping"] == "tick"))
            return out

        def times() -> list[str]:
            return [e["time"] for e in sink.events]

        try:

            async def one_runs() -> bool:
                found = await states()
                return sorted(found) == ["running", "standby", "standby"]

            await _wait_async(one_runs, 60, "one bridge runs the schedule, two stand by")
            await wait_for(lambda: len(times()) >= 3, 30, "three firings")
            holder = (await states()).index("running")
            doc = await daemon_status(folders[holder] / "state")
            for pid in [*(int(p) for p in doc["workers"].values()), daemons[holder].pid]:
                os.kill(pid, signal.SIGKILL)  # its worker first: no clean stop, no release
            daemons[holder].wait(timeout=10)
            killed_at, fired = time.monotonic(), len(times())

            async def taken_over() -> bool:
                found = await states()
                return found.count("running") == 1 and found[holder] == "down"

            await _wait_async(taken_over, 30, "another bridge runs the schedule")
            await wait_for(lambda: len(times()) >= fired + 3, 30, "firings after the takeover")
            assert time.monotonic() - killed_at < LEASE + 3 * ROUND + 3
        finally:
            for d in daemons:
                if d.poll() is None:
                    d.send_signal(signal.SIGTERM)
            codes = [d.wait(timeout=60) for d in daemons]
            async with dynamodb_endpoint.client("dynamodb") as ddb:
                with contextlib.suppress(ddb.exceptions.ResourceNotFoundException):
                    await ddb.delete_table(TableName=state_table)
        assert [c for i, c in enumerate(codes) if i != holder] == [0, 0]
        seen = Counter(times())
        stamps = sorted(seen)
        # every second from the first firing to the last, none skipped over the takeover
        from datetime import datetime

        def epoch(stamp: str) -> int:
            return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())

        assert [epoch(s) for s in stamps] == list(range(epoch(stamps[0]), epoch(stamps[-1]) + 1))
        # again only what the killed bridge had fired and not yet settled
        assert sum(n - 1 for n in seen.values()) <= 2
