"""``bridge.spread.Spread``: the bookkeeping of ``parallelization_factor`` (a partition's
records over sub-partitions by key, one checkpoint for the partition)."""

from __future__ import annotations

import zlib
from typing import Any

from bridge.connector import PartitionControl, Record
from bridge.spread import Spread


def _key(factor: int, sub: int) -> bytes:
    """A key that goes to sub-partition ``sub`` of ``factor``."""
    return next(k for i in range(1000) if zlib.crc32(k := b"key-%d" % i) % factor == sub)


def _hand(spread: Spread, shard: str, items: list[tuple[int, Any]]) -> list[str]:
    """Hand over records given as (sub-partition index, position)."""
    return spread.hand(shard, [(pos, _key(spread.factor, sub)) for sub, pos in items])


def _record(partition: str, position: int | str) -> Record:
    return Record(partition=partition, position=position, data=None)


def test_the_checkpoint_moves_only_over_a_settled_prefix() -> None:
    spread = Spread(2, PartitionControl())
    a, b = spread.partitions("shardId-1")
    assert (a, b) == ("shardId-1#0", "shardId-1#1")
    got = _hand(spread, "shardId-1", [(0, "1"), (1, "2"), (1, "3"), (0, "4"), (1, "5")])
    assert got == [a, b, b, a, b]
    assert spread.settle(_record(b, "5")) is None  # 1 (of a) is not settled yet
    assert spread.settle(_record(a, "1")) == "3"  # 1, then 2 and 3 of b; 4 is not
    assert spread.settle(_record(a, "1")) == "3"  # a commit again changes nothing
    assert spread.settle(_record(a, "4")) == "5"
    _hand(spread, "shardId-1", [(1, "6"), (0, "7")])
    assert spread.settle(_record(a, "7")) == "5"  # 6 of b still out
    assert spread.shard_of(b) == "shardId-1"


def test_offset_zero_is_not_covered_before_it_settled() -> None:
    """Kafka offsets start at 0: nothing is taken for settled before it is."""
    spread = Spread(3, PartitionControl())
    s0, s1, s2 = spread.partitions("t-0")
    _hand(spread, "t-0", [(1, 0), (0, 1), (2, 2), (0, 3)])
    assert spread.settle(_record(s0, 3)) is None  # offset 0 (of s1) is still out
    assert spread.settle(_record(s1, 0)) == 1  # integers stay integers
    assert spread.settle(_record(s2, 2)) == 3


def test_a_key_always_goes_to_the_same_sub_partition_and_no_key_to_the_first() -> None:
    spread = Spread(4, PartitionControl())
    subs = spread.partitions("t-0")
    keys = [b"a", b"b", b"order-17", b""]
    got = spread.hand("t-0", [(i, key) for i, key in enumerate(keys)])
    assert got == [subs[zlib.crc32(key) % 4] for key in keys]  # the same in any process
    assert spread.hand("t-0", [(9, None)]) == [subs[0]]
    spread2 = Spread(4, PartitionControl())
    assert len(set(spread2.hand("t-0", [(i, b"%d" % i) for i in range(100)]))) == 4


def test_a_settle_after_forget_cannot_cover_what_is_read_again() -> None:
    """A partition revoked and given back is read again from its checkpoint: a late settle
    of the old session (offset 9) must not cover the new session's unsettled records."""
    spread = Spread(2, PartitionControl())
    a, b = spread.partitions("t-0")
    _hand(spread, "t-0", [(0, 8), (1, 9)])
    spread.forget("t-0")
    assert spread.settle(_record(b, 9)) is None  # ignored: the state is gone
    _hand(spread, "t-0", [(0, 5), (1, 6), (0, 8), (1, 9)])
    assert spread.settle(_record(b, 9)) is None  # 5 and 8 of a are out
    assert spread.settle(_record(a, 5)) == 6
    assert spread.settle(_record(a, 8)) == 9


def test_room_is_factor_shares_less_what_is_not_covered() -> None:
    """One sub-partition holding its share (waiting for a slot) does not stop the
    partition; what was read and not covered does, at ``factor`` shares."""
    rooms = {"t-0#0": 100, "t-0#1": 30}

    class Control(PartitionControl):
        def room(self, partition: str) -> int:
            return rooms[partition]

    spread = Spread(2, Control())
    assert spread.room("t-0") == 200
    a = spread.partitions("t-0")[0]
    _hand(spread, "t-0", [(0, i) for i in range(190)])
    assert spread.room("t-0") == 10
    rooms["t-0#0"] = 0  # paused: the share seen before still counts
    assert spread.room("t-0") == 10
    _hand(spread, "t-0", [(1, i) for i in range(190, 200)])
    assert spread.room("t-0") == 0
    assert spread.settle(_record(a, 189)) == 189
    assert spread.room("t-0") == 190
