"""``parallelization_factor``: the records of one log partition (a DynamoDB shard, a Kafka
partition) spread over ``factor`` sub-partitions by record key, so the engine delivers up
to ``factor`` batches of the partition at once (it runs one batch at a time per partition)
while the records of one key stay in order, as Lambda does for streams.

A record of partition ``S`` goes to the engine's partition ``S#k``: ``k`` is the CRC-32
of its key (bytes the connector gives: DynamoDB's ``Keys`` as canonical JSON, a Kafka
record's key) mod ``factor``, the same in every process, so a restart routes a key as
before. A record without a key goes to ``S#0``: records without keys keep their order
among themselves.

Checkpoints: the engine commits each sub-partition's frontier on its own, but a partition
has one checkpoint (a position: a sequence number, an offset). It may only cover a record
once every record of the partition read up to it settled in its own sub-partition. So
each partition keeps the records handed over and not yet covered, in read order, and each
sub-partition's settled frontier; ``settle`` pops the settled prefix, and its last position
is what the partition's checkpoint may move to. Positions must be integers or strings of
digits that grow in read order.

Read-ahead: a partition is read while what was read of it and not covered stays under
``factor`` shares (the largest room the engine gave a sub-partition), so it holds about
what ``factor`` partitions of its own would. A sub-partition that holds its share is not
a reason to stop: with fewer slots than sub-partitions, one always waits for its turn
with a full share, and stopping the partition for it would starve its other keys. A key
with few records that fails forever stops its partition once the other keys got
``factor`` shares past it. Nothing grows without bound.

A partition that is lost (revoked, its lease taken) is ``forget``-ten once the engine
drained it; a ``settle`` that comes after that is ignored, so a partition read again later
starts from a clean state and can never be covered by what settled before.
"""

from __future__ import annotations

import asyncio
import zlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bridge.connector import PartitionControl, Record

__all__ = ["Spread"]


@dataclass(slots=True, eq=False)
class _ShardSpread:
    partitions: list[str]
    # (position as a number, sub-partition, position as the source wrote it): not covered
    handed: deque[tuple[int, int, Any]] = field(default_factory=deque)
    settled: list[int] = field(default_factory=list)  # per sub: settled up to this position
    covered: Any = None  # the last position popped: everything before it settled
    moved: asyncio.Event = field(default_factory=asyncio.Event)  # ``covered`` advanced
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # its checkpoint writes


class Spread:
    """The sub-partitions of every partition of one source (see the module docstring).
    Below, a *shard* is the source's partition and a *sub-partition* the engine's.

    ``room``/``wait_room`` take a shard, as ``PartitionControl``'s take a partition, so a
    reader asks either the same way."""

    def __init__(self, factor: int, control: PartitionControl) -> None:
        if factor < 2:
            raise ValueError(f"a spread needs a factor of 2 or more, not {factor}")
        self.factor = factor
        self._control = control
        self._shards: dict[str, _ShardSpread] = {}
        self._shard_of: dict[str, str] = {}  # sub-partition -> shard id
        self._share = 0  # the largest room the engine gave a sub-partition

    def _state(self, shard_id: str) -> _ShardSpread:
        state = self._shards.get(shard_id)
        if state is None:
            names = [f"{shard_id}#{k}" for k in range(self.factor)]
            state = self._shards[shard_id] = _ShardSpread(names, settled=[-1] * self.factor)
            self._shard_of.update((name, shard_id) for name in names)
        return state

    def partitions(self, shard_id: str) -> list[str]:
        """The engine's partitions of the shard."""
        return list(self._state(shard_id).partitions)

    def shard_of(self, partition: str) -> str:
        """The shard id of one of its sub-partitions."""
        return self._shard_of.get(partition) or partition.rpartition("#")[0]

    def forget(self, shard_id: str) -> None:
        """The shard is gone (ended, revoked, its lease lost) and the engine drained it:
        drop what is kept of it. Settles of it that come later are ignored."""
        state = self._shards.pop(shard_id, None)
        for name in state.partitions if state else ():
            self._shard_of.pop(name, None)

    # ------------------------------------------------------------ checkpoints

    def hand(self, shard_id: str, records: Sequence[tuple[Any, bytes | None]]) -> list[str]:
        """Records of the shard, as (position, key) in read order, go to the engine now:
        their sub-partitions, in the same order. Called before the engine can see, let
        alone settle, them; once per chunk (this is the hot path of a spread source)."""
        state = self._state(shard_id)
        names, factor, crc = state.partitions, self.factor, zlib.crc32
        out: list[str] = []
        add, note = out.append, state.handed.append
        for position, key in records:
            k = crc(key) % factor if key is not None else 0
            add(names[k])
            note((int(position), k, position))
        return out

    def settle(self, record: Record) -> Any:
        """The engine committed ``record``'s sub-partition up to it (it and everything of
        that sub-partition read before it settled). Returns the position the shard's
        checkpoint may move to now: the last of the settled prefix of the shard (None
        while nothing of the shard was covered since it was read, or once forgotten)."""
        shard_id = self.shard_of(record.partition)
        state = self._shards.get(shard_id)
        if state is None:
            return None  # forgotten (or never read): nothing it settles covers anything
        k = state.partitions.index(record.partition)
        state.settled[k] = max(state.settled[k], int(record.position))
        handed, settled = state.handed, state.settled
        last: str | None = None
        while handed and handed[0][0] <= settled[handed[0][1]]:
            last = handed.popleft()[2]
        if last is not None:
            state.covered = last  # as the source wrote it (a zero-padded sequence number)
            state.moved.set()
        return state.covered

    def covered(self, shard_id: str) -> Any:
        """See ``settle``."""
        state = self._shards.get(shard_id)
        return state.covered if state is not None else None

    def lock(self, shard_id: str) -> asyncio.Lock:
        """Held while the shard's checkpoint is written: sub-partitions commit at once,
        and an older sequence number must never land after a newer one."""
        return self._state(shard_id).lock

    # ------------------------------------------------------------ read-ahead

    def room(self, shard_id: str) -> int:
        """How many more records of the shard may be read now (0: wait)."""
        state = self._state(shard_id)
        self._share = max(self._share, *(self._control.room(p) for p in state.partitions))
        return max(0, self.factor * self._share - len(state.handed))

    async def wait_room(self, shard_id: str) -> None:
        """Wait while ``factor`` shares of the shard were read and not covered."""
        state = self._state(shard_id)
        while self.room(shard_id) <= 0:
            state.moved.clear()
            await state.moved.wait()
