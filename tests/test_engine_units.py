"""Pure engine logic with fakes: batching limits, the ack frontier, retry edges."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Hashable, Sequence
from typing import Any

import pytest

import bridge
from bridge.acks import LIVE, AckTracker
from bridge.batching import Batcher
from bridge.connector import BaseConnector, FailureContext, Record
from bridge.errors import CheckpointError, FunctionError, TargetRejected, TargetUnavailable
from bridge.lanes import Lane, Lanes
from bridge.pipeline import Pipeline, PipelineOptions
from bridge.retry import Deliverer, RetryPolicy


def _record(partition: str, n: int, size: int = 10, age: float = 0.0) -> Record:
    return Record(
        partition=partition, position=n, data=n, encoded=b"x" * size, arrived=time.time() - age
    )


class FakeConnector(BaseConnector):
    ordered = True

    def __init__(self, fail_commits: int = 0, gate: asyncio.Event | None = None) -> None:
        self.commits: list[list[int]] = []
        self.fail_commits = fail_commits
        self.gate = gate  # when given, each commit waits for it

    async def commit(self, records: Sequence[Record]) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_commits:
            self.fail_commits -= 1
            raise CheckpointError("disk full")
        self.commits.append([r.position for r in records])

    def item_identifier(self, record: Record) -> Hashable:
        return str(record.position)

    def failure_record(self, records: Sequence[Record], ctx: FailureContext) -> dict[str, Any]:
        return {
            "condition": ctx.condition,
            "lines": [r.position for r in records],
            "n": ctx.attempts,
        }


class FakeTarget:
    """Answers from a script: each entry is bytes to return or an exception to raise."""

    name = "fake"

    def __init__(self, *script: bytes | Exception) -> None:
        self.script = list(script)
        self.payloads: list[bytes] = []

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    async def invoke(self, payload: bytes, *, request_id: str, timeout: float | None) -> bytes:
        self.payloads.append(payload)
        step = self.script.pop(0) if self.script else b"{}"
        if isinstance(step, Exception):
            raise step
        return step


class ListDestination:
    uri = "memory://"

    def __init__(self) -> None:
        self.documents: list[dict[str, Any]] = []

    async def write(self, documents: Sequence[dict[str, Any]]) -> None:
        self.documents.extend(documents)

    async def aclose(self) -> None: ...


def _deliverer(target: FakeTarget, **policy: Any) -> tuple[Deliverer, list[int], ListDestination]:
    settled: list[int] = []
    destination = ListDestination()

    def settle(records: Sequence[Record]) -> None:
        settled.extend(r.position for r in records)

    async def give_back(records: Sequence[Record]) -> None:
        settle(records)

    deliverer = Deliverer(
        mapping="m",
        connector=FakeConnector(),
        target=target,
        destination=destination,
        policy=RetryPolicy(backoff_initial_seconds=0.001, backoff_max_seconds=0.002, **policy),
        settle=settle,
        give_back=give_back,
        function_arn="arn:aws:lambda:us-east-1:000000000000:function:f",
        stopping=asyncio.Event(),
    )
    return deliverer, settled, destination


# ------------------------------------------------------------------ batching


def _queue(batcher: Batcher, lane: Lane, *records: Record) -> None:
    for r in records:
        r.lane = lane
        batcher.add(lane, r)


def test_batches_never_exceed_the_payload_limit() -> None:
    batcher = Batcher(batch_size=10, window=0, max_bytes=6 * 1024 * 1024, ordered=False)
    lane = Lane("p")
    _queue(batcher, lane, *(_record("p", n, size=2 * 1024 * 1024) for n in range(5)))
    sizes = [len(b) for b in batcher.take_ready(10)]
    assert sizes == [2, 2, 1]


def test_ordered_partition_has_one_batch_in_flight() -> None:
    batcher = Batcher(batch_size=2, window=0, max_bytes=1000, ordered=True)
    p, q = Lane("p"), Lane("q")
    _queue(batcher, p, *(_record("p", n) for n in range(6)))
    _queue(batcher, q, _record("q", 0))
    first = batcher.take_ready(10)
    assert [[r.position for r in b] for b in first] == [[0, 1], [0]]
    assert batcher.take_ready(10) == []  # p's next batch waits for the first
    batcher.done(p)
    assert [[r.position for r in b] for b in batcher.take_ready(10)] == [[2, 3]]


def test_window_holds_a_partial_batch_until_it_closes() -> None:
    batcher = Batcher(batch_size=5, window=0.05, max_bytes=1000, ordered=False)
    _queue(batcher, Lane("p"), _record("p", 0))
    assert batcher.take_ready(10) == []
    deadline = batcher.next_deadline()
    assert deadline is not None and deadline > time.monotonic()
    time.sleep(0.06)
    assert [len(b) for b in batcher.take_ready(10)] == [1]


def test_a_record_that_could_not_be_shaped_is_a_batch_of_its_own_in_its_place() -> None:
    batcher = Batcher(batch_size=10, window=60, max_bytes=1000, ordered=True)
    lane = Lane("p")
    records = [_record("p", n) for n in range(5)]
    records[2].encoded = b""  # could not be normalized
    _queue(batcher, lane, *records)
    cuts = []
    while batch := batcher.take_ready(10, flush=True):
        cuts.append([r.position for r in batch[0]])
        batcher.done(lane)
    assert cuts == [[0, 1], [2], [3, 4]]


def test_lanes_take_turns_when_slots_are_scarce() -> None:
    batcher = Batcher(batch_size=1, window=0, max_bytes=1000, ordered=False)
    lanes = {name: Lane(name) for name in "abc"}
    for name, lane in lanes.items():
        _queue(batcher, lane, *(_record(name, n) for n in range(3)))
    order = [batch[0].partition for _ in range(6) for batch in batcher.take_ready(1)]
    assert order == ["a", "b", "c", "a", "b", "c"]


# ------------------------------------------------------------------ acks


def _tracked(
    connector: FakeConnector, *, per_record: bool = False, min_share: int = 100
) -> tuple[AckTracker, Lanes]:
    lanes = Lanes(connector, mapping="m", limit=1000, limit_bytes=1 << 30, min_share=min_share)
    return AckTracker(connector, mapping="m", lanes=lanes, per_record=per_record), lanes


def _read(tracker: AckTracker, lanes: Lanes, *records: Record) -> None:
    """What the pipeline does on reading: ordinals, bytes, lane, and LIVE when per record."""
    for r in records:
        lane = lanes.lane(r.partition)
        lane.read += 1
        lane.read_bytes += len(r.encoded)
        r.seq, r.mark, r.lane = lane.read, lane.read_bytes, lane
        if tracker.per_record:
            r.state = LIVE
            lane.live[r] = None
        lanes.grew(lane, 1, len(r.encoded))


async def test_a_frontier_commits_the_newest_settled_record_and_releases_its_lane() -> None:
    connector = FakeConnector()
    tracker, lanes = _tracked(connector)
    records = [_record("p", n) for n in range(4)]
    _read(tracker, lanes, *records)
    tracker.settle(records[:2])
    await tracker.flush()
    assert connector.commits == [[1]]  # one record: the frontier; 0 is covered by it
    assert lanes.count == 2 and lanes.by_partition["p"].count == 2
    tracker.settle(records[2:])
    await tracker.flush()
    assert connector.commits == [[1], [3]]
    assert lanes.count == 0 and lanes.nbytes == 0 and "p" not in lanes.by_partition


async def test_a_commit_interval_commits_early_once_a_lane_holds_a_quarter_of_its_share() -> None:
    """Uncommitted records count against a lane's read-ahead share: waiting out a long
    interval would pause the lane and cap it at one share per interval."""
    connector = FakeConnector()
    lanes = Lanes(connector, mapping="m", limit=100, limit_bytes=1 << 30, min_share=100)
    tracker = AckTracker(connector, mapping="m", lanes=lanes, per_record=False, commit_interval=60)
    records = [_record("p", n) for n in range(100)]
    _read(tracker, lanes, *records)
    tracker.settle(records[:24])
    await asyncio.sleep(0.05)
    assert connector.commits == []  # coalescing: 24 of a share of 100
    tracker.settle(records[24:25])
    await asyncio.sleep(0.05)
    assert connector.commits == [[24]]  # a quarter of the share: committed without the 60 s
    assert lanes.by_partition["p"].count == 75
    tracker.settle(records[25:45])
    await asyncio.sleep(0.05)
    assert connector.commits == [[24]]  # coalescing again
    await tracker.flush()  # a flush (a drain, a revoke) cuts the wait short
    assert connector.commits == [[24], [44]]
    await tracker.aclose()


async def test_a_filtered_record_waits_for_the_record_before_it_then_goes_with_it() -> None:
    connector = FakeConnector()
    tracker, lanes = _tracked(connector)
    records = [_record("p", n) for n in range(4)]
    _read(tracker, lanes, *records)
    lane = lanes.by_partition["p"]
    lane.tail = records[0]  # 0 is still to be delivered
    tracker.filtered(records[1])
    lane.tail = records[2]
    tracker.filtered(records[3])
    await tracker.flush()
    assert connector.commits == []  # 0 pins everything
    tracker.settle([records[0]])
    await tracker.flush()
    assert connector.commits == [[1]]  # 0 and the filtered 1 behind it; 2 pins 3
    tracker.settle([records[2]])
    await tracker.flush()
    assert connector.commits == [[1], [3]]


async def test_a_filtered_record_with_nothing_before_it_is_committed_at_once() -> None:
    connector = FakeConnector()
    tracker, lanes = _tracked(connector)
    records = [_record("p", n) for n in range(2)]
    _read(tracker, lanes, *records)
    tracker.filtered(records[0])
    tracker.filtered(records[1])
    await tracker.flush()
    assert [n for c in connector.commits for n in c][-1] == 1 and lanes.count == 0


async def test_failed_commit_is_retried_and_the_frontier_waits() -> None:
    connector = FakeConnector(fail_commits=2)
    tracker, lanes = _tracked(connector)
    record = _record("p", 0)
    _read(tracker, lanes, record)
    lane = record.lane
    tracker.settle([record])
    await asyncio.wait_for(tracker.committed_upto(lane, 1), 5)
    assert connector.commits == [[0]] and lane.committed == 1 and lanes.count == 0


async def test_settles_during_a_commit_go_out_together_in_the_next_one() -> None:
    gate = asyncio.Event()
    connector = FakeConnector(gate=gate)
    tracker, lanes = _tracked(connector)
    records = [_record("p", n) for n in range(4)]
    _read(tracker, lanes, *records)
    tracker.settle([records[0]])  # returns before the commit is durable
    await asyncio.sleep(0)
    assert connector.commits == [] and lanes.count == 4
    for r in records[1:]:
        tracker.settle([r])  # the commit of 0 is still on its way
    gate.set()
    await asyncio.wait_for(tracker.flush(), 5)
    assert connector.commits == [[0], [3]]
    assert lanes.count == 0


async def test_committed_upto_waits_for_that_commit_only() -> None:
    gate = asyncio.Event()
    tracker, lanes = _tracked(FakeConnector(gate=gate))
    records = [_record("p", n) for n in range(4)]
    _read(tracker, lanes, *records)
    lane = records[0].lane
    tracker.settle(records[:2])
    waiter = asyncio.create_task(tracker.committed_upto(lane, 2))
    await asyncio.sleep(0.01)
    assert not waiter.done()  # 0 and 1 are settled, not committed
    gate.set()
    await asyncio.wait_for(waiter, 5)
    assert lane.committed == 2 and lanes.count == 2


async def test_interrupt_ends_the_waits_without_a_commit() -> None:
    tracker, lanes = _tracked(FakeConnector())
    records = [_record("p", n) for n in range(2)]
    _read(tracker, lanes, *records)
    waiter = asyncio.create_task(tracker.committed_upto(records[0].lane, 2))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    tracker.interrupt()
    await asyncio.wait_for(waiter, 5)
    assert lanes.count == 2


async def test_a_revoked_lane_ignores_late_settles_and_a_new_lane_starts_fresh() -> None:
    connector = FakeConnector()
    tracker, lanes = _tracked(connector)
    old = [_record("p", n) for n in range(3)]
    _read(tracker, lanes, *old)
    tracker.drop(old[0].lane)
    assert lanes.count == 0 and "p" not in lanes.by_partition
    new = [_record("p", n) for n in (10, 11)]
    _read(tracker, lanes, *new)
    tracker.settle(old)  # a delivery that finished after the revoke
    await tracker.flush()
    assert connector.commits == []
    tracker.settle(new)
    await tracker.flush()
    assert connector.commits == [[11]] and lanes.count == 0


async def test_per_record_commits_settled_records_and_never_forgotten_ones() -> None:
    connector = FakeConnector()
    tracker, lanes = _tracked(connector, per_record=True)
    records = [_record("p", n) for n in range(4)]
    _read(tracker, lanes, *records)
    tracker.forget([records[1]])
    tracker.settle([records[3], records[1], records[0]])
    await tracker.flush()
    assert connector.commits == [[3, 0]]
    assert tracker.unsettled() == [records[2]]
    assert lanes.count == 1


async def test_an_unexpected_commit_error_is_retried_not_lost() -> None:
    class Broken(FakeConnector):
        calls = 0

        async def commit(self, records: Sequence[Record]) -> None:
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("bug")
            await super().commit(records)

    connector = Broken()
    tracker, lanes = _tracked(connector)
    record = _record("p", 0)
    _read(tracker, lanes, record)
    tracker.settle([record])
    await asyncio.wait_for(tracker.flush(), 5)
    assert connector.commits == [[0]]


# ------------------------------------------------------------------ read-ahead


class Pausable(FakeConnector):
    pausable = True


async def test_a_lane_is_paused_at_its_share_and_resumed_at_half_of_it() -> None:
    tracker, lanes = _tracked(Pausable(), min_share=10)
    lanes.limit = 20  # two lanes: a share of 10 each
    a = [_record("a", n) for n in range(10)]
    b = [_record("b", n) for n in range(3)]
    _read(tracker, lanes, b[0], *a[:9])
    assert lanes.room_for("a") == 1
    _read(tracker, lanes, a[9])
    assert lanes.room_for("a") == 0
    assert lanes.room_for("b") == 9 and lanes.room.is_set()  # b reads on
    waiting = asyncio.create_task(lanes.wait_room_for("a"))
    tracker.settle(a[:4])
    await tracker.flush()
    assert lanes.room_for("a") == 0 and not waiting.done()  # 6 left: above half
    tracker.settle(a[4:5])
    await tracker.flush()
    await asyncio.wait_for(waiting, 1)
    assert lanes.room_for("a") == 5


def test_partitions_being_read_share_the_read_ahead_from_the_start() -> None:
    _, lanes = _tracked(Pausable(), min_share=10)
    assert lanes.room_for("s1") == 1000  # nothing known: all of it
    lanes.reading([f"s{n}" for n in range(10)])
    assert lanes.room_for("s1") == 100  # ten shards: a tenth each
    lanes.finished(["s1"])
    assert lanes.room_for("s2") == 1000 // 9


def test_a_source_that_cannot_pause_shares_one_limit() -> None:
    connector = FakeConnector()
    tracker, lanes = _tracked(connector, min_share=10)
    lanes.limit = 5
    _read(tracker, lanes, *(_record("a", n) for n in range(4)))
    assert lanes.room.is_set()
    _read(tracker, lanes, _record("b", 0))
    assert not lanes.room.is_set()


# ------------------------------------------------------------------ retry


async def test_outages_are_retried_without_counting_attempts() -> None:
    target = FakeTarget(
        TargetUnavailable("down"), TargetUnavailable("429", retry_after=0.001), b"{}"
    )
    deliverer, settled, destination = _deliverer(target, maximum_retry_attempts=0)
    await deliverer.deliver([_record("p", 0)])
    assert settled == [0] and destination.documents == []
    assert len(target.payloads) == 3


async def test_outage_backoff_starts_from_the_first_failure_and_honours_retry_after() -> None:
    target = FakeTarget(TargetUnavailable("429", retry_after=7), TargetUnavailable("down"), b"{}")
    deliverer, settled, _ = _deliverer(target)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    deliverer._sleep = sleep  # type: ignore[method-assign]
    await deliverer.deliver([_record("p", 0)])
    assert settled == [0] and len(target.payloads) == 3
    assert slept[0] == 7.0  # the first failure's Retry-After, not a fresh first attempt
    assert 0.001 <= slept[1] <= 0.002  # then backoff(2): initial 0.001 s doubled, jittered


async def test_records_older_than_the_maximum_age_are_dead_lettered() -> None:
    target = FakeTarget()
    deliverer, settled, destination = _deliverer(target, maximum_record_age_seconds=60)
    await deliverer.deliver([_record("p", 0, age=120)])
    assert target.payloads == []
    assert destination.documents == [{"condition": "RecordAgeExceeded", "lines": [0], "n": 0}]
    assert settled == [0]


async def test_a_record_over_the_payload_limit_is_dead_lettered_not_retried() -> None:
    target = FakeTarget()
    deliverer, settled, destination = _deliverer(target, max_payload_bytes=100)
    await deliverer.deliver([_record("p", 0, size=10), _record("p", 1, size=500)])
    assert destination.documents == [
        {"condition": "MaximumPayloadSizeExceeded", "lines": [1], "n": 0}
    ]
    assert settled == [0, 1]


async def test_rejected_batch_is_split_then_the_single_record_dead_lettered() -> None:
    target = FakeTarget(TargetRejected("413", status=413), b"{}", TargetRejected("400", status=400))
    deliverer, settled, destination = _deliverer(target)
    await deliverer.deliver([_record("p", 0), _record("p", 1)])
    assert destination.documents == [{"condition": "TargetRejected", "lines": [1], "n": 1}]
    assert sorted(settled) == [0, 1]


@pytest.mark.parametrize(
    ("response", "redelivered"),
    [
        (b'{"batchItemFailures": []}', None),
        (b"null", None),
        (b"{}", None),
        (b'{"batchItemFailures": [{"itemIdentifier": "1"}]}', [1, 2]),
        (b'{"batchItemFailures": [{"itemIdentifier": ""}]}', [0, 1, 2]),
        (b'{"batchItemFailures": [{"itemIdentifier": "99"}]}', [0, 1, 2]),
        (b'{"batchItemFailures": [{"wrongKey": "1"}]}', [0, 1, 2]),
        (b"not json", [0, 1, 2]),
    ],
)
async def test_partial_batch_response_rules(response: bytes, redelivered: list[int] | None) -> None:
    target = FakeTarget(response, b"{}")
    deliverer, settled, _ = _deliverer(target, report_batch_item_failures=True)
    await deliverer.deliver([_record("p", n) for n in range(3)])
    assert sorted(settled) == [0, 1, 2]
    if redelivered is None:
        assert len(target.payloads) == 1
    else:
        assert len(target.payloads) == 2
        assert target.payloads[1].count(b"x" * 10) == len(redelivered)


async def test_function_error_exhausts_retries_then_dead_letters_with_attempts() -> None:
    target = FakeTarget(*[FunctionError("boom", payload=b'{"errorType":"E"}')] * 3)
    deliverer, settled, destination = _deliverer(target, maximum_retry_attempts=2)
    await deliverer.deliver([_record("p", 0)])
    assert destination.documents == [{"condition": "RetryAttemptsExhausted", "lines": [0], "n": 3}]
    assert settled == [0]


# ------------------------------------------------------------------ public API


def test_public_api_is_exactly_what_is_documented() -> None:
    assert sorted(bridge.__all__) == sorted(
        [
            "BridgeError",
            "CheckpointError",
            "ConfigError",
            "Connector",
            "ConnectorContext",
            "DeliveryError",
            "FailureContext",
            "FunctionError",
            "NormalizeError",
            "Record",
            "SourceError",
            "SourceUnavailable",
            "TargetRejected",
            "TargetUnavailable",
            "__version__",
        ]
    )
    for name in bridge.__all__:
        assert hasattr(bridge, name)


# ------------------------------------------------------------------ feed


async def test_feed_cancelling_the_reader_loses_nothing() -> None:
    from bridge.connector import Feed

    feed: Feed[int] = Feed(maxsize=10)
    got: list[int] = []

    async def consume() -> None:
        async for item in feed.items([]):
            got.append(item)

    for round_ in range(20):  # cancel the reader while it waits, again and again
        reader = asyncio.create_task(consume())
        await asyncio.sleep(0)
        await feed.put(round_)
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    reader = asyncio.create_task(consume())
    await asyncio.sleep(0.01)
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    assert got == list(range(20))


async def test_feed_bounds_the_producer_and_raises_a_failed_task() -> None:
    from bridge.connector import Feed

    feed: Feed[int] = Feed(maxsize=2)
    await feed.put(1)
    await feed.put(2)
    blocked = asyncio.create_task(feed.put(3))
    await asyncio.sleep(0.01)
    assert not blocked.done() and len(feed) == 2

    async def boom() -> None:
        raise RuntimeError("source broke")

    failing = asyncio.ensure_future(boom())
    seen: list[int] = []
    with pytest.raises(RuntimeError, match="source broke"):
        async for item in feed.items([failing]):
            seen.append(item)
            await asyncio.sleep(0.01)
    assert seen == [1, 2, 3] and blocked.done()


# ------------------------------------------------------------------ pipeline


class ChunkConnector(FakeConnector):
    """Yields the given records as one chunk, then nothing; commits wait for ``gate``."""

    def __init__(self, records: list[Record], gate: asyncio.Event) -> None:
        super().__init__(gate=gate)
        self.records = records

    async def open(self) -> None: ...

    async def aclose(self) -> None: ...

    async def read(self) -> Any:
        yield self.records
        await asyncio.Event().wait()

    def normalize(self, record: Record) -> dict[str, Any]:
        return {"n": record.position}


def _pipeline(
    connector: ChunkConnector, target: FakeTarget, *, batch_size: int = 2, concurrency: int = 10
) -> Pipeline:
    options = PipelineOptions(
        batch_size=batch_size,
        window=0,
        maximum_concurrency=concurrency,
        policy=RetryPolicy(),
        shutdown_timeout=5,
    )
    return Pipeline(
        mapping="m",
        connector=connector,
        target=target,  # type: ignore[arg-type]
        destination=ListDestination(),  # type: ignore[arg-type]
        options=options,
        filters=None,
        function_arn="arn:aws:lambda:us-east-1:000000000000:function:f",
    )


async def test_a_partition_runs_ahead_of_its_commits_by_one_batch_at_most() -> None:
    gate = asyncio.Event()
    records = [Record(partition="p", position=n, data=n) for n in range(10)]
    connector = ChunkConnector(records, gate)
    target = FakeTarget()
    pipeline = _pipeline(connector, target)
    run = asyncio.create_task(pipeline.run())
    await asyncio.sleep(0.1)
    # batch [0, 1] is delivered and committing; [2, 3] went on without waiting for that
    # commit; [4, 5] waits for it
    assert len(target.payloads) == 2 and connector.commits == []
    gate.set()
    for _ in range(100):
        if connector.commits and connector.commits[-1][-1] == 9:
            break
        await asyncio.sleep(0.01)
    frontier = [c[-1] for c in connector.commits]  # one record per commit: the frontier
    assert frontier == sorted(frontier) and frontier[-1] == 9 and frontier[0] == 1
    assert len(target.payloads) == 5
    pipeline.stop()
    await asyncio.wait_for(run, 5)
    assert pipeline.lanes.count == 0


async def test_stopping_waits_for_the_commits_under_way() -> None:
    gate = asyncio.Event()
    records = [Record(partition="p", position=n, data=n) for n in range(2)]
    connector = ChunkConnector(records, gate)
    pipeline = _pipeline(connector, FakeTarget())
    run = asyncio.create_task(pipeline.run())
    await asyncio.sleep(0.1)
    pipeline.stop()
    await asyncio.sleep(0.1)
    assert not run.done()  # the commit of [0, 1] is still on its way
    gate.set()
    await asyncio.wait_for(run, 5)
    assert connector.commits == [[1]]  # the frontier: 1, and 0 before it


async def test_a_freed_delivery_slot_is_used_without_waiting_for_more_records() -> None:
    gate = asyncio.Event()
    gate.set()
    records = [Record(partition=p, position=n, data=n) for n, p in enumerate("abcd")]
    connector = ChunkConnector(records, gate)
    connector.ordered = False  # type: ignore[misc]
    target = FakeTarget()
    pipeline = _pipeline(connector, target, batch_size=1, concurrency=1)
    run = asyncio.create_task(pipeline.run())
    for _ in range(100):
        if len(target.payloads) == 4:
            break
        await asyncio.sleep(0.01)
    assert len(target.payloads) == 4  # one at a time, each slot reused as it frees up
    pipeline.stop()
    await asyncio.wait_for(run, 5)


# ------------------------------------------------------------------ partial responses


async def test_a_dead_letter_after_a_partial_failure_describes_only_its_records() -> None:
    """Records 1 and 2 of [0, 1, 2] fail and exhaust their retries: the failure record
    carries their payload, not the first invocation's (which also had record 0)."""

    class Capture(FakeConnector):
        def failure_record(self, records: Sequence[Record], ctx: FailureContext) -> dict[str, Any]:
            return {"lines": [r.position for r in records], "payload": ctx.payload}

    target = FakeTarget(b'{"batchItemFailures": [{"itemIdentifier": "1"}]}')
    deliverer, settled, destination = _deliverer(
        target, report_batch_item_failures=True, maximum_retry_attempts=0
    )
    deliverer.connector = Capture()
    records = [_record("p", n) for n in range(3)]
    await deliverer.deliver(records)
    [document] = destination.documents
    assert document["lines"] == [1, 2]
    assert document["payload"] == Capture().encode_event(records[1:])
    assert sorted(settled) == [0, 1, 2]


