"""Leases (bridge/leases.py): taking, renewing, losing, stealing and expiring, on both
tables (SQLite, and DynamoDB Local through the DynamoDB state store), with fake clocks:
the lease logic is pure, only the conditional writes are the tables'."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bridge.errors import CheckpointError
from bridge.leases import (
    LOCAL_LEASE_SECONDS,
    Lease,
    Leases,
    LeaseTable,
    SqliteLeaseTable,
    leases_for,
    new_owner_id,
)
from bridge.state import DynamoDBState
from tests.services.fixtures import AwsEndpoint, unique_name

DURATION = 10.0


class Clock:
    """A fake monotonic clock; each bridge has its own, at any offset (no shared time)."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def state_config(endpoint: AwsEndpoint, table: str, duration: float = DURATION) -> DynamoDBState:
    return DynamoDBState(
        type="dynamodb",
        table=table,
        endpoint_url=endpoint.url,
        region=endpoint.region,
        aws_access_key_id=endpoint.access_key,
        aws_secret_access_key=endpoint.secret_key,
        lease_duration_seconds=duration,
    )


@pytest_asyncio.fixture(
    params=["sqlite", pytest.param("dynamodb", marks=pytest.mark.dynamodb)],
)
async def tables(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """``make()`` -> a new ``LeaseTable`` handle on one shared group (one per bridge)."""
    group = unique_name("group")
    if request.param == "sqlite":
        opened: list[SqliteLeaseTable] = []

        def make_sqlite() -> LeaseTable:
            opened.append(SqliteLeaseTable(tmp_path / "checkpoints.sqlite3", group))
            return opened[-1]

        yield make_sqlite
        for table in opened:
            table.close()
        return
    from connectors.dynamodb_state import DynamoDBStateStore

    endpoint: AwsEndpoint = request.getfixturevalue("dynamodb_endpoint")
    name = unique_name("tb-leases")
    store = DynamoDBStateStore(state_config(endpoint, name), region=endpoint.region)
    yield lambda: store.lease_table(group)
    await store.aclose()
    async with endpoint.client("dynamodb") as ddb:
        await ddb.delete_table(TableName=name)


def bridge(table: LeaseTable, clock: Clock, name: str, seed: int = 0) -> Leases:
    return Leases(table, owner=name, duration=DURATION, clock=clock, rng=random.Random(seed))


async def owners(table: LeaseTable) -> dict[str, str | None]:
    return {lease.key: lease.owner for lease in await table.list()}


# ---------------------------------------------------------------- taking and holding


async def test_missing_leases_are_made_and_the_free_ones_taken(tables: Any) -> None:
    a = bridge(tables(), Clock(), "a")
    assert sorted(await a.balance(["s1", "s2", "s3", "s4"])) == ["s1", "s2", "s3", "s4"]
    assert all(a.holds(k) for k in ("s1", "s2", "s3", "s4"))
    table = tables()
    assert set((await owners(table)).values()) == {"a"}
    assert {lease.counter for lease in await table.list()} == {1}
    assert await a.balance(["s1", "s2", "s3", "s4"]) == []  # it has its share: all


async def test_renewing_moves_the_counter_and_keeps_the_lease(tables: Any) -> None:
    clock = Clock()
    a = bridge(tables(), clock, "a")
    await a.balance(["s1"])
    for _ in range(5):
        clock.advance(DURATION / 3)
        assert await a.renew() == []
        assert a.holds("s1")
    [lease] = await tables().list()
    assert (lease.owner, lease.counter) == ("a", 6)


async def test_a_lease_not_renewed_lapses_for_its_owner_after_the_duration(tables: Any) -> None:
    clock = Clock()
    a = bridge(tables(), clock, "a")
    await a.balance(["s1"])
    clock.advance(DURATION - 0.01)
    assert a.holds("s1")
    clock.advance(0.02)
    assert not a.holds("s1")  # reads and commits stop, whatever the table says


async def test_a_silent_owner_expires_after_the_duration_of_the_observers_own_clock(
    tables: Any,
) -> None:
    """Expiry counts from when the observer first saw the counter, on its own clock: the
    owner's clock (here 10**6 s ahead) never enters into it."""
    owner_clock, observer_clock = Clock(10**6), Clock()
    a = bridge(tables(), owner_clock, "a")
    b = bridge(tables(), observer_clock, "b")
    await a.balance(["s1"])  # one lease: a holds its share of it, b has nothing to steal
    assert await b.balance() == []  # first sight: counts as just renewed
    observer_clock.advance(DURATION / 2)
    owner_clock.advance(DURATION / 2)
    await a.renew()  # a renews: the counter moves, b's count starts again
    assert await b.balance() == []
    observer_clock.advance(DURATION - 0.1)
    assert await b.balance() == []  # silent for less than the duration, as b saw it
    observer_clock.advance(0.2)  # a died: silent for the duration
    assert await b.balance() == ["s1"]
    assert await owners(tables()) == {"s1": "b"}
    assert await a.renew() == ["s1"]  # a (not dead after all) learns it lost it
    assert a.held == []


async def test_a_renewal_after_a_takeover_reports_the_lease_lost(tables: Any) -> None:
    a = bridge(tables(), Clock(), "a")
    await a.balance(["s1"])
    [lease] = await tables().list()
    assert await tables().take(lease, "b") is not None  # as a thief does
    assert await a.renew() == ["s1"]
    assert not a.holds("s1")
    assert await owners(tables()) == {"s1": "b"}


async def test_two_owners_racing_for_one_lease_exactly_one_wins(tables: Any) -> None:
    await tables().create("s1")
    [free] = await tables().list()
    for _ in range(5):
        results = await asyncio.gather(*(tables().take(free, f"o{i}") for i in range(8)))
        winners = [r for r in results if r is not None]
        assert len(winners) == 1
        assert await owners(tables()) == {"s1": winners[0].owner}
        [free] = await tables().list()
        assert await tables().release(free)
        [free] = await tables().list()
        assert free.owner is None


async def test_two_bridges_balancing_at_once_never_share_a_lease(tables: Any) -> None:
    a, b = bridge(tables(), Clock(), "a", 1), bridge(tables(), Clock(), "b", 2)
    keys = [f"s{i}" for i in range(6)]
    await tables().create("s0")
    taken_a, taken_b = await asyncio.gather(a.balance(keys), b.balance(keys))
    assert not set(taken_a) & set(taken_b)
    held = await owners(tables())
    assert {k for k, o in held.items() if o == "a"} == set(taken_a)
    assert {k for k, o in held.items() if o == "b"} == set(taken_b)


async def test_conditional_writes_refuse_a_lease_that_changed(tables: Any) -> None:
    table = tables()
    first = await table.create("s1")
    assert first == Lease("s1", None, 0)
    assert await table.create("s1") is None  # exists already
    mine = await table.take(first, "a")
    assert mine == Lease("s1", "a", 1)
    assert await table.take(first, "b") is None  # stale counter
    assert await table.renew(Lease("s1", "b", 1)) is None  # not the owner
    assert await table.release(first) is False
    assert await table.delete(first) is False
    assert await table.renew(mine) == Lease("s1", "a", 2)
    assert await table.delete(Lease("s1", "a", 2))
    assert await table.list() == []


# ---------------------------------------------------------------- balance


async def test_a_newcomer_steals_one_lease_per_round_until_the_shares_are_even(
    tables: Any,
) -> None:
    clocks = {name: Clock() for name in "abc"}
    a, b, c = (bridge(tables(), clocks[n], n, i) for i, n in enumerate("abc"))
    keys = [f"s{i}" for i in range(6)]
    assert len(await a.balance(keys)) == 6
    for expected in (1, 2, 3, 3):  # one steal per round, then even
        await a.renew()  # a learns of the lease stolen the round before
        assert len(await b.balance(keys)) <= 1
        assert len(b.held) == expected
    assert len(a.held) == 3
    for _ in range(4):
        for x in (a, b, c):
            await x.renew()
        await c.balance(keys)
    counts = sorted(len(x.held) for x in (a, b, c))
    assert counts == [2, 2, 2]
    assert sorted(k for x in (a, b, c) for k in x.held) == sorted(keys)


async def test_a_stolen_lease_is_read_only_once_its_old_owner_has_surely_stopped(
    tables: Any,
) -> None:
    """The thief holds it at once (nobody else takes it) but reads it only a lease's
    duration later: by then the old owner noticed at a renewal, or its own hold lapsed
    (it cannot renew any more), so the partition is never read by both at once."""
    clock_a, clock_b = Clock(), Clock()
    a, b = bridge(tables(), clock_a, "a"), bridge(tables(), clock_b, "b", 1)
    assert len(await a.balance(["s1", "s2"])) == 2
    [stolen] = await b.balance(["s1", "s2"])
    assert stolen in b.held and not b.holds(stolen)
    assert a.holds(stolen)  # a has not noticed yet: it reads on until its next renewal
    clock_a.advance(DURATION / 3)
    assert await a.renew() == [stolen] and not a.holds(stolen)
    clock_b.advance(DURATION - 0.1)
    await b.renew()
    assert not b.holds(stolen)
    clock_b.advance(0.1)
    assert b.holds(stolen)
    # a lease taken free (released, or expired) is read at once
    await a.release_all()
    [free] = await b.balance(["s1", "s2"])
    assert b.holds(free)


async def test_four_leases_three_bridges_settle_at_two_one_one(tables: Any) -> None:
    """KCL's rule: a bridge short of two or more steals one even from an owner at the
    share, so 2-2-0 becomes 2-1-1 (and stays so: the one with 1 does not steal back)."""
    a, b, c = (bridge(tables(), Clock(), n, i) for i, n in enumerate("abc"))
    keys = ["s1", "s2", "s3", "s4"]
    await a.balance(keys)
    await a.renew()
    await b.balance(keys)
    await a.renew()
    await b.balance(keys)
    await a.renew()
    assert sorted([len(a.held), len(b.held)]) == [2, 2]
    for _ in range(4):
        for x in (a, b, c):
            await x.renew()
        for x in (a, b, c):
            await x.balance(keys)
    assert sorted(len(x.held) for x in (a, b, c)) == [1, 1, 2]


async def test_expired_leases_go_first_and_only_up_to_the_share(tables: Any) -> None:
    clock_a, clock_b, clock_c = Clock(), Clock(), Clock()
    a, b, c = (
        bridge(tables(), clock_a, "a"),
        bridge(tables(), clock_b, "b"),
        bridge(tables(), clock_c, "c"),
    )
    keys = [f"s{i}" for i in range(6)]
    await a.balance(keys[:3])
    await b.balance(keys[3:])  # b holds s3-s5 (a's three are live: fair share 3 of 6)
    assert sorted(b.held) == keys[3:]
    await c.balance(keys, eligible=lambda key: False)  # c sees them, takes nothing
    clock_c.advance(DURATION + 1)
    clock_b.advance(DURATION + 1)
    await b.renew()  # b lives on, a died
    taken = await c.balance(keys)
    assert len(taken) == 3 and set(taken) == set(keys[:3])  # only a's expired ones
    assert len(c.held) == 3 and sorted(b.held) == keys[3:]


async def test_only_eligible_leases_are_taken(tables: Any) -> None:
    a = bridge(tables(), Clock(), "a")
    taken = await a.balance(["parent", "child"], eligible=lambda key: key != "child")
    assert taken == ["parent"]
    assert await owners(tables()) == {"parent": "a", "child": None}


# ---------------------------------------------------------------- letting go


async def test_released_leases_are_free_for_others_at_once(tables: Any) -> None:
    a, b = bridge(tables(), Clock(), "a"), bridge(tables(), Clock(), "b")
    await a.balance(["s1", "s2"])
    assert await b.balance(eligible=lambda key: False) == []  # live: not b's to take
    await a.release_all()
    assert a.held == [] and not a.holds("s1")
    assert sorted(await b.balance()) == ["s1", "s2"]


async def test_a_renewal_that_lands_after_the_stop_began_does_not_keep_a_lease(
    tables: Any,
) -> None:
    """The stop cancels the renewal round, but a renewal already sent may still reach the
    table: the release, made with the counter seen before it, must not leave the lease
    owned until it expires (seen with three bridges on DynamoDB Local)."""
    a, b = bridge(tables(), Clock(), "a"), bridge(tables(), Clock(), "b")
    await a.balance(["s1", "s2"])
    [lease] = [x for x in await tables().list() if x.key == "s1"]
    assert await tables().renew(lease) is not None  # landed; ``a`` never saw its answer
    await a.release_all()
    assert await owners(tables()) == {"s1": None, "s2": None}
    assert sorted(await b.balance()) == ["s1", "s2"]


async def test_finishing_deletes_the_lease(tables: Any) -> None:
    a = bridge(tables(), Clock(), "a")
    await a.balance(["s1", "s2"])
    await a.finish("s1")
    assert await owners(tables()) == {"s2": "a"}
    assert a.held == ["s2"]


async def test_drop_deletes_only_leases_nobody_holds(tables: Any) -> None:
    a, b = bridge(tables(), Clock(), "a"), bridge(tables(), Clock(), "b")
    await a.balance(["s1"])
    await tables().create("gone")
    await b.drop(["s1", "gone"])
    assert await owners(tables()) == {"s1": "a"}


class _Flaky:
    """A table whose writes fail while ``down``."""

    def __init__(self, table: LeaseTable) -> None:
        self.table = table
        self.down = False

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.table, name)

        async def call(*args: Any) -> Any:
            if self.down:
                raise CheckpointError("table unreachable (injected)")
            return await method(*args)

        return call


