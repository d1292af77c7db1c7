"""Leases: how several bridges share the partitions of one mapping (a DynamoDB stream's
shards), the way AWS's Kinesis Client Library does: conditional writes to a shared
table, no consensus of our own.

A lease is one row of a *group* (a mapping): its ``key`` (a shard id), its ``owner`` (one
bridge's connector: host, pid and a random part, see :func:`new_owner_id`; none while the
lease is free) and a ``counter`` that every change (take, renew, release) increments.
Every change is a conditional write that happens only if the row is still as the writer
last saw it (same counter, same owner), so of two bridges racing for a lease exactly one
wins; the other is told so and changes nothing.

Expiry never compares the clocks of two machines. For an observer a lease is *expired*
once its counter has not changed for ``duration`` seconds of the observer's own
monotonic clock, counted from when it first saw that counter (a lease seen for the first
time with an owner counts as just renewed; a lease without an owner is free at once).
The owner renews every ``duration / 3`` and holds a lease (reads and commits its
partition) only until ``duration`` after it *sent* its last successful write. An observer
can only have seen that write after it was sent, so the owner has stopped by the time
anyone may take the lease over, whatever the wall clocks say (only the clocks' rates
must roughly agree).

Balance, each round (:meth:`Leases.balance`): count the owners of live leases and this
bridge; the fair share is ``ceil(leases / owners)``. Below it, a bridge first takes free
and expired leases (at random, up to its share); when there are none, it steals one
lease per round from the owner holding the most, if that owner is above the share (or
at it while this bridge lacks two or more: so 2-2-0 becomes 2-1-1). The owner of a
stolen lease learns it at its next renewal (the counter moved) and lets the partition go;
the thief reads it only ``duration`` after it stole it, when the old owner has stopped
for sure (noticed, or its own hold lapsed), so a partition is never read by two at once
and its order holds across a rebalance (a steal costs that partition a lease's wait).

Two tables: :class:`SqliteLeaseTable` (the checkpoint store's SQLite file: worker
processes of one machine) here, and a DynamoDB one beside the DynamoDB state store
(``connectors/dynamodb_state``), for bridges on several machines. Every table method
raises ``CheckpointError`` when the table cannot be read or written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import secrets
import socket
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from bridge import telemetry
from bridge.checkpoints import open_sqlite
from bridge.errors import CheckpointError

__all__ = [
    "Lease",
    "LeaseTable",
    "Leases",
    "SharedStore",
    "SqliteLeaseTable",
    "leases_for",
    "mapping_lease",
    "new_owner_id",
]

#: the lease group of whole mappings (``MappingLease``); ``*`` is in no mapping's name
MAPPINGS_GROUP = "*mappings"

log = logging.getLogger(__name__)

MAX_STEALS_PER_ROUND = 1


@dataclass(frozen=True, slots=True)
class Lease:
    """One lease as a table holds it (``owner`` None: free)."""

    key: str
    owner: str | None
    counter: int


class LeaseTable(Protocol):
    """The leases of one group in a table several processes share.

    Every change is conditional on the lease being exactly as given (its counter and its
    owner): otherwise nothing changes and the method returns None (or False). Raises
    ``CheckpointError`` (naming the table) when the table cannot be used."""

    async def list(self) -> list[Lease]:
        """Every lease of the group (read consistently)."""
        ...

    async def create(self, key: str) -> Lease | None:
        """Add a free lease ``key`` (counter 0); None if it exists already."""
        ...

    async def take(self, lease: Lease, owner: str) -> Lease | None:
        """Make ``owner`` the owner (counter + 1); None if someone changed it meanwhile."""
        ...

    async def renew(self, lease: Lease) -> Lease | None:
        """Counter + 1, only while ``lease.owner`` still owns it as seen; None: lost."""
        ...

    async def release(self, lease: Lease) -> bool:
        """Make it free (counter + 1); False if it was no longer as given."""
        ...

    async def delete(self, lease: Lease) -> bool:
        """Remove it (its partition needs no reading any more); False if it changed."""
        ...


@runtime_checkable
class SharedStore(Protocol):
    """A checkpoint store that several bridges share: it also keeps their leases."""

    lease_duration: float

    def lease_table(self, group: str) -> LeaseTable: ...


def new_owner_id() -> str:
    """An owner id no other connector (of this or another process or machine) has:
    ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


#: lease duration of the members of one mapping in the worker processes of one bridge
#: (``parallelism``): a killed worker's partitions go to another member after this long
LOCAL_LEASE_SECONDS = 10.0


