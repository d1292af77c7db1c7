"""The schedule source: due times fire once, durably, with a controllable clock; and a
real `rate(2 seconds)` schedule invoking a handler under awslambdaric."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bridge.checkpoints import SqliteCheckpointStore
from bridge.config import parse_config
from bridge.connector import ConnectorContext, Record
from bridge.errors import ConfigError
from connectors.schedule import ScheduleConnector
from connectors.schedule.config import ScheduleSource
from tests.e2e.harness import RunningBridge, wait_for

FUNCTION = Path(__file__).parent / "functions" / "events"
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC).timestamp()


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now_value = now
        self._moved = asyncio.Event()

    def now(self) -> float:
        return self.now_value

    def advance(self, seconds: float) -> None:
        self.now_value += seconds
        self._moved.set()

    async def sleep_until(self, moment: float) -> None:
        while self.now_value < moment:
            self._moved.clear()
            await self._moved.wait()


class Reader:
    """The connector's read(), pulled from the start (as the engine does), into a queue."""

    def __init__(self, connector: ScheduleConnector) -> None:
        self.connector = connector
        self.chunks: asyncio.Queue[list[float]] = asyncio.Queue()
        self.task = asyncio.create_task(self._pull(connector.read()))

    async def _pull(self, chunks: AsyncIterator[Sequence[Record]]) -> None:
        async for chunk in chunks:
            await self.chunks.put([float(r.position) for r in chunk])

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.connector.aclose()


class Harness:
    """Schedule connectors over one checkpoint store, as restarts of a bridge."""

    def __init__(self, tmp: Path, clock: FakeClock) -> None:
        self.store = SqliteCheckpointStore(tmp / "checkpoints.sqlite3")
        self.clock = clock
        self.readers: list[Reader] = []

    async def start(self, **source: Any) -> tuple[ScheduleConnector, Reader]:
        for old in self.readers:  # one bridge at a time
            await old.stop()
        self.readers = []
        config = ScheduleSource.model_validate({"type": "schedule", **source})
        context = ConnectorContext(mapping="nightly", checkpoints=self.store.namespace("nightly"))
        connector = ScheduleConnector(config, context)
        connector.clock = self.clock
        await connector.open()
        reader = Reader(connector)
        self.readers.append(reader)
        await asyncio.sleep(0.01)  # it looked at the clock
        return connector, reader


async def next_chunk(reader: Reader, timeout: float = 1.0) -> list[float]:
    return await asyncio.wait_for(reader.chunks.get(), timeout)


async def nothing_more(reader: Reader) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.chunks.get(), 0.2)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    made = Harness(tmp_path, FakeClock(T0))
    yield made
    for reader in made.readers:
        await reader.stop()
    made.store.close()


async def test_each_due_time_fires_once_when_due(harness: Harness) -> None:
    _, reader = await harness.start(expression="rate(1 minute)")
    pending = asyncio.ensure_future(next_chunk(reader, 5))
    await asyncio.sleep(0.05)
    assert not pending.done()
    harness.clock.advance(59)
    await asyncio.sleep(0.05)
    assert not pending.done()
    harness.clock.advance(1)
    assert await pending == [T0 + 60]
    harness.clock.advance(120)
    assert await next_chunk(reader) == [T0 + 120]
    assert await next_chunk(reader) == [T0 + 180]


@pytest.mark.parametrize(
    ("missed", "expected"),
    [("skip", []), ("latest", [T0 + 3600]), ("all", [T0 + 60 * k for k in range(1, 61)])],
)
async def test_times_missed_while_stopped_follow_the_missed_option(
    harness: Harness, missed: str, expected: list[float]
) -> None:
    await harness.start(expression="rate(1 minute)", missed=missed)
    await harness.readers[0].stop()  # stopped before anything came due
    harness.clock.advance(3600 + 30)  # an hour (and a half minute) later
    connector, reader = await harness.start(expression="rate(1 minute)", missed=missed)
    if expected:
        assert await next_chunk(reader) == expected
        await connector.commit([Record("schedule", expected[-1], expected[-1])])
    harness.clock.advance(30)
    assert await next_chunk(reader) == [T0 + 3660]  # then on time, on the same grid


async def test_a_time_fired_but_not_settled_is_delivered_again_after_a_restart(
    harness: Harness,
) -> None:
    connector, reader = await harness.start(expression="rate(1 minute)", missed="skip")
    harness.clock.advance(60)
    assert await next_chunk(reader) == [T0 + 60]
    harness.clock.advance(60)
    assert await next_chunk(reader) == [T0 + 120]
    await connector.commit([Record("schedule", T0 + 60, None)])  # 120 is still in flight
    connector, reader = await harness.start(expression="rate(1 minute)", missed="skip")
    assert await next_chunk(reader) == [T0 + 120]  # again, whatever `missed` says
    await nothing_more(reader)


