"""``parallelization_factor``: the records of one shard spread over ``factor``
sub-partitions by item key, so the engine delivers up to ``factor`` batches of a shard at
once (it runs one batch at a time per partition) while the changes of one item stay in
order, as on AWS.

A record of shard ``S`` goes to partition ``S#k``: ``k`` is the CRC-32 of its ``Keys``
(canonical JSON) mod ``factor``, the same in every process, so a restart routes an item
as before. A record without keys goes to ``S#0`` (the engine dead-letters it there).

Checkpoints: the engine commits each sub-partition's frontier on its own, but a shard has
one checkpoint (a sequence number, read ``AFTER_SEQUENCE_NUMBER`` on restart). It may
only cover a record once every record of the shard read up to it settled in its own
sub-partition. So each shard keeps the records handed over and not yet covered, in read
order, and each sub-partition's settled frontier; ``settle`` pops the settled prefix, and
its last sequence number is what the shard's checkpoint may move to.

Read-ahead: a shard is read while none of its sub-partitions is paused (its room is the
least room among them: a key that does not move stops its shard once its sub-partition's
share is full), and while what was read of it and not covered stays under ``factor``
shares (the largest room the engine gave a sub-partition): a key with few records that
fails forever stops its shard once the other keys got that far past it. Nothing grows
without bound.
"""

from __future__ import annotations

import asyncio
import zlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bridge.connector import PartitionControl, Record
from connectors.dynamodb_streams.normalize import keys_json

__all__ = ["Spread"]


@dataclass(slots=True, eq=False)
class _ShardSpread:
    partitions: list[str]
    # (sequence number as a number, sub-partition, as DynamoDB wrote it): not yet covered
    handed: deque[tuple[int, int, str]] = field(default_factory=deque)
    settled: list[int] = field(default_factory=list)  # per sub: settled up to this seq
    covered: str | None = None  # the last sequence number popped: all before it settled
    moved: asyncio.Event = field(default_factory=asyncio.Event)  # ``covered`` advanced
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # its checkpoint writes


class Spread:
    """The sub-partitions of every shard of one stream (see the module docstring).

    ``room``/``wait_room`` take a shard id, as ``PartitionControl``'s take a partition, so
    a ``ShardReader`` asks either the same way."""

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
            state = self._shards[shard_id] = _ShardSpread(names, settled=[0] * self.factor)
            self._shard_of.update((name, shard_id) for name in names)
        return state

    def partitions(self, shard_id: str) -> list[str]:
        """The engine's partitions of the shard."""
        return list(self._state(shard_id).partitions)

    def shard_of(self, partition: str) -> str:
        """The shard id of one of its sub-partitions."""
        return self._shard_of.get(partition) or partition.rpartition("#")[0]

    def partition(self, shard_id: str, raw: dict[str, Any]) -> str:
        """The sub-partition of a GetRecords record of the shard."""
        try:
            k = zlib.crc32(keys_json(raw)) % self.factor
        except (KeyError, TypeError, AttributeError, ValueError):
            k = 0
        return self._state(shard_id).partitions[k]

    def forget(self, shard_id: str) -> None:
        """The shard is gone from the stream: drop what is kept of it."""
        state = self._shards.pop(shard_id, None)
        for name in state.partitions if state else ():
            self._shard_of.pop(name, None)

    # ------------------------------------------------------------ checkpoints

    def handed(self, shard_id: str, records: Sequence[Record]) -> None:
        """``records`` (in read order, partitions from ``partition``) go to the engine
        now; called before the engine can see, let alone settle, them."""
        state = self._state(shard_id)
        index = {name: k for k, name in enumerate(state.partitions)}
        state.handed.extend((int(r.position), index[r.partition], r.position) for r in records)

    def settle(self, record: Record) -> str | None:
        """The engine committed ``record``'s sub-partition up to it (it and everything of
        that sub-partition read before it settled). Returns the sequence number the
        shard's checkpoint may move to now: the last of the settled prefix of the shard
        (None while nothing of the shard was covered in this session)."""
        shard_id = self.shard_of(record.partition)
        state = self._state(shard_id)
        k = state.partitions.index(record.partition)
        state.settled[k] = max(state.settled[k], int(record.position))
        handed, settled = state.handed, state.settled
        last: str | None = None
        while handed and handed[0][0] <= settled[handed[0][1]]:
            last = handed.popleft()[2]
        if last is not None:
            state.covered = last  # as written (zero-padded): it goes back to GetShardIterator
            state.moved.set()
        return state.covered

    def covered(self, shard_id: str) -> str | None:
        """See ``settle``."""
        return self._state(shard_id).covered

    def lock(self, shard_id: str) -> asyncio.Lock:
        """Held while the shard's checkpoint is written: sub-partitions commit at once,
        and an older sequence number must never land after a newer one."""
        return self._state(shard_id).lock

    # ------------------------------------------------------------ read-ahead

    def room(self, shard_id: str) -> int:
        """How many more records of the shard may be read now (0: wait)."""
        state = self._state(shard_id)
        rooms = [self._control.room(p) for p in state.partitions]
        self._share = max(self._share, *rooms)
        return max(0, min(min(rooms), self.factor * self._share - len(state.handed)))

    async def wait_room(self, shard_id: str) -> None:
        """Wait while a sub-partition of the shard is paused, or while ``factor`` shares
        of it were read and not covered."""
        state = self._state(shard_id)
        while True:
            paused = [p for p in state.partitions if self._control.room(p) == 0]
            if paused:
                await self._control.wait_room(paused[0])
                continue
            if self.room(shard_id) > 0:
                return
            state.moved.clear()
            await state.moved.wait()
