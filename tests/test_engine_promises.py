"""The engine's promises, each attacked by a fake source or target that misbehaves:
a partition that fails forever, a revoke during retries, an exception nobody expected,
a source whose release hangs on stop. Pure engine logic, so fakes are the right tool;
the same promises against real servers are in tests/connectors and tests/e2e."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import pytest

from bridge.connector import BaseConnector, FailureContext, PartitionControl, Record
from bridge.errors import FunctionError, TargetUnavailable
from bridge.pipeline import Pipeline, PipelineOptions
from bridge.retry import RetryPolicy

ARN = "arn:aws:lambda:us-east-1:000000000000:function:f"


class Backlog(BaseConnector):
    """An ordered source with an endless backlog in every partition (a busy Kafka topic):
    each read round hands over up to ``chunk`` records of every partition, no more than
    the engine has room for (``room``, as the Kafka and DynamoDB sources ask). Counts what
    it handed over and what was committed, per partition."""

    ordered = True
    pausable = True

    def __init__(self, partitions: Sequence[str], *, chunk: int = 50) -> None:
        self.partitions = list(partitions)
        self.chunk = chunk
        self.next = dict.fromkeys(self.partitions, 0)
        self.committed = dict.fromkeys(self.partitions, -1)
        self.closed = False
        self.control = PartitionControl()

    async def open(self) -> None:
        self.control.reading(self.partitions)  # as Kafka does on an assignment

    async def aclose(self) -> None:
        self.closed = True

    def take(self, partition: str) -> int:
        return min(self.chunk, self.control.room(partition))

    async def read(self) -> Any:
        while True:
            chunk = []
            for p in self.partitions:
                for _ in range(self.take(p)):
                    chunk.append(Record(partition=p, position=self.next[p], data=None))
                    self.next[p] += 1
            if chunk:
                yield chunk
            await asyncio.sleep(0.002)

    def held(self, partition: str) -> int:
        """Records of ``partition`` handed to the engine and not committed."""
        return self.next[partition] - 1 - self.committed[partition]

    def normalize(self, record: Record) -> dict[str, Any]:
        return {"p": record.partition, "n": record.position}

    def item_identifier(self, record: Record) -> Hashable:
        return f"{record.partition}:{record.position}"

    def failure_record(self, records: Sequence[Record], ctx: FailureContext) -> dict[str, Any]:
        return {"condition": ctx.condition, "n": [r.position for r in records]}

    async def commit(self, records: Sequence[Record]) -> None:
        last = records[-1]
        assert last.position > self.committed[last.partition], "commits go forward"
        self.committed[last.partition] = last.position


class Function:
    """A target that runs ``behaviour(partition, positions)`` per invocation: return bytes,
    or raise. Records every invocation as (partition, positions, monotonic time)."""

    name = "fake"

    def __init__(self, behaviour: Callable[[str, list[int]], bytes] | None = None) -> None:
        self.behaviour = behaviour or (lambda _p, _n: b"{}")
        self.calls: list[tuple[str, list[int], float]] = []

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    async def invoke(self, payload: bytes, *, request_id: str, timeout: float | None) -> bytes:
        records = json.loads(payload)["Records"]
        partition = records[0]["p"]
        positions = [r["n"] for r in records]
        self.calls.append((partition, positions, time.monotonic()))
        await asyncio.sleep(0)
        return self.behaviour(partition, positions)

    def count(self, partition: str, since: float = 0.0) -> int:
        return sum(1 for p, _, t in self.calls if p == partition and t >= since)


class Sink:
    uri = "memory://"

    def __init__(self) -> None:
        self.documents: list[dict[str, Any]] = []

    async def write(self, documents: Sequence[dict[str, Any]]) -> None:
        self.documents.extend(documents)

    async def aclose(self) -> None: ...


def pipeline(
    connector: BaseConnector,
    function: Function,
    *,
    batch_size: int = 10,
    concurrency: int = 10,
    shutdown_timeout: float = 5.0,
    partitions: PartitionControl | None = None,
    sink: Sink | None = None,
    **policy: Any,
) -> Pipeline:
    options = PipelineOptions(
        batch_size=batch_size,
        window=0,
        maximum_concurrency=concurrency,
        policy=RetryPolicy(backoff_initial_seconds=0.001, backoff_max_seconds=0.005, **policy),
        shutdown_timeout=shutdown_timeout,
    )
    return Pipeline(
        mapping="m",
        connector=connector,  # type: ignore[arg-type]
        target=function,  # type: ignore[arg-type]
        destination=sink or Sink(),  # type: ignore[arg-type]
        options=options,
        filters=None,
        function_arn=ARN,
        partitions=partitions,
    )


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def _fail_partition(bad: str) -> Callable[[str, list[int]], bytes]:
    def behaviour(partition: str, _positions: list[int]) -> bytes:
        if partition == bad:
            raise FunctionError("always fails", error_type="Boom")
        return b"{}"

    return behaviour


# ------------------------------------------------------------------ isolation


async def test_a_partition_failing_forever_holds_up_only_itself() -> None:
    source = Backlog(["A", "B"])
    function = Function(_fail_partition("A"))  # retried forever: Kafka's default
    run = asyncio.create_task(pipeline(source, function, partitions=source.control).run())
    try:
        await asyncio.sleep(1.0)
        later = time.monotonic()
        await asyncio.sleep(1.0)
        # B keeps flowing long after A's records would have filled a shared read-ahead
        assert function.count("B", since=later) >= 20
        assert source.committed["B"] > 1000
        assert source.committed["A"] == -1
        # and A, paused (no room), holds its share: half the read-ahead of 1,000
        assert source.control.room("A") == 0
        assert source.held("A") <= 500
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)


class UnpausableBacklog(Backlog):
    """The same backlog from a source that cannot choose what it reads (it never asks
    for room)."""

    pausable = False

    def take(self, partition: str) -> int:
        return self.chunk


async def test_without_pausing_the_shared_read_ahead_still_bounds_memory() -> None:
    source = UnpausableBacklog(["A", "B"])
    function = Function(_fail_partition("A"))
    run = asyncio.create_task(
        pipeline(source, function, batch_size=10, partitions=source.control).run()
    )
    try:
        await asyncio.sleep(1.0)
        held = source.held("A") + source.held("B")
        assert held <= 1000 + 2 * source.chunk  # the mapping's read-ahead, one chunk over
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)


# ------------------------------------------------------------------ revoke


async def test_revoke_is_final_no_invocation_after_it_returns() -> None:
    source = Backlog(["A", "B"])
    control = source.control
    function = Function(_fail_partition("A"))
    pipe = pipeline(source, function, shutdown_timeout=0.2, partitions=control)
    run = asyncio.create_task(pipe.run())
    try:
        await eventually(lambda: function.count("A") >= 5)
        await control.revoke(["A"])
        after = time.monotonic()
        source.partitions.remove("A")  # the new owner has it; our source reads B only
        await asyncio.sleep(0.5)
        assert function.count("A", since=after) == 0
        # B was not disturbed and the slots A held are free again
        later = time.monotonic()
        await asyncio.sleep(0.3)
        assert function.count("B", since=later) > 0
        assert source.committed["A"] == -1
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)


async def test_revoke_commits_what_settled_before_it_returns() -> None:
    source = Backlog(["A"], chunk=10)
    control = source.control
    function = Function()
    pipe = pipeline(source, function, partitions=control)
    run = asyncio.create_task(pipe.run())
    try:
        await eventually(lambda: source.committed["A"] >= 100)
        source.partitions.remove("A")
        await control.revoke(["A"])
        # everything delivered was committed: nothing delivered is left uncommitted
        delivered = max(n for _, positions, _ in function.calls for n in positions)
        assert source.committed["A"] == delivered
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)


class GatedFunction(Function):
    """Invocations of a partition wait until its gate is open; counts cancelled ones."""

    def __init__(self, partitions: Sequence[str]) -> None:
        super().__init__()
        self.gates = {p: asyncio.Event() for p in partitions}
        self.cancelled: list[str] = []

    async def invoke(self, payload: bytes, *, request_id: str, timeout: float | None) -> bytes:
        records = json.loads(payload)["Records"]
        partition = records[0]["p"]
        self.calls.append((partition, [r["n"] for r in records], time.monotonic()))
        try:
            await self.gates[partition].wait()
        except asyncio.CancelledError:
            self.cancelled.append(partition)
            raise
        return b"{}"


async def test_a_revoke_waits_for_its_own_batches_only_not_the_next_ones_of_their_slots() -> None:
    # one slot, A's batch in it and B's next: the revoke of A must wait for A's batch
    # only (not for whatever the slot delivers next), and cancel nothing of B's
    source = Backlog(["A", "B"], chunk=10)
    function = GatedFunction(["A", "B"])
    pipe = pipeline(source, function, concurrency=1, shutdown_timeout=5, partitions=source.control)
    run = asyncio.create_task(pipe.run())
    try:
        await eventually(lambda: len(function.calls) == 1)
        assert function.calls[0][0] == "A"
        revoking = asyncio.create_task(source.control.revoke(["A"]))
        await asyncio.sleep(0.05)
        source.partitions.remove("A")
        function.gates["A"].set()  # A's batch ends; B's next one hangs
        began = time.monotonic()
        await asyncio.wait_for(revoking, 2)
        assert time.monotonic() - began < 1.0
        await eventually(lambda: any(p == "B" for p, _, _ in function.calls))
        await asyncio.sleep(0.1)
        function.gates["B"].set()
        await eventually(lambda: source.committed["B"] >= 9)
        assert function.cancelled == []
        assert source.committed["A"] == 9  # its one batch, committed before the revoke ended
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)


# ------------------------------------------------------------------ unexpected errors


class Journal(Backlog):
    """A finite ordered source: ``count`` records in each partition, then nothing."""

    def __init__(self, partitions: Sequence[str], count: int) -> None:
        super().__init__(partitions, chunk=count)
        self.count = count

    async def read(self) -> Any:
        chunk = []
        for p in self.partitions:
            for n in range(self.count):
                chunk.append(Record(partition=p, position=n, data=None))
            self.next[p] = self.count
        yield chunk
        await asyncio.Event().wait()


async def test_an_unexpected_target_exception_is_retried_not_wedged() -> None:
    failures = Counter[str]()

    def behaviour(partition: str, positions: list[int]) -> bytes:
        if positions[0] == 10 and failures[partition] < 3:
            failures[partition] += 1
            raise RuntimeError("a bug in a target: neither unavailable nor a function error")
        return b"{}"

    source = Journal(["A"], count=30)
    function = Function(behaviour)
    sink = Sink()
    run = asyncio.create_task(pipeline(source, function, sink=sink).run())
    try:
        await eventually(lambda: source.committed["A"] == 29)
        delivered = sorted({n for _, positions, _ in function.calls for n in positions})
        assert delivered == list(range(30)) and sink.documents == []
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)


class BrokenEncoding(Journal):
    """A connector with a bug: building the event of one batch raises."""

    def __init__(self, partitions: Sequence[str], count: int) -> None:
        super().__init__(partitions, count)
        self.opens = 0

    async def open(self) -> None:
        self.opens += 1

    def encode_event(self, records: Sequence[Record]) -> bytes:
        if records[0].position == 10 and self.opens == 1:
            raise KeyError("bug")
        return super().encode_event(records)


async def test_a_bug_in_the_bridge_fails_the_pipeline_which_restarts_from_its_checkpoint(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = BrokenEncoding(["A", "B"], count=30)
    function = Function()
    pipe = pipeline(source, function)
    with pytest.raises(KeyError):
        await asyncio.wait_for(pipe.run(), 10)
    # logged once, with its traceback; nothing after the broken batch was committed in A
    assert sum("KeyError" in (r.exc_text or "") for r in caplog.records) == 1
    assert source.committed["A"] < 10 and source.closed
    # B was drained as on a stop: what it delivered was committed
    delivered_b = max(n for p, positions, _ in function.calls if p == "B" for n in positions)
    assert source.committed["B"] == delivered_b >= 9


# ------------------------------------------------------------------ stopping


class StuckRelease(Backlog):
    """An unordered source (SQS-like) whose ``release`` never returns."""

    ordered = False
    pausable = False
    redelivery = "source"

    async def release(self, records: Sequence[Record]) -> None:
        await asyncio.Event().wait()

    async def commit(self, records: Sequence[Record]) -> None:
        return None


async def test_a_stop_that_overruns_still_closes_the_connector() -> None:
    source = StuckRelease(["q"], chunk=5)

    async def slow(*_: Any) -> bytes:
        await asyncio.sleep(3600)
        return b"{}"

    function = Function()
    function.invoke = lambda payload, **_: slow()  # type: ignore[method-assign]
    pipe = pipeline(source, function, shutdown_timeout=0.2)
    run = asyncio.create_task(pipe.run())
    await asyncio.sleep(0.2)
    pipe.stop()
    done, _ = await asyncio.wait({run}, timeout=5)
    if not done:  # the supervisor's last resort: cancel the runner
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
    assert source.closed


# ------------------------------------------------------------------ outages still wait


async def test_an_outage_is_not_a_bug_and_keeps_the_pipeline_running() -> None:
    state = {"down": True}

    def behaviour(_p: str, _n: list[int]) -> bytes:
        if state["down"]:
            raise TargetUnavailable("connection refused")
        return b"{}"

    source = Journal(["A"], count=20)
    function = Function(behaviour)
    run = asyncio.create_task(pipeline(source, function).run())
    try:
        await asyncio.sleep(0.3)
        assert not run.done() and source.committed["A"] == -1
        state["down"] = False
        await eventually(lambda: source.committed["A"] == 19)
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)


class BrokenNormalize(Journal):
    """``normalize`` has a bug that only one record triggers."""

    def normalize(self, record: Record) -> dict[str, Any]:
        if record.position == 5:
            raise ValueError("a bug in normalize")
        return super().normalize(record)


async def test_a_record_that_breaks_normalize_is_dead_lettered_in_its_place() -> None:
    source = BrokenNormalize(["A"], count=12)
    function = Function()
    sink = Sink()
    run = asyncio.create_task(pipeline(source, function, sink=sink, batch_size=4).run())
    try:
        await eventually(lambda: source.committed["A"] == 11)
        [document] = sink.documents
        assert document["requestContext"]["condition"] == "RecordNotNormalized"
        assert "unexpected ValueError: a bug in normalize" in document["errorMessage"]
        assert document["source"]["position"] == "5"
        delivered = [n for _, positions, _ in function.calls for n in positions]
        assert delivered == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11]  # in order, around it
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