def leases_for(store: object, group: str, *, members: int = 1) -> Leases | None:
    """The leases of ``group`` for a new connector: from ``store`` when it is shared by
    several bridges; else, when the mapping has several ``members`` (``parallelism``, in
    the worker processes of this bridge), from a lease table in the SQLite file of the
    checkpoint store (``path``); else None: the connector reads every partition itself."""
    if isinstance(store, SharedStore):
        table: LeaseTable = store.lease_table(group)
        duration = store.lease_duration
    elif members > 1 and isinstance(path := getattr(store, "path", None), Path):
        table, duration = SqliteLeaseTable(path, group), LOCAL_LEASE_SECONDS
    else:
        return None
    return Leases(table, owner=new_owner_id(), duration=duration, group=group)


@dataclass(slots=True)
class _Held:
    lease: Lease
    since: float  # our clock when the last successful write on it was sent
    usable: float = 0.0  # our clock from when it may be read (a stolen one: a lease later)


@dataclass(frozen=True, slots=True)
class _Seen:
    counter: int
    owner: str | None
    since: float  # our clock when we first saw this counter


class Leases:
    """One connector's side of one group's leases (see the module docstring).

    The connector calls ``renew()`` and then ``balance()`` every ``renew_interval``
    seconds, reads and commits a partition only while ``holds(key)``, calls ``finish``
    when a partition needs no more reading and ``release_all`` on a clean stop (after
    its last commits). ``clock`` is monotonic seconds (tests pass a fake one)."""

    def __init__(
        self,
        table: LeaseTable,
        *,
        owner: str,
        duration: float,
        group: str = "",
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if duration <= 0:
            raise ValueError(f"a lease duration must be positive, not {duration}")
        self.table = table
        self.owner = owner
        self.duration = duration
        self.group = group
        self._clock = clock
        self._rng = rng or random.Random()
        self._held: dict[str, _Held] = {}
        self._seen: dict[str, _Seen] = {}

    @property
    def renew_interval(self) -> float:
        return self.duration / 3

    @property
    def held(self) -> list[str]:
        """The keys this connector holds (some may have lapsed: see ``holds``)."""
        return list(self._held)

    def holds(self, key: str) -> bool:
        """Whether this connector may read and commit ``key`` now: it holds the lease, its
        last successful write on it was sent less than ``duration`` ago, and (a lease it
        stole) ``duration`` has passed since it stole it."""
        held = self._held.get(key)
        now = self._clock()
        return held is not None and now >= held.usable and now - held.since < self.duration

    # ------------------------------------------------------------ holding

    async def renew(self) -> list[str]:
        """Renew every lease held; return the keys lost (someone else owns them now, or
        the table could not be written for ``duration``). A failed renewal is logged and
        the lease kept while it is still valid."""

        async def renew_one(key: str, held: _Held) -> bool:
            sent = self._clock()
            try:
                renewed = await self.table.renew(held.lease)
            except CheckpointError as exc:
                valid = self._clock() - held.since < self.duration
                log.warning("%s: renewing lease %s failed: %s", self.group, key, exc)
                return valid
            if renewed is None:
                return False
            held.lease, held.since = renewed, sent
            return True

        keys = list(self._held)
        kept = await asyncio.gather(*(renew_one(k, self._held[k]) for k in keys))
        lost = [k for k, ok in zip(keys, kept, strict=True) if not ok and k in self._held]
        for key in lost:
            del self._held[key]
            telemetry.emit(telemetry.LEASE_LOST, mapping=self.group, lease=key, owner=self.owner)
        return lost

    async def balance(
        self,
        wanted: Iterable[str] = (),
        eligible: Callable[[str], bool] = lambda key: True,
        *,
        steal: bool = True,
    ) -> list[str]:
        """One round of the lease taker: create the leases of ``wanted`` keys that have
        none, then take free or expired leases, or (``steal``) steal one, towards the fair
        share. Only leases whose key is ``eligible`` are taken. Returns the keys taken."""
        listing = {lease.key: lease for lease in await self.table.list()}
        for key in wanted:
            if key not in listing and (created := await self.table.create(key)) is not None:
                listing[key] = created
        now = self._clock()
        self._observe(listing.values(), now)
        live = Counter(  # the other owners' leases that are not expired
            lease.owner
            for lease in listing.values()
            if lease.owner is not None
            and lease.owner != self.owner
            and not self._takeable(lease, now)
        )
        takeable = [
            lease
            for lease in listing.values()
            if self._takeable(lease, now) and eligible(lease.key)
        ]
        total = sum(live.values()) + len(self._held) + len(takeable)
        target = math.ceil(total / (len(live) + 1))
        need = target - len(self._held)
        if need <= 0:
            return []
        self._rng.shuffle(takeable)
        chosen = takeable[:need]
        stolen = []
        if steal and not chosen:
            stolen = self._to_steal(listing.values(), live, target, need, eligible)
        taken = []
        for lease in chosen + stolen:
            sent = self._clock()
            new = await self.table.take(lease, self.owner)
            if new is None:
                continue  # another bridge was quicker (or the owner renewed): next round
            wait = self.duration if lease in stolen else 0.0  # until its owner stopped
            self._held[lease.key] = _Held(new, sent, sent + wait)
            taken.append(lease.key)
            telemetry.emit(
                telemetry.LEASE_TAKEN,
                mapping=self.group,
                lease=lease.key,
                owner=self.owner,
                previous=lease.owner or "-",
            )
        return taken

    def _observe(self, leases: Iterable[Lease], now: float) -> None:
        """Remember since when (our clock) each lease has had its counter and owner."""
        seen = {}
        for lease in leases:
            before = self._seen.get(lease.key)
            if before is None or (before.counter, before.owner) != (lease.counter, lease.owner):
                before = _Seen(lease.counter, lease.owner, now)
            seen[lease.key] = before
        self._seen = seen

    def _takeable(self, lease: Lease, now: float) -> bool:
        """Free, expired (silent for ``duration`` as we saw it), or ours from an earlier
        holding of this connector that it let go of (its writes failed)."""
        if lease.key in self._held:
            return False
        if lease.owner is None or lease.owner == self.owner:
            return True
        return now - self._seen[lease.key].since >= self.duration

    def _to_steal(
        self,
        leases: Iterable[Lease],
        live: Counter[str],
        target: int,
        need: int,
        eligible: Callable[[str], bool],
    ) -> list[Lease]:
        """At most ``MAX_STEALS_PER_ROUND`` live leases of the owner holding the most."""
        if not live:
            return []
        most = max(live.values())
        victim = self._rng.choice(sorted(o for o, n in live.items() if n == most))
        over = most - target
        count = min(need, over)
        if count <= 0 and need > 1 and over == 0:
            count = 1  # the KCL's rule: so 2, 2, 0 becomes 2, 1, 1
        count = min(count, MAX_STEALS_PER_ROUND)
        if count <= 0:
            return []
        theirs = sorted(
            (lease for lease in leases if lease.owner == victim and eligible(lease.key)),
            key=lambda lease: lease.key,
        )
        return self._rng.sample(theirs, min(count, len(theirs)))

    # ------------------------------------------------------------ letting go

    async def finish(self, key: str) -> None:
        """The partition ``key`` needs no more reading (a shard read to its end and
        committed): delete its lease. A failure is logged; the next owner finds the
        partition finished and deletes it then."""
        held = self._held.pop(key, None)
        if held is None:
            return
        try:
            await self.table.delete(held.lease)
        except CheckpointError as exc:
            log.warning("%s: deleting the lease of finished %s failed: %s", self.group, key, exc)

    async def drop(self, keys: Collection[str]) -> None:
        """Delete the leases of ``keys`` (partitions gone from the source) that nobody
        holds; best effort."""
        if not keys:
            return
        listing = await self.table.list()
        now = self._clock()
        self._observe(listing, now)
        for lease in listing:
            if lease.key in keys and self._takeable(lease, now):
                try:
                    await self.table.delete(lease)
                except CheckpointError as exc:
                    log.warning("%s: deleting lease %s failed: %s", self.group, lease.key, exc)

    async def release_all(self) -> None:
        """Give up every lease held (a clean stop, after the last commits): free at once
        for the other bridges. A lease that changed since it was last seen is read again
        and released if it is still ours: a renewal cancelled by the stop may have
        reached the table anyway. Failures are logged; those leases expire instead."""
        held, self._held = self._held, {}

        async def release_one(key: str, lease: Lease) -> None:
            try:
                if await self.table.release(lease):
                    return
                current = next((x for x in await self.table.list() if x.key == key), None)
                if current is not None and current.owner == self.owner:
                    await self.table.release(current)
            except CheckpointError as exc:
                log.warning("%s: releasing lease %s failed: %s", self.group, key, exc)

        await asyncio.gather(*(release_one(k, h.lease) for k, h in held.items()))


class SqliteLeaseTable:
    """A ``LeaseTable`` in a SQLite file (the checkpoint store's), for processes of one
    machine: each change is one ``UPDATE ... WHERE counter=? AND owner IS ?`` (or an
    insert or delete so guarded), atomic in SQLite's own transaction."""

    def __init__(self, path: str | Path, group: str) -> None:
        self.path = Path(path)
        self.group = group
        try:
            self._db = open_sqlite(
                self.path,
                "CREATE TABLE IF NOT EXISTS leases ("
                " grp TEXT NOT NULL, key TEXT NOT NULL, owner TEXT, counter INTEGER NOT NULL,"
                " PRIMARY KEY (grp, key)) WITHOUT ROWID",
            )
        except (OSError, sqlite3.Error) as exc:
            raise CheckpointError(f"lease table in {self.path}: {exc}") from exc
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _run(self, sql: str, params: tuple[object, ...]) -> tuple[int, list[tuple[Any, ...]]]:
        with self._lock:
            try:
                cursor = self._db.execute(sql, params)
                return cursor.rowcount, cursor.fetchall()
            except sqlite3.Error as exc:
                raise CheckpointError(f"lease table in {self.path}: {exc}") from exc

    async def _change(self, sql: str, params: tuple[object, ...]) -> bool:
        changed, _ = await asyncio.to_thread(self._run, sql, params)
        return changed == 1

    async def list(self) -> list[Lease]:
        _, rows = await asyncio.to_thread(
            self._run, "SELECT key, owner, counter FROM leases WHERE grp=?", (self.group,)
        )
        return [Lease(str(k), None if o is None else str(o), int(c)) for k, o, c in rows]

    async def create(self, key: str) -> Lease | None:
        sql = "INSERT OR IGNORE INTO leases(grp, key, owner, counter) VALUES (?, ?, NULL, 0)"
        return Lease(key, None, 0) if await self._change(sql, (self.group, key)) else None

    async def take(self, lease: Lease, owner: str) -> Lease | None:
        sql = (
            "UPDATE leases SET owner=?, counter=counter+1"
            " WHERE grp=? AND key=? AND counter=? AND owner IS ?"
        )
        params = (owner, self.group, lease.key, lease.counter, lease.owner)
        if not await self._change(sql, params):
            return None
        return Lease(lease.key, owner, lease.counter + 1)

    async def renew(self, lease: Lease) -> Lease | None:
        if lease.owner is None:
            return None
        return await self.take(lease, lease.owner)

    async def release(self, lease: Lease) -> bool:
        sql = (
            "UPDATE leases SET owner=NULL, counter=counter+1"
            " WHERE grp=? AND key=? AND counter=? AND owner IS ?"
        )
        return await self._change(sql, (self.group, lease.key, lease.counter, lease.owner))

    async def delete(self, lease: Lease) -> bool:
        sql = "DELETE FROM leases WHERE grp=? AND key=? AND counter=? AND owner IS ?"
        return await self._change(sql, (self.group, lease.key, lease.counter, lease.owner))


class MappingLease:
    """A whole mapping run by one bridge at a time, among bridges sharing their state: a
    schedule (else each bridge would fire it), a bucket, a websocket feed. First come,
    first served (no stealing: a running mapping is not moved for balance's sake); a
    bridge that dies loses it after the lease's duration, and another takes it over from
    the mapping's checkpoints."""

    def __init__(self, leases: Leases, mapping: str) -> None:
        self.leases = leases
        self.mapping = mapping

    async def acquire(self, stopped: asyncio.Event) -> bool:
        """Wait until this bridge holds the mapping (True) or ``stopped`` is set (False).
        A table that cannot be reached is logged and tried again each round."""
        key = self.mapping
        while not stopped.is_set():
            try:
                await self.leases.balance([key], lambda k: k == key, steal=False)
            except CheckpointError as exc:
                log.warning("%s: taking its lease failed: %s", key, exc)
            if self.leases.holds(key):
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopped.wait(), self.leases.renew_interval)
        return False

    async def keep(self) -> None:
        """Renew the lease every round; return once it is lost (taken over, or not
        renewed for its duration): the mapping must stop at once."""
        while True:
            await asyncio.sleep(self.leases.renew_interval)
            await self.leases.renew()
            if not self.leases.holds(self.mapping):
                return

    async def release(self) -> None:
        """Give it up (a clean stop, after the mapping's last commits)."""
        await self.leases.release_all()


def mapping_lease(store: object, mapping: str, connector: Any) -> MappingLease | None:
    """The lease ``mapping`` must hold to run, when ``store`` is shared by several bridges
    and its ``connector`` (class) says ``singleton``; None: it just runs."""
    if not isinstance(store, SharedStore) or not getattr(connector, "singleton", False):
        return None
    table = store.lease_table(MAPPINGS_GROUP)
    leases = Leases(table, owner=new_owner_id(), duration=store.lease_duration, group=mapping)
    return MappingLease(leases, mapping)
