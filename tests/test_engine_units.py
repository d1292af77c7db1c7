"""Pure engine logic with fakes: batching limits, the ack frontier, retry edges."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Hashable, Sequence
from typing import Any

import pytest

import bridge
from bridge.acks import AckTracker
from bridge.batching import Batcher
from bridge.connector import BaseConnector, FailureContext, Record
from bridge.errors import CheckpointError, FunctionError, TargetRejected, TargetUnavailable
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

    async def settle(records: Sequence[Record]) -> None:
        settled.extend(r.position for r in records)

    deliverer = Deliverer(
        mapping="m",
        connector=FakeConnector(),
        target=target,
        destination=destination,
        policy=RetryPolicy(backoff_initial_seconds=0.001, backoff_max_seconds=0.002, **policy),
        settle=settle,
        give_back=settle,
        function_arn="arn:aws:lambda:us-east-1:000000000000:function:f",
        stopping=asyncio.Event(),
    )
    return deliverer, settled, destination


# ------------------------------------------------------------------ batching


def test_batches_never_exceed_the_payload_limit() -> None:
    batcher = Batcher(batch_size=10, window=0, max_bytes=6 * 1024 * 1024, ordered=False)
    for n in range(5):
        batcher.add(_record("p", n, size=2 * 1024 * 1024))
    sizes = [len(b) for b in batcher.take_ready(10)]
    assert sizes == [2, 2, 1]


def test_ordered_partition_has_one_batch_in_flight() -> None:
    batcher = Batcher(batch_size=2, window=0, max_bytes=1000, ordered=True)
    for n in range(6):
        batcher.add(_record("p", n))
    batcher.add(_record("q", 0))
    first = batcher.take_ready(10)
    assert [[r.position for r in b] for b in first] == [[0, 1], [0]]
    assert batcher.take_ready(10) == []  # p's next batch waits for the first
    batcher.done("p")
    assert [[r.position for r in b] for b in batcher.take_ready(10)] == [[2, 3]]


def test_window_holds_a_partial_batch_until_it_closes() -> None:
    batcher = Batcher(batch_size=5, window=0.05, max_bytes=1000, ordered=False)
    batcher.add(_record("p", 0))
    assert batcher.take_ready(10) == []
    deadline = batcher.next_deadline()
    assert deadline is not None and deadline > time.monotonic()
    time.sleep(0.06)
    assert [len(b) for b in batcher.take_ready(10)] == [1]


# ------------------------------------------------------------------ acks


async def test_ordered_frontier_commits_only_contiguous_settled_records() -> None:
    connector = FakeConnector()
    tracker = AckTracker(connector, mapping="m", ordered=True)
    records = [_record("p", n) for n in range(4)]
    for r in records:
        tracker.track(r)
    await tracker.settle([records[1], records[2]])
    await tracker.flush()
    assert connector.commits == []  # record 0 pins the frontier
    await tracker.settle([records[0]])
    await tracker.flush()
    assert connector.commits == [[0, 1, 2]]
    assert len(tracker.unsettled_records()) == 1 and tracker.tracked == 1
    assert tracker.unsettled_records() == [records[3]]


async def test_failed_commit_is_retried_and_the_frontier_waits() -> None:
    connector = FakeConnector(fail_commits=2)
    tracker = AckTracker(connector, mapping="m", ordered=True)
    record = _record("p", 0)
    tracker.track(record)
    await tracker.settle([record])
    await asyncio.wait_for(tracker.committed([record]), 5)
    assert connector.commits == [[0]]
    assert tracker.tracked == 0


async def test_forgotten_records_and_everything_after_them_are_never_committed() -> None:
    connector = FakeConnector()
    tracker = AckTracker(connector, mapping="m", ordered=True)
    records = [_record("p", n) for n in range(5)]
    for r in records:
        tracker.track(r)
    await tracker.settle([records[0], records[3]])
    await tracker.flush()
    assert connector.commits == [[0]]
    await tracker.forget([records[2]])  # 2, and 3 and 4 read after it, go back to the source
    assert tracker.unsettled_records() == [records[1]]
    await tracker.settle([records[4], records[2]])  # late settles of forgotten records
    assert tracker.unsettled_records() == [records[1]]
    await tracker.settle([records[1]])
    await tracker.flush()
    assert connector.commits == [[0], [1]]
    assert tracker.unsettled_records() == []
    assert tracker.tracked == 0 and tracker.tracked_bytes == 0


async def test_unordered_forget_drops_only_those_records() -> None:
    connector = FakeConnector()
    tracker = AckTracker(connector, mapping="m", ordered=False)
    records = [_record("p", n) for n in range(3)]
    for r in records:
        tracker.track(r)
    await tracker.forget([records[1]])
    await tracker.settle([records[0], records[1], records[2]])
    await tracker.flush()
    assert connector.commits == [[0, 2]]
    assert tracker.unsettled_records() == []


async def test_settles_during_a_commit_go_out_together_in_the_next_one() -> None:
    gate = asyncio.Event()
    connector = FakeConnector(gate=gate)
    tracker = AckTracker(connector, mapping="m", ordered=True)
    records = [_record("p", n) for n in range(4)]
    for r in records:
        tracker.track(r)
    await tracker.settle([records[0]])  # returns before the commit is durable
    await asyncio.sleep(0)
    assert connector.commits == [] and tracker.tracked == 4
    for r in records[1:]:
        await tracker.settle([r])  # the commit of 0 is still on its way
    gate.set()
    await asyncio.wait_for(tracker.committed(records), 5)
    assert connector.commits == [[0], [1, 2, 3]]
    assert tracker.tracked == 0


async def test_committed_before_waits_for_the_earlier_records_only() -> None:
    gate = asyncio.Event()
    tracker = AckTracker(FakeConnector(gate=gate), mapping="m", ordered=True)
    records = [_record("p", n) for n in range(4)]
    for r in records:
        tracker.track(r)
    await tracker.settle(records[:2])
    waiter = asyncio.create_task(tracker.committed_before("p", records[2].seq))
    await asyncio.sleep(0.01)
    assert not waiter.done()  # 0 and 1 are settled, not committed
    gate.set()
    await asyncio.wait_for(waiter, 5)  # 2 and 3 were never settled: not needed
    assert tracker.unsettled_records() == records[2:]


async def test_interrupt_ends_the_waits_without_a_commit() -> None:
    tracker = AckTracker(FakeConnector(), mapping="m", ordered=True)
    records = [_record("p", n) for n in range(2)]
    for r in records:
        tracker.track(r)
    waiter = asyncio.create_task(tracker.committed(records[1:]))  # 0 pins it
    await tracker.settle(records[1:])
    await asyncio.sleep(0.01)
    assert not waiter.done()
    await tracker.interrupt()
    await asyncio.wait_for(waiter, 5)
    assert tracker.tracked == 2


async def test_an_unexpected_commit_error_is_retried_not_lost() -> None:
    class Broken(FakeConnector):
        calls = 0

        async def commit(self, records: Sequence[Record]) -> None:
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("bug")
            await super().commit(records)

    connector = Broken()
    tracker = AckTracker(connector, mapping="m", ordered=True)
    record = _record("p", 0)
    tracker.track(record)
    await tracker.settle([record])
    await asyncio.wait_for(tracker.committed([record]), 5)
    assert connector.commits == [[0]]


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
    assert [n for c in connector.commits for n in c] == list(range(10))
    assert len(target.payloads) == 5
    pipeline.stop()
    await asyncio.wait_for(run, 5)
    assert pipeline.tracker.tracked == 0


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
    assert connector.commits == [[0, 1]]


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
