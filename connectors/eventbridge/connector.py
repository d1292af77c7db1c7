"""The ``eventbridge`` source: a rule of an event bus the bridge serves.

The bus (:mod:`bridge.front.event_bus`) appends every event that matches the rule's
``event_pattern`` to the rule's spool (``<state_dir>/spool/<mapping>/``) before it
answers ``PutEvents``; this connector reads that spool and acknowledges what was settled,
so an event given an ``EventId`` is delivered (at least once) or dead-lettered, also
across a ``kill -9``. Each event is one asynchronous invocation (EventBridge invokes Lambda
targets asynchronously: 2 retries, 6 hours by default), unordered: one failing event does
not hold up the others. The function gets the event in EventBridge's envelope, or what
``input``, ``input_path`` or ``input_transformer`` make of it, as a rule target's input.
"""

from __future__ import annotations

import builtins
import json
import re
import time
from collections.abc import AsyncIterator, Hashable, Sequence
from typing import Any, ClassVar, Literal

from bridge.connector import BaseConnector, ConnectorContext, FailureContext, Record
from bridge.errors import CheckpointError, ConfigError, NormalizeError
from bridge.events import dumps, eventbridge_event
from bridge.spool import Spool, SpoolCursor, SpoolError, folder_of, shared
from connectors.eventbridge.config import EventBridgeSource, InputTransformer
from connectors.s3_events import (
    ASYNC_INVOCATION_DEFAULTS,
    check_async_invocation,
    s3_async_failure_record,
)

__all__ = ["EventBridgeConnector", "sample_event", "transform"]

_PLACEHOLDER = re.compile(r"<([A-Za-z0-9_\-.]+)>")


def _path(event: Any, path: str) -> Any:
    """The value at ``$.a.b`` of ``event`` (None when absent)."""
    value = event
    for name in path.split(".")[1:]:
        if not isinstance(value, dict) or name not in value:
            return None
        value = value[name]
    return value


def transform(event: dict[str, Any], transformer: InputTransformer, rule_arn: str) -> bytes:
    """EventBridge's input transformation: each ``<name>`` of the template replaced by the
    value of its path; inside a JSON string the value's text, elsewhere its JSON (a
    missing value: ``null``, or nothing inside a string). ``<aws.events.rule-arn>``,
    ``<aws.events.rule-name>``, ``<aws.events.event>`` (the event without ``detail``... as
    AWS: the whole original event) and ``<aws.events.event.json>`` are predefined."""
    values: dict[str, Any] = {
        name: _path(event, path) for name, path in transformer.input_paths_map.items()
    }
    values.setdefault("aws.events.rule-arn", rule_arn)
    values.setdefault("aws.events.rule-name", rule_arn.rsplit("/", 1)[-1])
    values.setdefault("aws.events.event", event)
    values.setdefault("aws.events.event.json", event)
    values.setdefault("aws.events.event.ingestion-time", event.get("time"))
    template = transformer.input_template
    out: list[str] = []
    at = 0
    for match in _PLACEHOLDER.finditer(template):
        name = match.group(1)
        if name not in values:
            continue
        out.append(template[at : match.start()])
        value = values[name]
        if _inside_string(template, match.start()):
            text = value if isinstance(value, str) else ("" if value is None else json.dumps(value))
            out.append(json.dumps(text)[1:-1])
        else:
            out.append(json.dumps(value))
        at = match.end()
    out.append(template[at:])
    return "".join(out).encode("utf-8")


def _inside_string(text: str, position: int) -> bool:
    """Whether ``position`` of ``text`` lies inside a JSON string literal."""
    inside = escaped = False
    for char in text[:position]:
        if escaped:
            escaped = False
        elif char == "\\" and inside:
            escaped = True
        elif char == '"':
            inside = not inside
    return inside


def sample_event(
    *,
    source: str = "com.example.orders",
    detail_type: str = "Order Placed",
    detail: dict[str, Any] | None = None,
    region: str = "us-east-1",
    account: str = "000000000000",
) -> dict[str, Any]:
    """An event put on a bus, in EventBridge's envelope as the bus spools it and the
    source sends it to a rule's target without an input (the ``sample_event`` hook)."""
    if detail is not None and not isinstance(detail, dict):
        raise ValueError("detail: a JSON object (as PutEvents requires)")
    event = eventbridge_event(
        detail_type=detail_type,
        source=source,
        detail={"orderId": "1234", "amount": 42.5} if detail is None else detail,
        account=account,
        region=region,
        moment=time.time(),
    )
    return dict(json.loads(dumps(event)))