async def test_a_message_handed_over_twice_fails_with_its_copy() -> None:
    """A standard SQS queue may deliver one message twice, even into one batch. When the
    function names it in batchItemFailures, neither copy is settled (deleted)."""

    class Queue(FakeConnector):
        ordered = False
        redelivery = "source"

        def item_identifier(self, record: Record) -> Hashable:
            return str(record.data)  # the message id: the same for both copies

    target = FakeTarget(b'{"batchItemFailures": [{"itemIdentifier": "m-1"}]}')
    deliverer, settled, _ = _deliverer(target, report_batch_item_failures=True)
    given_back: list[Record] = []

    async def give_back(records: Sequence[Record]) -> None:
        given_back.extend(records)

    deliverer.connector = Queue()
    deliverer.source_redelivers = True
    deliverer.ordered = False
    deliverer.give_back = give_back
    copies = [Record("", 0, "m-1"), Record("", 1, "m-2"), Record("", 2, "m-1")]
    for r in copies:
        r.encoded = b"{}"
    await deliverer.deliver(copies)
    assert settled == [1]
    assert sorted(r.position for r in given_back) == [0, 2]


# ------------------------------------------------------------------ record age


async def test_only_the_records_older_than_the_maximum_age_are_dead_lettered() -> None:
    target = FakeTarget()
    deliverer, settled, destination = _deliverer(target, maximum_record_age_seconds=60)
    records = [_record("p", n, age=age) for n, age in enumerate([120, 90, 61, 1, 0])]
    await deliverer.deliver(records)
    assert destination.documents == [{"condition": "RecordAgeExceeded", "lines": [0, 1, 2], "n": 0}]
    [payload] = target.payloads
    assert payload.count(b"x" * 10) == 2  # the two fresh ones were delivered
    assert settled == [0, 1, 2, 3, 4]  # in order: the old ones first