async def test_a_changed_expression_starts_afresh(harness: Harness) -> None:
    await harness.start(expression="rate(1 minute)", missed="all")
    harness.clock.advance(600)
    _, reader = await harness.start(expression="rate(5 minutes)", missed="all")
    await nothing_more(reader)  # nothing "missed" under a schedule that did not exist
    harness.clock.advance(300)
    assert await next_chunk(reader) == [T0 + 900]


async def test_cron_in_a_time_zone_and_the_scheduled_event(harness: Harness) -> None:
    connector, reader = await harness.start(
        expression="cron(0 2 * * ? *)", timezone="Europe/Berlin", rule_name="nightly-report"
    )
    harness.clock.advance(24 * 3600)
    [due] = await next_chunk(reader)
    assert datetime.fromtimestamp(due, UTC) == datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # 02:00 CET
    event = connector.normalize(Record("schedule", due, due))
    assert event == {
        "version": "0",
        "id": event["id"],
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": "2026-03-02T01:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:000000000000:rule/nightly-report"],
        "detail": {},
    }
    again = connector.normalize(Record("schedule", due, due))
    assert again["id"] == event["id"]  # a redelivery carries the same id


async def test_an_at_schedule_fires_once_and_then_never(harness: Harness) -> None:
    connector, reader = await harness.start(expression="at(2026-03-01T13:00:00)", timezone="UTC")
    harness.clock.advance(3600)
    assert await next_chunk(reader) == [T0 + 3600]
    await connector.commit([Record("schedule", T0 + 3600, None)])
    harness.clock.advance(10 * 24 * 3600)
    await nothing_more(reader)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"expression": "rate(1 minutes)"}, "ScheduleExpression is not valid"),
        ({"expression": "cron(0 2 * * * *)"}, "ScheduleExpression is not valid"),
        ({"expression": "rate(5 minutes)", "timezone": "Mars/Olympus"}, "Mars/Olympus"),
        ({"expression": "rate(5 minutes)", "missed": "some"}, "missed"),
    ],
)
def test_bad_schedules_are_config_errors(source: dict[str, Any], message: str) -> None:
    document = {
        "functions": {"f": {"type": "http", "url": "http://127.0.0.1:9/"}},
        "mappings": [{"name": "s", "function": "f", "source": {"type": "schedule", **source}}],
    }
    with pytest.raises(ConfigError) as error:
        parse_config(json.dumps(document), "bridge.yaml", {})
    assert message in str(error.value)


def test_a_schedule_takes_one_event_per_invocation() -> None:
    document = {
        "functions": {"f": {"type": "http", "url": "http://127.0.0.1:9/"}},
        "mappings": [
            {
                "name": "s",
                "function": "f",
                "batch_size": 10,
                "source": {"type": "schedule", "expression": "rate(5 minutes)"},
            }
        ],
    }
    with pytest.raises(ConfigError, match="batch_size"):
        parse_config(json.dumps(document), "bridge.yaml", {})


async def test_a_real_two_second_rate_invokes_the_handler(tmp_path: Path) -> None:
    function = {
        "type": "runtime",
        "command": "python -m awslambdaric app.handler",
        "cwd": str(FUNCTION),
        "env": {"RECORDER_OUT": str(tmp_path / "calls.jsonl")},
    }
    mappings = [
        {
            "name": "tick",
            "function": "f",
            "source": {"type": "schedule", "expression": "rate(2 seconds)"},
        },
        {
            "name": "report",
            "function": "f",
            "source": {
                "type": "schedule",
                "expression": "rate(2 seconds)",
                "input": {"report": "daily"},
            },
        },
    ]
    document = {
        "state_dir": str(tmp_path / "state"),
        "functions": {"f": function},
        "mappings": mappings,
    }
    out = tmp_path / "calls.jsonl"

    def events() -> list[Any]:
        return (
            [json.loads(line)["event"] for line in out.read_text().splitlines()]
            if out.exists()
            else []
        )

    async with RunningBridge(json.dumps(document)):
        await wait_for(lambda: len(events()) >= 4, 20)
    got = events()
    scheduled = [
        e for e in got if isinstance(e, dict) and e.get("detail-type") == "Scheduled Event"
    ]
    assert {"report": "daily"} in got
    first, second = scheduled[:2]
    gap = datetime.fromisoformat(second["time"]) - datetime.fromisoformat(first["time"])
    assert gap.total_seconds() == 2
    assert first["resources"] == ["arn:aws:events:us-east-1:000000000000:rule/tick"]
