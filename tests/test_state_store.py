"""The checkpoint stores' contract (bridge/checkpoints.py) on both stores: the SQLite file
and the shared DynamoDB table (DynamoDB Local); and the ``state:`` setting."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bridge.checkpoints import CheckpointStore, SqliteCheckpointStore
from bridge.config import parse_config
from bridge.errors import CheckpointError, ConfigError
from bridge.state import DynamoDBState, SqliteState, open_store
from connectors.dynamodb_state import DynamoDBStateStore
from tests.services.fixtures import AwsEndpoint, unique_name
from tests.test_leases import state_config

# in UTF-8 byte order: ASCII, then 2-byte (é, ÿ), 3-byte (€, 中), 4-byte (😀) sequences
ORDERED_KEYS = ["A", "Z", "a", "a/b", "aé", "b", "z", "é", "ÿ", "€", "中", "😀"]


@pytest_asyncio.fixture(
    params=["sqlite", pytest.param("dynamodb", marks=pytest.mark.dynamodb)],
)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[CheckpointStore]:
    if request.param == "sqlite":
        sqlite = SqliteCheckpointStore(tmp_path / "checkpoints.sqlite3")
        yield sqlite
        await sqlite.aclose()
        return
    endpoint: AwsEndpoint = request.getfixturevalue("dynamodb_endpoint")
    async with _dynamodb_store(endpoint) as shared:
        yield shared


@contextlib.asynccontextmanager
async def _dynamodb_store(
    endpoint: AwsEndpoint, name: str | None = None
) -> AsyncIterator[DynamoDBStateStore]:
    """A DynamoDB store on a new table (or ``name``), which is deleted afterwards."""
    name = name or unique_name("tb-state")
    store = DynamoDBStateStore(state_config(endpoint, name), region="us-east-1")
    try:
        yield store
    finally:
        await store.aclose()
        async with endpoint.client("dynamodb") as ddb:
            if name in (await ddb.list_tables())["TableNames"]:
                await ddb.delete_table(TableName=name)


# ---------------------------------------------------------------- the contract


async def test_get_items_and_prefixes(store: CheckpointStore) -> None:
    ns, other = store.namespace("m"), store.namespace("m2")
    await ns.write({"shard:1": '{"seq": "5"}', "shard:2": "x", "stream": "s"})
    await other.write({"shard:1": "other"})
    assert await ns.get("shard:1") == '{"seq": "5"}'
    assert await ns.get("missing") is None
    assert await ns.items("shard:") == {"shard:1": '{"seq": "5"}', "shard:2": "x"}
    assert await ns.items() == {"shard:1": '{"seq": "5"}', "shard:2": "x", "stream": "s"}
    assert await other.items() == {"shard:1": "other"}


async def test_page_walks_keys_in_utf8_byte_order(store: CheckpointStore) -> None:
    ns = store.namespace("m")
    await ns.write({k: f"v-{k}" for k in reversed(ORDERED_KEYS)})
    assert sorted(ORDERED_KEYS, key=lambda k: k.encode()) == ORDERED_KEYS
    walked: list[str] = []
    after: str | None = None
    while page := await ns.page(after, 3):
        assert len(page) <= 3
        walked += [k for k, _ in page]
        after = page[-1][0]
    assert walked == ORDERED_KEYS
    assert await ns.page("é", 2) == [("ÿ", "v-ÿ"), ("€", "v-€")]
    assert await ns.page("a", 10, prefix="a") == [("a/b", "v-a/b"), ("aé", "v-aé")]
    assert await ns.page(None, 10, prefix="a") == [("a", "v-a"), ("a/b", "v-a/b"), ("aé", "v-aé")]
    # ``after`` outside the prefix: before all of it, or after all of it
    assert [k for k, _ in await ns.page("Z", 10, prefix="a")] == ["a", "a/b", "aé"]
    assert await ns.page("b", 10, prefix="a") == []
    assert await ns.page(None, 0) == []


async def test_write_puts_and_deletes_together_and_a_put_wins_over_a_delete(
    store: CheckpointStore,
) -> None:
    ns = store.namespace("m")
    await ns.write({"a": "1", "b": "2", "c": "3"})
    await ns.write({"b": "22", "d": "4"}, delete=["a", "b", "nothing"])
    assert await ns.items() == {"b": "22", "c": "3", "d": "4"}


async def test_a_write_that_fails_changes_nothing(store: CheckpointStore) -> None:
    ns = store.namespace("m")
    await ns.write({"keep": "old"})
    puts = {f"k{i:02d}": "v" for i in range(60)}
    puts["keep"] = "new"
    puts["huge"] = "x" * 500_000  # over DynamoDB's item size; SQLite: fails below instead
    if isinstance(store, SqliteCheckpointStore):
        puts["huge"] = None  # type: ignore[assignment]  # NOT NULL constraint
    with pytest.raises(CheckpointError):
        await ns.write(puts, delete=["keep2"])
    assert await ns.items() == {"keep": "old"}


async def test_clear_empties_one_namespace_only(store: CheckpointStore) -> None:
    ns, other = store.namespace("m"), store.namespace("n")
    await ns.write({f"k{i:03d}": "v" for i in range(150)})
    await other.write({"k": "v"})
    await ns.clear()
    assert await ns.items() == {}
    assert await other.items() == {"k": "v"}


# ---------------------------------------------------------------- DynamoDB's own


@pytest.mark.dynamodb
async def test_the_table_is_made_when_missing_even_by_two_bridges_at_once(
    dynamodb_endpoint: AwsEndpoint,
) -> None:
    name = unique_name("tb-state")
    async with (
        _dynamodb_store(dynamodb_endpoint, name) as first,
        _dynamodb_store(dynamodb_endpoint, name) as second,
    ):
        await asyncio.gather(
            first.namespace("m").write({"a": "1"}), second.namespace("m").write({"b": "2"})
        )
        assert await first.namespace("m").items() == {"a": "1", "b": "2"}
        async with dynamodb_endpoint.client("dynamodb") as ddb:
            table = (await ddb.describe_table(TableName=name))["Table"]
    assert table["TableStatus"] == "ACTIVE"
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]} == {
        "namespace": "HASH",
        "key": "RANGE",
    }


@pytest.mark.dynamodb
async def test_a_write_of_more_than_100_keys_is_applied_in_order_and_says_so_on_failure(
    dynamodb_endpoint: AwsEndpoint,
) -> None:
    async with _dynamodb_store(dynamodb_endpoint) as store:
        ns = store.namespace("m")
        await ns.write({f"k{i:03d}": "v" for i in range(250)})  # three transactions
        assert len(await ns.items()) == 250
        puts = {f"n{i:03d}": "v" for i in range(150)}
        puts["n149"] = "x" * 500_000  # the second transaction fails
        with pytest.raises(CheckpointError, match=r"after 1 of the 2 transactions"):
            await ns.write(puts)
        assert len(await ns.items("n")) == 100  # the first one stays: not atomic past 100


@pytest.mark.dynamodb
async def test_a_table_with_other_keys_is_refused_naming_it(
    dynamodb_endpoint: AwsEndpoint, dynamodb_table_factory: Any
) -> None:
    table = await dynamodb_table_factory(stream_view_type=None)  # partition key pk only
    store = DynamoDBStateStore(state_config(dynamodb_endpoint, table.name), region="us-east-1")
    try:
        with pytest.raises(
            CheckpointError, match=rf"DynamoDB state table {table.name} .*'namespace'"
        ):
            await store.namespace("m").get("k")
    finally:
        await store.aclose()


async def test_an_unreachable_table_is_a_checkpoint_error_naming_it() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    state = DynamoDBState(
        type="dynamodb",
        table="tb-nowhere",
        endpoint_url=f"http://127.0.0.1:{port}",
        aws_access_key_id="tbtest",
        aws_secret_access_key="tbtest",
    )
    store = DynamoDBStateStore(state, region="us-east-1")
    try:
        with pytest.raises(
            CheckpointError, match="DynamoDB state table tb-nowhere: cannot connect"
        ):
            await store.namespace("m").items()
    finally:
        await store.aclose()


@pytest.mark.dynamodb
async def test_empty_keys_are_refused_naming_the_table(dynamodb_endpoint: AwsEndpoint) -> None:
    async with _dynamodb_store(dynamodb_endpoint) as store:
        with pytest.raises(CheckpointError, match=f"DynamoDB state table {store.table}: empty key"):
            await store.namespace("m").write({"": "v"})


# ---------------------------------------------------------------- the setting


def test_state_defaults_to_the_sqlite_file_and_takes_a_dynamodb_table(tmp_path: Path) -> None:
    assert parse_config("functions: {}\n", "b.yaml").state == SqliteState()
    config = parse_config(
        "state: {type: dynamodb, table: bridge-state, endpoint_url: 'http://x:8000'}\n",
        "b.yaml",
    )
    assert config.state == DynamoDBState(
        type="dynamodb", table="bridge-state", endpoint_url="http://x:8000"
    )
    assert config.state.lease_duration_seconds == 10.0
    store = open_store(config.state, state_dir=str(tmp_path), region="eu-west-1")
    assert isinstance(store, DynamoDBStateStore) and store.lease_duration == 10.0
    sqlite = open_store(SqliteState(), state_dir=str(tmp_path), region="eu-west-1")
    assert isinstance(sqlite, SqliteCheckpointStore)
    assert sqlite.path == tmp_path / "checkpoints.sqlite3"
    sqlite.close()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("state: {type: redis}", r"state.type: .*'sqlite', 'dynamodb'"),
        ("state: {type: dynamodb}", "state.table: required key is missing"),
        ("state: {type: dynamodb, table: tbl, lease_duration_seconds: 0.1}", "state.lease_dur"),
        ("state: {type: dynamodb, table: tbl, tabel: x}", "did you mean 'table'"),
    ],
)
def test_bad_state_settings_are_config_errors_naming_the_key(text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        parse_config(text + "\n", "b.yaml")