class EventBridgeConnector(BaseConnector):
    type: ClassVar[str] = "eventbridge"
    config_model: ClassVar[builtins.type[EventBridgeSource]] = EventBridgeSource
    ordered: ClassVar[bool] = False
    redelivery: ClassVar[Literal["bridge", "source"]] = "bridge"
    in_daemon: ClassVar[bool] = True  # it reads the spool the bus (in the daemon) writes
    defaults: ClassVar[dict[str, Any]] = dict(ASYNC_INVOCATION_DEFAULTS)
    sample_event = staticmethod(sample_event)

    @classmethod
    def check_mapping(cls, options: dict[str, Any]) -> list[tuple[str, str]]:
        # an EventBridge target's RetryPolicy: 0 to 185 retries, 24 hours
        problems = check_async_invocation(
            options, max_retries=185, max_age=86400, what="an EventBridge target's retry policy"
        )
        size = options.get("batch_size")
        if size is not None and size != 1:
            problems.append(
                ("batch_size", "must be 1 for an event bus rule: one event per invocation")
            )
        return problems

    def __init__(self, config: EventBridgeSource, context: ConnectorContext) -> None:
        if context.state_dir is None:
            raise ConfigError("an event bus rule keeps a spool in state_dir; none was given")
        self.config = config
        self.context = context
        bus = config.event_bus_name
        rule = context.mapping if bus == "default" else f"{bus}/{context.mapping}"
        self.rule_arn = f"arn:aws:events:{context.region}:{context.account_id}:rule/{rule}"
        self._folder = folder_of(context.state_dir, context.mapping)
        self.spool: Spool | None = None
        self._cursor: SpoolCursor | None = None
        self._outstanding: set[int] = set()  # handed to the engine, not settled
        self._settled_before = 0  # entries up to this seq were read before a restart...
        self._unsettled_before: set[int] = set()  # ...and these of them were not settled

    async def open(self) -> None:
        try:
            self.spool = await shared.acquire(self._folder)
        except SpoolError as exc:
            raise ConfigError(str(exc)) from exc
        self._cursor = self.spool.cursor(self.spool.acked)
        note = self.spool.note
        self._settled_before = int(note.get("read") or 0)
        self._unsettled_before = {int(s) for s in note.get("outstanding") or []}

    async def aclose(self) -> None:
        if self._cursor is not None:
            self._cursor.close()
            self._cursor = None
        if self.spool is not None:
            await shared.release(self.spool)
            self.spool = None

    async def read(self) -> AsyncIterator[Sequence[Record]]:
        spool, cursor = self.spool, self._cursor
        assert spool is not None and cursor is not None
        while True:
            entries = cursor.take(100)
            if not entries:
                await spool.wait_written(cursor.position, 5.0)
                continue
            records = []
            for entry in entries:
                if entry.seq <= self._settled_before and entry.seq not in self._unsettled_before:
                    continue  # settled before a restart
                self._outstanding.add(entry.seq)
                records.append(
                    Record(partition="", position=entry.seq, data=entry.payload, arrived=entry.time)
                )
            if records:
                yield records

    def normalize(self, record: Record) -> dict[str, Any]:
        try:
            event = json.loads(record.data)
        except ValueError as exc:
            raise NormalizeError(
                f"event {record.position} in the spool is not JSON: {exc}"
            ) from exc
        if not isinstance(event, dict):
            raise NormalizeError(f"event {record.position} in the spool is not an object")
        return event

    def encode_event(self, records: Sequence[Record]) -> bytes:
        """One event per invocation, as EventBridge invokes a Lambda target: the event,
        or the rule target's input made of it."""
        config = self.config
        if config.input is not None:
            return dumps(config.input)
        if config.input_path is None and config.input_transformer is None:
            return records[0].encoded
        event = json.loads(records[0].encoded)
        if config.input_path is not None:
            return dumps(_path(event, config.input_path))
        assert config.input_transformer is not None
        return transform(event, config.input_transformer, self.rule_arn)

    def item_identifier(self, record: Record) -> Hashable:
        return str(record.position)

    def failure_record(self, records: Sequence[Record], ctx: FailureContext) -> dict[str, Any]:
        return s3_async_failure_record(ctx)

    async def commit(self, records: Sequence[Record]) -> None:
        spool, cursor = self.spool, self._cursor
        if spool is None or cursor is None:
            return
        for record in records:
            self._outstanding.discard(int(record.position))
        low = min([*self._outstanding, cursor.position + 1]) - 1
        # what was read past the low water and is not settled, so that a restart
        # delivers only that again (the rest past it was settled)
        unsettled = self._outstanding | {s for s in self._unsettled_before if s > cursor.position}
        note = {
            "read": max(cursor.position, self._settled_before),
            "outstanding": sorted(unsettled),
        }
        try:
            await spool.ack(low, note)
        except SpoolError as exc:
            raise CheckpointError(str(exc)) from exc