async def test_failed_renewals_keep_the_lease_until_it_lapses_then_lose_it(tables: Any) -> None:
    clock = Clock()
    flaky = _Flaky(tables())
    a = Leases(flaky, owner="a", duration=DURATION, clock=clock)  # type: ignore[arg-type]
    await a.balance(["s1"])
    flaky.down = True
    clock.advance(DURATION / 3)
    assert await a.renew() == []  # logged, kept: still valid
    assert a.holds("s1")
    clock.advance(DURATION)
    assert await a.renew() == ["s1"]
    assert a.held == []
    flaky.down = False
    assert await a.balance() == ["s1"]  # its own lease, still in its name: taken again


# ---------------------------------------------------------------- wiring


def test_owner_ids_name_the_host_and_pid_and_never_repeat() -> None:
    import os
    import socket

    ids = {new_owner_id() for _ in range(100)}
    assert len(ids) == 100
    host, pid, _ = next(iter(ids)).split(":")
    assert (host, int(pid)) == (socket.gethostname(), os.getpid())


def test_only_a_shared_store_gives_leases(tmp_path: Path) -> None:
    from bridge.checkpoints import SqliteCheckpointStore

    store = SqliteCheckpointStore(tmp_path / "c.sqlite3")
    try:
        assert leases_for(store, "m") is None  # the default: one bridge reads everything
        # members of one mapping in several worker processes: the SQLite file's leases
        local = leases_for(store, "m", members=2)
        assert local is not None and isinstance(local.table, SqliteLeaseTable)
        assert local.duration == LOCAL_LEASE_SECONDS
    finally:
        store.close()

    from connectors.dynamodb_state import DynamoDBStateStore

    shared = DynamoDBStateStore(
        DynamoDBState(type="dynamodb", table="t-state", lease_duration_seconds=6), region="x"
    )
    leases = leases_for(shared, "m")
    assert leases is not None
    assert (leases.duration, leases.renew_interval, leases.group) == (6, 2, "m")
