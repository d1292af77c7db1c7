"""End to end: journal source -> engine -> runtime target -> real awslambdaric."""

from __future__ import annotations

import json
from pathlib import Path

from bridge.checkpoints import SqliteCheckpointStore
from tests.e2e.harness import (
    RunningBridge,
    calls,
    config_text,
    delivered_lines,
    failures,
    wait_for,
    write_journal,
)


def _mapping(tmp: Path, *, source: str = "journal", partitions: int = 1, **options: object) -> str:
    lines = [
        "  - name: m",
        "    function: recorder",
        f"    source: {{type: {source}, path: {tmp}/journal.jsonl, partitions: {partitions}}}",
        f"    on_failure: file://{tmp}/failures.jsonl",
    ]
    lines += [f"    {k}: {json.dumps(v)}" for k, v in options.items()]
    return "\n".join(lines)


async def _committed(tmp: Path) -> dict[str, str]:
    store = SqliteCheckpointStore(tmp / "state" / "checkpoints.sqlite3")
    try:
        return await store.namespace("m").items()
    finally:
        store.close()


async def test_every_record_arrives_in_partition_order(tmp_path: Path) -> None:
    write_journal(tmp_path / "journal.jsonl", [{"n": i} for i in range(150)])
    text = config_text(tmp_path, _mapping(tmp_path, partitions=3, batch_size=7))
    async with RunningBridge(text):
        await wait_for(lambda: len(set(delivered_lines(tmp_path))) == 150)
    lines = delivered_lines(tmp_path)
    assert sorted(lines) == list(range(150))  # each exactly once
    for partition in range(3):
        mine = [n for n in lines if n % 3 == partition]
        assert mine == sorted(mine), f"partition {partition} out of order"
    assert all(len(c["lines"]) <= 7 for c in calls(tmp_path))
    assert all(len(set(c["partitions"])) == 1 for c in calls(tmp_path))
    assert await _committed(tmp_path) == {"0": "147", "1": "148", "2": "149"}


