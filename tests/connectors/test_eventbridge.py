"""Event buses end to end: boto3's `events` client putting events, rules
(`eventbridge` mappings) delivering them to a handler under awslambdaric."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import pytest
from botocore.exceptions import ClientError

from bridge.config import parse_config
from bridge.errors import ConfigError
from tests.e2e.harness import RunningBridge, wait_for

FUNCTION = Path(__file__).parent / "functions" / "events"
REPO = Path(__file__).resolve().parents[2]


def config(tmp: Path, rules: dict[str, dict[str, Any]], *, port: int = 0, **extra: Any) -> str:
    function = {
        "type": "runtime",
        "command": "python -m awslambdaric app.handler",
        "cwd": str(FUNCTION),
        "env": {"RECORDER_OUT": str(tmp / "calls.jsonl")},
        "concurrency": 2,
    }
    mappings = [
        {"name": name, "function": "f", "source": {"type": "eventbridge", **source}}
        for name, source in rules.items()
    ]
    document = {
        "state_dir": str(tmp / "state"),
        "retry_backoff": {"initial_seconds": 0.01, "max_seconds": 0.05},
        "functions": {"f": function},
        "event_buses": [{"name": "default", "port": port}],
        "mappings": mappings,
        **extra,
    }
    return json.dumps(document)


def delivered(tmp: Path) -> list[Any]:
    out = tmp / "calls.jsonl"
    return (
        [json.loads(line)["event"] for line in out.read_text().splitlines()] if out.exists() else []
    )


def events_client(address: str) -> Any:
    return boto3.client(
        "events",
        endpoint_url=f"http://{address}",
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )


async def bus_address(bridge: RunningBridge, name: str = "default") -> str:
    async with asyncio.timeout(10):
        while not bridge.supervisor.buses.get(name):  # noqa: ASYNC110 - polled state
            await asyncio.sleep(0.02)
    address = bridge.supervisor.buses[name]
    assert address is not None
    return address


def entry(source: str, detail: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"Source": source, "DetailType": "Order Placed", "Detail": json.dumps(detail), **more}


async def test_put_events_reach_the_rules_whose_patterns_match(tmp_path: Path) -> None:
    rules = {
        "big-orders": {
            "event_pattern": {
                "source": ["shop.orders"],
                "detail": {"amount": [{"numeric": [">", 100]}]},
            }
        },
        "all-shop": {"event_pattern": {"source": [{"prefix": "shop."}]}},
    }
    async with RunningBridge(config(tmp_path, rules)) as bridge:
        client = events_client(await bus_address(bridge))
        answer = await asyncio.to_thread(
            client.put_events,
            Entries=[
                entry("shop.orders", {"amount": 250, "id": "o-1"}, Resources=["arn:x"]),
                entry("shop.orders", {"amount": 5, "id": "o-2"}),
                entry("other", {"amount": 999}),
            ],
        )
        assert answer["FailedEntryCount"] == 0
        ids = [e["EventId"] for e in answer["Entries"]]
        await wait_for(lambda: len(delivered(tmp_path)) == 3, 20)
    events = delivered(tmp_path)
    by_id = {}
    for event in events:
        by_id.setdefault(event["id"], []).append(event)
    assert sorted(len(v) for v in by_id.values()) == [1, 2]  # o-1 matched both rules
    big = by_id[ids[0]][0]
    assert big["detail"] == {"amount": 250, "id": "o-1"} and big["resources"] == ["arn:x"]
    assert (big["source"], big["detail-type"], big["version"]) == (
        "shop.orders",
        "Order Placed",
        "0",
    )
    assert big["account"] == "000000000000" and big["region"] == "us-east-1"
    assert big["time"].endswith("Z") and len(big["time"]) == 20
    assert ids[2] not in by_id  # no rule wanted it


async def test_put_events_answers_as_eventbridge(tmp_path: Path) -> None:
    rules = {"r": {"event_pattern": {"source": ["a"]}}}
    async with RunningBridge(config(tmp_path, rules)) as bridge:
        client = events_client(await bus_address(bridge))
        answer = await asyncio.to_thread(
            client.put_events,
            Entries=[
                {"DetailType": "t", "Detail": "{}"},
                {"Source": "a", "Detail": "{}"},
                {"Source": "a", "DetailType": "t"},
                {"Source": "a", "DetailType": "t", "Detail": "[1, 2]"},
                {"Source": "a", "DetailType": "t", "Detail": "{}", "EventBusName": "other"},
                {"Source": "a", "DetailType": "t", "Detail": "{}"},
            ],
        )
        assert answer["FailedEntryCount"] == 5
        codes = [(e.get("ErrorCode"), e.get("ErrorMessage")) for e in answer["Entries"][:4]]
        assert codes == [
            (
                "InvalidArgument",
                "Parameter Source is not valid. Reason: Source is a required argument.",
            ),
            (
                "InvalidArgument",
                "Parameter DetailType is not valid. Reason: DetailType is a required argument.",
            ),
            (
                "InvalidArgument",
                "Parameter Detail is not valid. Reason: Detail is a required argument.",
            ),
            ("MalformedDetail", "Detail is malformed."),
        ]
        assert answer["Entries"][4]["ErrorCode"] == "InvalidArgument"
        assert "EventId" in answer["Entries"][5]
        with pytest.raises(ClientError) as eleven:
            await asyncio.to_thread(client.put_events, Entries=[entry("a", {})] * 11)
        assert eleven.value.response["Error"]["Code"] == "ValidationException"
        big = entry("a", {"pad": "x" * (130 * 1024)})
        with pytest.raises(ClientError) as large:
            await asyncio.to_thread(client.put_events, Entries=[big, big])
        assert large.value.response["Error"]["Message"] == (
            "Total size of the entries in the request is over the limit."
        )
        listed = await asyncio.to_thread(client.list_rules)
        assert [r["Name"] for r in listed["Rules"]] == ["r"]
        described = await asyncio.to_thread(client.describe_rule, Name="r")
        assert json.loads(described["EventPattern"]) == {"source": ["a"]}
        assert described["Arn"] == "arn:aws:events:us-east-1:000000000000:rule/r"
        with pytest.raises(ClientError) as missing:
            await asyncio.to_thread(client.describe_rule, Name="nope")
        assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"


async def test_rule_inputs_input_path_and_input_transformer(tmp_path: Path) -> None:
    pattern = {"source": ["shop"]}
    rules = {
        "constant": {"event_pattern": pattern, "input": {"fixed": True}},
        "path": {"event_pattern": pattern, "input_path": "$.detail"},
        "template": {
            "event_pattern": pattern,
            "input_transformer": {
                "input_paths_map": {"id": "$.detail.id", "amount": "$.detail.amount"},
                "input_template": (
                    '{"order": "<id>", "total": <amount>, "rule": "<aws.events.rule-name>"}'
                ),
            },
        },
    }
    async with RunningBridge(config(tmp_path, rules)) as bridge:
        client = events_client(await bus_address(bridge))
        await asyncio.to_thread(
            client.put_events, Entries=[entry("shop", {"id": "o-9", "amount": 12.5})]
        )
        await wait_for(lambda: len(delivered(tmp_path)) == 3, 20)
    got = delivered(tmp_path)
    assert {"fixed": True} in got
    assert {"id": "o-9", "amount": 12.5} in got
    assert {"order": "o-9", "total": 12.5, "rule": "template"} in got


async def test_a_failing_event_is_retried_then_dead_lettered_and_holds_up_nothing(
    tmp_path: Path,
) -> None:
    failures = tmp_path / "failures.jsonl"
    rules = {"r": {"event_pattern": {"source": ["a"]}}}
    text = config(tmp_path, rules)
    document = json.loads(text)
    document["mappings"][0]["maximum_retry_attempts"] = 1
    document["mappings"][0]["on_failure"] = f"file://{failures}"
    async with RunningBridge(json.dumps(document)) as bridge:
        client = events_client(await bus_address(bridge))
        await asyncio.to_thread(
            client.put_events, Entries=[entry("a", {"fail": True}), entry("a", {"n": 2})]
        )
        await wait_for(lambda: failures.exists() and failures.read_text().strip() != "", 20)
    [failure] = [json.loads(line) for line in failures.read_text().splitlines()]
    assert failure["requestContext"]["condition"] == "RetriesExhausted"
    assert failure["requestPayload"]["detail"] == {"fail": True}
    assert [e["detail"] for e in delivered(tmp_path)].count({"fail": True}) == 2
    assert {"n": 2} in [e["detail"] for e in delivered(tmp_path)]


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        (
            {
                "source": {
                    "type": "eventbridge",
                    "event_bus_name": "nope",
                    "event_pattern": {"source": ["a"]},
                }
            },
            "unknown event bus 'nope'",
        ),
        ({"source": {"type": "eventbridge", "event_pattern": {"source": "a"}}}, "event_pattern"),
        (
            {
                "source": {"type": "eventbridge", "event_pattern": {"source": ["a"]}},
                "batch_size": 5,
            },
            "batch_size",
        ),
    ],
)
def test_a_bad_rule_is_a_config_error(mapping: dict[str, Any], message: str) -> None:
    document = {
        "functions": {"f": {"type": "http", "url": "http://127.0.0.1:9/"}},
        "event_buses": [{"name": "default"}],
        "mappings": [{"name": "r", "function": "f", **mapping}],
    }
    with pytest.raises(ConfigError) as error:
        parse_config(json.dumps(document), "bridge.yaml", {})
    assert message in str(error.value)


async def test_an_event_given_an_id_survives_kill_9(tmp_path: Path) -> None:
    """PutEvents is answered once the event is on disk: a bridge killed with SIGKILL before
    it could deliver (its function unreachable) delivers it after a restart."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rules = {"r": {"event_pattern": {"source": ["a"]}}}
    good = config(tmp_path, rules, port=port)
    document = json.loads(good)
    document["functions"]["f"] = {"type": "http", "url": "http://127.0.0.1:9/", "timeout": 1}
    path = tmp_path / "bridge.yaml"
    path.write_text(json.dumps(document))
    launch = [sys.executable, "-m", "bridge", "run", "--config", str(path), "--no-reload"]
    log = (tmp_path / "bridge.log").open("ab")
    first = subprocess.Popen(launch, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        client = events_client(f"127.0.0.1:{port}")
        await wait_for(lambda: "bus.started" in (tmp_path / "bridge.log").read_text(), 30)
        answer = await asyncio.to_thread(client.put_events, Entries=[entry("a", {"keep": 1})])
        event_id = answer["Entries"][0]["EventId"]
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    path.write_text(good)
    second = subprocess.Popen(launch, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        await wait_for(lambda: len(delivered(tmp_path)) >= 1, 60)
    finally:
        second.terminate()
        second.wait(timeout=30)
        log.close()
    [event] = delivered(tmp_path)
    assert event["id"] == event_id and event["detail"] == {"keep": 1}
