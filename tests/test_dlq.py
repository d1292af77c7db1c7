"""``trigger-bridge dlq list | show | replay`` over ``file://`` destinations, with a real
function (awslambdaric under the runtime target) and the real command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bridge.connector import FailureContext
from bridge.dlq import StoredLetter, plan, stable_id
from bridge.events import not_normalized_record, stream_failure_base
from tests.e2e.harness import RunningBridge, failures, wait_for
from tests.support.dlq import cli, events, fix_function, flaky_function


def folder_config(tmp: Path, *, on_failure: str = "") -> str:
    return f"""
state_dir: {tmp}/state
retry_backoff: {{initial_seconds: 0.01, max_seconds: 0.05}}
shutdown_timeout_seconds: 5
functions:
{flaky_function(tmp)}
mappings:
  - name: inbox
    function: flaky
    source: {{type: local_dir, path: {tmp}/inbox, events: ["s3:ObjectCreated:*"]}}
    maximum_retry_attempts: 0
    {on_failure}
"""


async def dead_letter_two_files(tmp: Path) -> tuple[Path, Path]:
    """Run the bridge until both files of the inbox were dead-lettered; return the
    config file and the default failure file."""
    config = tmp / "bridge.yaml"
    config.write_text(folder_config(tmp))
    dead = tmp / "state" / "failures" / "inbox.jsonl"
    (tmp / "inbox").mkdir()
    async with RunningBridge(config.read_text()):
        (tmp / "inbox" / "a.txt").write_text("a")
        (tmp / "inbox" / "b.txt").write_text("bb")
        await wait_for(lambda: len(failures(dead)) == 2)
    return config, dead


def keys(event: dict[str, Any]) -> list[str]:
    return [r["s3"]["object"]["key"] for r in event["Records"]]


async def test_replay_redelivers_dead_letters_once_then_never_again(tmp_path: Path) -> None:
    config, dead = await dead_letter_two_files(tmp_path)
    originals = [d["requestPayload"] for d in failures(dead)]

    listed = await cli("dlq", "list", "--config", str(config), "--json")
    assert listed.status == 0, listed.err
    letters = listed.json()
    assert [x["condition"] for x in letters] == ["RetriesExhausted", "RetriesExhausted"]
    assert {x["mapping"] for x in letters} == {"inbox"}
    assert [x["replay"]["how"] for x in letters] == ["payload", "payload"]
    assert [x["replayed"] for x in letters] == [None, None]
    assert all(0 <= x["age_seconds"] < 60 for x in letters)
    assert [x["location"] for x in letters] == [f"{dead}:1", f"{dead}:2"]

    fix_function(tmp_path)
    before = len(events(tmp_path))
    replayed = await cli("dlq", "replay", "--config", str(config))
    assert replayed.status == 0, replayed.out + replayed.err
    assert "replayed 2, skipped 0" in replayed.out
    assert events(tmp_path)[before:] == originals  # the original events, unchanged

    listed = (await cli("dlq", "list", "--config", str(config), "--json")).json()
    assert all(x["replayed"]["how"] == "invoke" for x in listed)
    table = (await cli("dlq", "list", "--config", str(config))).out
    assert table.count("RetriesExhausted") == 2 and "inbox" in table

    again = await cli("dlq", "replay", "--config", str(config))
    assert again.status == 0
    assert "replayed 0, skipped 2" in again.out
    assert len(events(tmp_path)) == before + 2  # nothing delivered a second time

    first = letters[0]["id"]
    forced = await cli("dlq", "replay", "--config", str(config), "--force", first[:6])
    assert forced.status == 0 and "replayed 1," in forced.out
    assert events(tmp_path)[-1] == originals[0]


async def test_a_replay_the_function_still_fails_is_not_marked(tmp_path: Path) -> None:
    config, _ = await dead_letter_two_files(tmp_path)
    failed = await cli("dlq", "replay", "--config", str(config))
    assert failed.status == 1
    assert "failed 2" in failed.out and "the function is broken for now" in failed.out
    listed = (await cli("dlq", "list", "--config", str(config), "--json")).json()
    assert [x["replayed"] for x in listed] == [None, None]

    fix_function(tmp_path)
    assert "replayed 2," in (await cli("dlq", "replay", "--config", str(config))).out


async def test_show_prints_one_dead_letter_by_id_prefix(tmp_path: Path) -> None:
    config, dead = await dead_letter_two_files(tmp_path)
    line = dead.read_bytes().splitlines()[1]
    letter_id = stable_id(line)
    shown = await cli("dlq", "show", letter_id[:8], "--config", str(config), "--json")
    assert shown.status == 0, shown.err
    assert shown.json()["document"] == json.loads(line)
    assert shown.json()["location"] == f"{dead}:2"
    text = await cli("dlq", "show", letter_id, "--config", str(config))
    assert f"id:          {letter_id}" in text.out and "replayed:    no" in text.out

    missing = await cli("dlq", "show", "ffffffffffffffff", "--config", str(config))
    assert missing.status == 2 and "no dead letter 'ffffffffffffffff'" in missing.err


def write_config(tmp: Path, dead: Path) -> Path:
    config = tmp / "bridge.yaml"
    config.write_text(folder_config(tmp, on_failure=f"on_failure: file://{dead}"))
    return config


async def test_a_torn_line_is_named_by_file_and_line_and_not_replayed(tmp_path: Path) -> None:
    dead = tmp_path / "dead.jsonl"
    good = {"version": "1.0", "timestamp": "2024-01-01T00:00:00.000Z", "requestPayload": None}
    dead.write_text(json.dumps(good) + '\n{"version": "1.0", "requestCon\n')
    config = write_config(tmp_path, dead)
    listed = await cli("dlq", "list", "--config", str(config), "--json")
    assert listed.status == 0
    assert f"{dead}:2: not JSON (a line torn by a crash?)" in listed.err
    assert [x["condition"] for x in listed.json()] == ["?", "Unreadable"]

    replayed = await cli("dlq", "replay", "--config", str(config), "--mapping", "inbox")
    assert replayed.status == 1
    assert "cannot be replayed 2" in replayed.out
    assert f"{dead}:2: not JSON" in replayed.out
    assert "neither an event nor where its records are" in replayed.out
    assert events(tmp_path) == []  # nothing was invoked


async def test_an_unknown_mapping_is_a_usage_error_naming_the_known_ones(tmp_path: Path) -> None:
    config = write_config(tmp_path, tmp_path / "dead.jsonl")
    ran = await cli("dlq", "list", "--config", str(config), "--mapping", "nope")
    assert ran.status == 2
    assert "unknown mapping 'nope' (mappings: inbox)" in ran.err
    empty = await cli("dlq", "list", "--config", str(config))
    assert empty.status == 0 and empty.out.strip() == "no dead letters"


def _letter(document: dict[str, Any]) -> StoredLetter:
    data = json.dumps(document).encode()
    return StoredLetter(stable_id(data), "x:1", document)


def test_records_that_carry_neither_event_nor_position_say_why_they_cannot_be_replayed() -> None:
    ctx = FailureContext(condition="TargetRejected", function_arn="arn", request_id="r", attempts=1)
    sqs = {**stream_failure_base(ctx, 0), "SQSBatchInfo": {"messageIds": ["m1"]}}
    assert plan(_letter(sqs)).how is None
    assert "message ids only" in plan(_letter(sqs)).detail
    shapeless = not_normalized_record(
        "bad bytes", function_arn="arn", mapping="m", partition="p", position=3, now=0
    )
    assert plan(_letter(shapeless)).how is None
    assert "could not be shaped (bad bytes)" in plan(_letter(shapeless)).detail
    kafka = {
        **stream_failure_base(ctx, 0),
        "KafkaBatchInfo": {"recordsInfo": {"t-0": {"firstRecordOffset": "3"}}},
    }
    kafka["KafkaBatchInfo"]["recordsInfo"]["t-0"]["lastRecordOffset"] = "5"
    assert plan(_letter(kafka)) == plan(_letter(kafka))
    assert plan(_letter(kafka)).how == "re-read" and "t-0@3..5" in plan(_letter(kafka)).detail


def test_a_stored_record_keeps_its_id_across_reads() -> None:
    assert stable_id(b'{"a": 1}') == stable_id(b'{"a": 1}')
    assert stable_id(b'{"a": 1}') != stable_id(b'{"a": 2}')
