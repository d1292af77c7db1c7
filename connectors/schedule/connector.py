"""The ``schedule`` source: EventBridge schedules as an event source.

Each due time of the expression (:mod:`connectors.schedule.expressions`) is one record,
delivered as EventBridge's "Scheduled Event" (or the source's ``input``), one per
invocation, with asynchronous invocation's retries, event age and dead letters.

Durable and exact, with three checkpoints in the mapping's namespace:

- ``anchor``: when the schedule was first run (``rate()`` counts from it);
- ``fired``: the newest due time handed to the engine, written *before* it is handed
  over;
- ``done``: the newest due time settled (delivered or dead-lettered).

After a restart, the times in (``done``, ``fired``] fired before and are delivered again
(at least once); the times in (``fired``, now] came due while the bridge was not running,
and ``missed`` says what becomes of them (``skip``, ``latest``, ``all``). Then each time
fires once, when it is due. A changed expression or time zone starts afresh (nothing
missed). Waiting is by the wall clock, checked at least every 30 s, so a suspended
machine or a clock that jumps fires what came due at once, and no time twice.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Hashable, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, Protocol
from zoneinfo import ZoneInfo

from bridge.connector import BaseConnector, ConnectorContext, FailureContext, Record
from bridge.events import dumps, eventbridge_time
from connectors.s3_events import (
    ASYNC_INVOCATION_DEFAULTS,
    check_async_invocation,
    s3_async_failure_record,
)
from connectors.schedule.config import ScheduleSource
from connectors.schedule.expressions import Schedule, parse

__all__ = ["Clock", "ScheduleConnector", "sample_event", "scheduled_event"]

log = logging.getLogger(__name__)

_MISSED_ALL_MAX = 10_000
_PARTITION = "schedule"


class Clock(Protocol):
    """Wall-clock time (epoch seconds) and a way to wait for a moment of it."""

    def now(self) -> float: ...

    async def sleep_until(self, moment: float) -> None: ...


class WallClock:
    def now(self) -> float:
        return time.time()

    async def sleep_until(self, moment: float) -> None:
        while (left := moment - time.time()) > 0:  # noqa: ASYNC110 - the wall clock, no event
            await asyncio.sleep(min(left, 30.0))  # a clock that jumps is noticed


def scheduled_event(rule_arn: str, moment: float, *, account: str, region: str) -> dict[str, Any]:
    """EventBridge's Scheduled Event for the due time ``moment``; its ``id`` is the same
    every time this due time is delivered (a redelivery can be recognised)."""
    return {
        "version": "0",
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{rule_arn}#{moment!r}")),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": eventbridge_time(moment),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


def sample_event(
    *,
    rule: str = "my-schedule",
    time: str = "",
    region: str = "us-east-1",
    account: str = "000000000000",
) -> dict[str, Any]:
    """The Scheduled Event of ``rule`` for the due ``time`` (ISO 8601, UTC unless it says
    otherwise; default: this minute), as the source sends it without an ``input`` (the
    ``sample_event`` hook)."""
    if time:
        try:
            when = datetime.fromisoformat(time)
        except ValueError:
            raise ValueError(f"time {time!r}: ISO 8601, e.g. 2026-01-01T08:00:00Z") from None
        moment = (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    else:
        moment = datetime.now(UTC).replace(second=0, microsecond=0).timestamp()
    rule_arn = f"arn:aws:events:{region}:{account}:rule/{rule}"
    event = scheduled_event(rule_arn, moment, account=account, region=region)
    return dict(json.loads(dumps(event)))


class ScheduleConnector(BaseConnector):
    type: ClassVar[str] = "schedule"
    config_model: ClassVar[builtins.type[ScheduleSource]] = ScheduleSource
    ordered: ClassVar[bool] = True
    singleton: ClassVar[bool] = True  # one bridge at a time, with shared state
    redelivery: ClassVar[Literal["bridge", "source"]] = "bridge"
    # EventBridge invokes a rule's Lambda target asynchronously: 2 retries, 6 hours
    defaults: ClassVar[dict[str, Any]] = {**ASYNC_INVOCATION_DEFAULTS, "maximum_concurrency": 1}

    clock: Clock = WallClock()
    sample_event = staticmethod(sample_event)

    @classmethod
    def check_mapping(cls, options: dict[str, Any]) -> list[tuple[str, str]]:
        # an EventBridge target's RetryPolicy: 0 to 185 retries, 24 hours
        problems = check_async_invocation(
            options, max_retries=185, max_age=86400, what="an EventBridge target's retry policy"
        )
        size = options.get("batch_size")
        if size is not None and size != 1:
            problems.append(("batch_size", "must be 1 for a schedule: one event per invocation"))
        return problems

    def __init__(self, config: ScheduleSource, context: ConnectorContext) -> None:
        self.config = config
        self.context = context
        self.schedule: Schedule = parse(config.expression, allow_seconds=True)
        self.zone = ZoneInfo(config.timezone)
        rule = config.rule_name or context.mapping
        self.rule_arn = f"arn:aws:events:{context.region}:{context.account_id}:rule/{rule}"
        self.anchor = 0.0
        self.fired = 0.0
        self.done = 0.0

    async def open(self) -> None:
        saved = await self.context.checkpoints.items()
        now = self.clock.now()
        identity = json.dumps([self.config.expression, self.config.timezone])
        if saved.get("schedule") != identity:
            if saved:
                log.info("%s: the schedule changed: it starts afresh", self.context.mapping)
            self.anchor = self.fired = self.done = now
            await self.context.checkpoints.write(
                {
                    "schedule": identity,
                    "anchor": repr(now),
                    "fired": repr(now),
                    "done": repr(now),
                }
            )
            return
        self.anchor = float(saved["anchor"])
        self.fired = float(saved["fired"])
        self.done = float(saved["done"])

    async def aclose(self) -> None:
        return None

    # ------------------------------------------------------------ times

    def _dt(self, moment: float) -> datetime:
        return datetime.fromtimestamp(moment, UTC)

    def _times(self, after: float, upto: float) -> list[float]:
        """Due times in (after, upto], at most ``_MISSED_ALL_MAX`` of the newest."""
        out: list[float] = []
        anchor = self._dt(self.anchor)
        for when in self.schedule.times_between(
            self._dt(after), self._dt(upto), self.zone, anchor=anchor
        ):
            out.append(when.timestamp())
            if len(out) > _MISSED_ALL_MAX:
                out.pop(0)
        return out

    def _next(self, after: float) -> float | None:
        when = self.schedule.next_after(self._dt(after), self.zone, anchor=self._dt(self.anchor))
        return None if when is None else when.timestamp()

    def _record(self, moment: float, arrived: float) -> Record:
        return Record(partition=_PARTITION, position=moment, data=moment, arrived=arrived)

    # ------------------------------------------------------------ reading

    async def read(self) -> AsyncIterator[Sequence[Record]]:
        now = self.clock.now()
        again = self._times(self.done, self.fired)
        if again:
            log.info(
                "%s: %d due time(s) fired before the restart and not settled: delivering again",
                self.context.mapping,
                len(again),
            )
            yield [self._record(t, t) for t in again]
        missed = self._times(self.fired, now)
        if missed:
            chosen = {"skip": [], "latest": missed[-1:], "all": missed}[self.config.missed]
            log.info(
                "%s: %d due time(s) passed while the bridge was not running (missed: %s): "
                "delivering %d",
                self.context.mapping,
                len(missed),
                self.config.missed,
                len(chosen),
            )
            await self._fired(missed[-1])
            if chosen:
                yield [self._record(t, now) for t in chosen]
        while True:
            # every time up to ``fired`` was handled above: the next one is after it
            due = self._next(self.fired)
            if due is None:
                log.info("%s: the schedule has no more times", self.context.mapping)
                await asyncio.Event().wait()  # nothing more, ever: wait to be stopped
                continue
            await self.clock.sleep_until(due)
            await self._fired(due)
            yield [self._record(due, due)]

    async def _fired(self, moment: float) -> None:
        self.fired = moment
        await self.context.checkpoints.write({"fired": repr(moment)})

    # ------------------------------------------------------------ events

    def normalize(self, record: Record) -> dict[str, Any]:
        return scheduled_event(
            self.rule_arn,
            record.position,
            account=self.context.account_id,
            region=self.context.region,
        )

    def encode_event(self, records: Sequence[Record]) -> bytes:
        """One event per invocation, as EventBridge invokes: the event itself (or the
        source's ``input``), not wrapped in a list."""
        if self.config.input is not None:
            return dumps(self.config.input)
        return records[0].encoded

    def item_identifier(self, record: Record) -> Hashable:
        return repr(record.position)

    def failure_record(self, records: Sequence[Record], ctx: FailureContext) -> dict[str, Any]:
        return s3_async_failure_record(ctx)

    async def commit(self, records: Sequence[Record]) -> None:
        moment = float(records[-1].position)
        if moment > self.done:
            self.done = moment
            await self.context.checkpoints.write({"done": repr(moment)})
