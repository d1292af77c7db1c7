"""connectors.kafka.health: a lasting outage said once, its end said once."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest

from connectors.kafka import health
from connectors.kafka.health import BrokerWatch


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _lines(caplog: pytest.LogCaptureFixture, event: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "bridge" and r.getMessage().startswith(event + " ")
    ]


def test_a_lasting_outage_is_said_once_and_its_end_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = _Clock()
    watch = BrokerWatch("m", after=3.0, clock=clock, wall=lambda: 1_700_000_000.0)
    caplog.set_level(logging.INFO, logger="bridge")

    def run(reason: str | None, seconds: float) -> None:
        for _ in range(int(seconds * 2)):  # looked at twice a second
            watch.observe(reason)
            clock.now += 0.5

    run(None, 5)
    run("gone", 2.5)  # a blip (a coordinator moving to another broker) is no outage
    run(None, 1)
    assert not _lines(caplog, "source.unavailable")
    run("gone", 20)
    assert watch.unavailable
    run(None, 5)
    run("gone", 1)
    assert _lines(caplog, "source.unavailable") == [
        "source.unavailable mapping=m since=2023-11-14T22:13:20.000Z reason=gone"
    ]
    assert _lines(caplog, "source.recovered") == ["source.recovered mapping=m after=20.0s"]
    assert not watch.unavailable
    assert all(r.levelno == logging.WARNING for r in caplog.records)


async def test_every_watch_of_a_process_is_looked_at_by_one_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An idle mapping costs no wake-ups of its own: one task looks at every consumer of
    the loop, and it ends with the last watch."""
    monkeypatch.setattr(health, "CHECK_EVERY", 0.02)

    class _Consumer:
        def __init__(self) -> None:
            self.lookers: list[asyncio.Task[Any] | None] = []

        @property
        def _coordinator(self) -> Any:
            self.lookers.append(asyncio.current_task())
            return SimpleNamespace(coordinator_id=1)

    consumers = [_Consumer() for _ in range(3)]
    runs = [
        asyncio.create_task(BrokerWatch(f"m{i}").run(c, "h:1")) for i, c in enumerate(consumers)
    ]
    await asyncio.sleep(0.2)
    lookers = {task for c in consumers for task in c.lookers}
    assert len(lookers) == 1 and None not in lookers
    assert all(len(c.lookers) >= 3 for c in consumers)
    for run in runs:
        run.cancel()
    await asyncio.gather(*runs, return_exceptions=True)
    await asyncio.sleep(0)
    [looker] = lookers
    assert looker is not None and looker.done()