async def test_unordered_old_records_are_dead_lettered_wherever_they_are() -> None:
    target = FakeTarget()
    deliverer, settled, destination = _deliverer(target, maximum_record_age_seconds=60)
    deliverer.ordered = False
    records = [_record("p", n, age=age) for n, age in enumerate([0, 120, 1, 90])]
    await deliverer.deliver(records)
    assert destination.documents == [{"condition": "RecordAgeExceeded", "lines": [1, 3], "n": 0}]
    assert target.payloads[0].count(b"x" * 10) == 2
    assert sorted(settled) == [0, 1, 2, 3]


async def test_an_outage_past_the_maximum_age_dead_letters_only_what_aged_out() -> None:
    """The target is down while the first record passes its age; the second one is still
    young when the target comes back, and is delivered."""
    old, young = _record("p", 0, age=59.95), _record("p", 1, age=0)

    class DownUntilTheOldOneAgedOut(FakeTarget):
        async def invoke(self, payload: bytes, *, request_id: str, timeout: float | None) -> bytes:
            if time.time() - old.arrived <= 60.02:
                raise TargetUnavailable("down")
            return await super().invoke(payload, request_id=request_id, timeout=timeout)

    target = DownUntilTheOldOneAgedOut()
    deliverer, settled, destination = _deliverer(target, maximum_record_age_seconds=60)
    await deliverer.deliver([old, young])
    assert destination.documents == [{"condition": "RecordAgeExceeded", "lines": [0], "n": 0}]
    assert target.payloads[-1].count(b"x" * 10) == 1 and settled == [0, 1]