async def test_handler_error_is_retried_then_dead_lettered(tmp_path: Path) -> None:
    bodies = [{"n": i} for i in range(6)]
    bodies[3] = {"poison": True}
    write_journal(tmp_path / "journal.jsonl", bodies)
    text = config_text(tmp_path, _mapping(tmp_path, batch_size=1, maximum_retry_attempts=2))
    async with RunningBridge(text):
        await wait_for(lambda: 5 in delivered_lines(tmp_path))
        await wait_for(lambda: (tmp_path / "failures.jsonl").exists())
    assert delivered_lines(tmp_path).count(3) == 3  # one attempt + two retries
    [failure] = failures(tmp_path / "failures.jsonl")
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 3
    assert failure["requestContext"]["functionArn"] == (
        "arn:aws:lambda:us-east-1:000000000000:function:recorder"
    )
    assert failure["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert failure["version"] == "1.0"
    assert failure["JournalBatchInfo"] == {
        "partition": "0",
        "firstLine": 3,
        "lastLine": 3,
        "batchSize": 1,
    }
    assert await _committed(tmp_path) == {"0": "5"}  # the dead letter settled line 3


async def test_bisect_isolates_the_poison_record(tmp_path: Path) -> None:
    bodies = [{"n": i} for i in range(8)]
    bodies[5] = {"poison": True}
    write_journal(tmp_path / "journal.jsonl", bodies)
    mapping = _mapping(
        tmp_path,
        batch_size=8,
        maximum_batching_window_seconds=1,
        maximum_retry_attempts=0,
        bisect_batch_on_function_error=True,
    )
    async with RunningBridge(config_text(tmp_path, mapping)):
        await wait_for(lambda: (tmp_path / "failures.jsonl").exists())
        await wait_for(lambda: 7 in delivered_lines(tmp_path))
    [failure] = failures(tmp_path / "failures.jsonl")
    assert failure["JournalBatchInfo"]["firstLine"] == 5
    assert failure["JournalBatchInfo"]["batchSize"] == 1
    batches = [c["lines"] for c in calls(tmp_path)]
    assert batches[0] == list(range(8))
    assert [4, 5] in batches and [5] in batches  # halved down to the poison record
    succeeded = {n for b in batches if 5 not in b for n in b}
    assert succeeded == {0, 1, 2, 3, 4, 6, 7}


async def test_partial_batch_response_on_ordered_source_retries_from_first_failure(
    tmp_path: Path,
) -> None:
    bodies = [{"n": i} for i in range(6)]
    bodies[2] = {"report_once": True}
    write_journal(tmp_path / "journal.jsonl", bodies)
    mapping = _mapping(
        tmp_path,
        batch_size=6,
        maximum_batching_window_seconds=1,
        function_response_types=["ReportBatchItemFailures"],
    )
    async with RunningBridge(config_text(tmp_path, mapping)):
        await wait_for(lambda: len(calls(tmp_path)) >= 2)
    batches = [c["lines"] for c in calls(tmp_path)]
    assert batches == [[0, 1, 2, 3, 4, 5], [2, 3, 4, 5]]  # as AWS does for streams
    assert await _committed(tmp_path) == {"0": "5"}


async def test_partial_batch_response_on_unordered_source_redelivers_only_failed(
    tmp_path: Path,
) -> None:
    bodies = [{"n": i} for i in range(6)]
    bodies[2] = {"report_once": True}
    bodies[4] = {"report_once": True}
    write_journal(tmp_path / "journal.jsonl", bodies)
    mapping = _mapping(
        tmp_path,
        source="journal_unordered",
        batch_size=6,
        maximum_batching_window_seconds=1,
        function_response_types=["ReportBatchItemFailures"],
    )
    async with RunningBridge(config_text(tmp_path, mapping)):
        await wait_for(lambda: len(calls(tmp_path)) >= 2)
    batches = [c["lines"] for c in calls(tmp_path)]
    assert batches == [[0, 1, 2, 3, 4, 5], [2, 4]]


async def test_invalid_record_is_dead_lettered_and_the_rest_flow(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    write_journal(journal, [{"n": 0}])
    with journal.open("a") as f:
        f.write("this is not json\n")
    write_journal(journal, [{"n": 2}])
    async with RunningBridge(config_text(tmp_path, _mapping(tmp_path, batch_size=1))):
        await wait_for(lambda: 2 in delivered_lines(tmp_path))
        await wait_for(lambda: (tmp_path / "failures.jsonl").exists())
    assert delivered_lines(tmp_path) == [0, 2]
    [failure] = failures(tmp_path / "failures.jsonl")
    assert failure["requestContext"]["condition"] == "RecordNotNormalized"
    assert "line 1: not JSON" in failure["errorMessage"]
    await wait_for(lambda: True)
    assert await _committed(tmp_path) == {"0": "2"}


async def test_filtered_out_records_are_settled_not_delivered(tmp_path: Path) -> None:
    write_journal(tmp_path / "journal.jsonl", [{"keep": i % 2 == 0, "n": i} for i in range(10)])
    mapping = _mapping(
        tmp_path,
        batch_size=1,
        filter_criteria={"filters": [{"pattern": '{"body": {"keep": [true]}}'}]},
    )
    async with RunningBridge(config_text(tmp_path, mapping)):
        await wait_for(lambda: 8 in delivered_lines(tmp_path))
        await wait_for(lambda: True)
    assert delivered_lines(tmp_path) == [0, 2, 4, 6, 8]
    committed = await _committed(tmp_path)
    assert committed == {"0": "9"}  # line 9 was filtered out, and settled


async def test_transient_function_errors_are_retried_until_success(tmp_path: Path) -> None:
    write_journal(tmp_path / "journal.jsonl", [{"n": 0}, {"fail_first": 2}, {"n": 2}])
    text = config_text(tmp_path, _mapping(tmp_path, batch_size=1, maximum_retry_attempts=5))
    async with RunningBridge(text):
        await wait_for(lambda: 2 in delivered_lines(tmp_path))
    assert delivered_lines(tmp_path) == [0, 1, 1, 1, 2]
    assert not (tmp_path / "failures.jsonl").exists()


async def test_failing_source_is_reopened_with_backoff_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    from bridge import telemetry

    write_journal(tmp_path / "journal.jsonl", [{"n": i} for i in range(20)])
    mapping = _mapping(tmp_path, batch_size=3).replace(
        "partitions: 1}", "partitions: 1, fail_opens: 2, fail_read_at_line: 10}"
    )
    before = telemetry.counters().get((telemetry.SOURCE_UNAVAILABLE, "m"), 0)
    async with RunningBridge(config_text(tmp_path, mapping)):
        await wait_for(lambda: set(delivered_lines(tmp_path)) == set(range(20)), timeout=30)
    assert telemetry.counters()[(telemetry.SOURCE_UNAVAILABLE, "m")] - before == 3
    lines = delivered_lines(tmp_path)
    assert lines == sorted(lines)  # the read failure drained, then resumed in order
    assert len(lines) - 20 <= 3  # at most a batch delivered twice
    assert await _committed(tmp_path) == {"0": "19"}
