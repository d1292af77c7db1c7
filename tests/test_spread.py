"""``bridge.spread.Spread``: the bookkeeping of ``parallelization_factor`` (a partition's
records over sub-partitions by key, one checkpoint for the partition)."""

from __future__ import annotations

import zlib

from bridge.connector import PartitionControl, Record
from bridge.spread import Spread


def _record(partition: str, position: int | str) -> Record:
    return Record(partition=partition, position=position, data=None)


def test_the_checkpoint_moves_only_over_a_settled_prefix() -> None:
    spread = Spread(2, PartitionControl())
    a, b = spread.partitions("shardId-1")
    assert (a, b) == ("shardId-1#0", "shardId-1#1")
    read = [_record(a, "1"), _record(b, "2"), _record(b, "3"), _record(a, "4"), _record(b, "5")]
    spread.handed("shardId-1", read)
    assert spread.settle(_record(b, "5")) is None  # 1 (of a) is not settled yet
    assert spread.settle(_record(a, "1")) == "3"  # 1, then 2 and 3 of b; 4 is not
    assert spread.settle(_record(a, "1")) == "3"  # a commit again changes nothing
    assert spread.settle(_record(a, "4")) == "5"
    spread.handed("shardId-1", [_record(b, "6"), _record(a, "7")])
    assert spread.settle(_record(a, "7")) == "5"  # 6 of b still out
    assert spread.shard_of(b) == "shardId-1"


def test_offset_zero_is_not_covered_before_it_settled() -> None:
    """Kafka offsets start at 0: nothing is taken for settled before it is."""
    spread = Spread(3, PartitionControl())
    s0, s1, s2 = spread.partitions("t-0")
    spread.handed("t-0", [_record(s1, 0), _record(s0, 1), _record(s2, 2), _record(s0, 3)])
    assert spread.settle(_record(s0, 3)) is None  # offset 0 (of s1) is still out
    assert spread.settle(_record(s1, 0)) == 1  # integers stay integers
    assert spread.settle(_record(s2, 2)) == 3


def test_a_key_always_goes_to_the_same_sub_partition_and_no_key_to_the_first() -> None:
    spread = Spread(4, PartitionControl())
    subs = spread.partitions("t-0")
    for key in (b"a", b"b", b"order-17", b""):
        assert spread.partition("t-0", key) == subs[zlib.crc32(key) % 4]  # any process
        assert spread.partition("t-0", key) == spread.partition("t-0", key)
    assert spread.partition("t-0", None) == subs[0]
    assert len({spread.partition("t-0", str(i).encode()) for i in range(100)}) == 4


def test_a_settle_after_forget_cannot_cover_what_is_read_again() -> None:
    """A partition revoked and given back is read again from its checkpoint: a late settle
    of the old session (offset 9) must not cover the new session's unsettled records."""
    spread = Spread(2, PartitionControl())
    a, b = spread.partitions("t-0")
    spread.handed("t-0", [_record(a, 8), _record(b, 9)])
    spread.forget("t-0")
    assert spread.settle(_record(b, 9)) is None  # ignored: the state is gone
    spread.handed("t-0", [_record(a, 5), _record(b, 6), _record(a, 8), _record(b, 9)])
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
    a, b = spread.partitions("t-0")
    spread.handed("t-0", [_record(a, i) for i in range(190)])
    assert spread.room("t-0") == 10
    rooms["t-0#0"] = 0  # paused: the share seen before still counts
    assert spread.room("t-0") == 10
    spread.handed("t-0", [_record(b, i) for i in range(190, 200)])
    assert spread.room("t-0") == 0
    assert spread.settle(_record(a, 189)) == 189
    assert spread.room("t-0") == 190