async def test_a_queue_fails_only_the_messages_its_function_named() -> None:
    """SQS FIFO is ordered per group, but Lambda deletes every message the function did
    not name in batchItemFailures, those after the failed one included."""
    target = FakeTarget(b'{"batchItemFailures": [{"itemIdentifier": "1"}]}')
    deliverer, settled, _ = _deliverer(target, report_batch_item_failures=True)
    given_back: list[int] = []

    async def give_back(records: Sequence[Record]) -> None:
        given_back.extend(r.position for r in records)

    deliverer.source_redelivers = True
    deliverer.give_back = give_back
    await deliverer.deliver([_record("g", n) for n in range(3)])
    assert settled == [0, 2] and given_back == [1]


@pytest.mark.parametrize(
    ("response", "why"),
    [
        (b"not json", "it is not JSON"),
        (b"[1, 2]", "it is not a JSON object"),
        (b'{"batchItemFailures": {"itemIdentifier": "1"}}', "batchItemFailures is not a list"),
        (b'{"batchItemFailures": [{"wrongKey": "1"}]}', "an entry has no itemIdentifier"),
        (b'{"batchItemFailures": [{"itemIdentifier": "99"}]}', 'itemIdentifier "99" names no'),
    ],
)
async def test_an_invalid_partial_response_is_logged_with_its_reason(
    response: bytes, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    target = FakeTarget(response, b"{}")
    deliverer, settled, _ = _deliverer(target, report_batch_item_failures=True)
    await deliverer.deliver([_record("p", n) for n in range(3)])
    messages = [
        r.getMessage() for r in caplog.records if "batch.invalid_response" in r.getMessage()
    ]
    assert len(messages) == 1 and why in messages[0] and "retried=3" in messages[0]
    assert sorted(settled) == [0, 1, 2] and len(target.payloads) == 2
