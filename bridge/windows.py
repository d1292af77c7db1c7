"""Tumbling windows (``tumbling_window_in_seconds``), as Lambda runs them for streams.

Time is cut into windows of ``seconds`` (aligned to the epoch: a 120 s window runs from
07:04:00 to 07:06:00). A record belongs to the window of its ``arrived`` time (DynamoDB's
``ApproximateCreationDateTime``, Kafka's timestamp), or to its partition's open window if
that is later (a late record joins the window under way). A batch holds records of one
window only. Each invocation carries, besides the records, the window's properties as
AWS sends them::

    {"Records": [...], "window": {"start": "...Z", "end": "...Z"}, "state": {...},
     "shardId": "...", "eventSourceARN": "...",
     "isFinalInvokeForWindow": false, "isWindowTerminatedEarly": false}

``state`` is what the function returned (``{"state": {...}, "batchItemFailures": [...]}``)
from its previous invocation in this window of this partition, ``{}`` at a window's
start. An answer without a ``state`` object fails the invocation, as on AWS. When a
partition's window is over (a batch of a later window comes, or the window's end passed
and nothing of it is waiting), the function is invoked once more with no records and
``isFinalInvokeForWindow: true``: the place to act on the aggregate; it is retried until
it succeeds, and the partition waits meanwhile. A state over 1 MB ends the window early:
a final invocation with ``isWindowTerminatedEarly: true``, then the same window goes on
with a fresh state.

Where this differs from AWS, on purpose: AWS checkpoints a window's records only when the
window ends, and starts the window again after a failure. Here records are committed
batch by batch as usual, and each partition's open window (its index and state) is kept
in the mapping's checkpoint store before the batch that produced it is settled. So a
restart goes on with the state it had, instead of reprocessing the window; a crash
between the two writes can count a batch twice in the state (at-least-once, as AWS says
of windows too). For Kafka the state is in this bridge's store: a partition that moves to
another consumer of the group starts its window with a fresh state there.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bridge.checkpoints import CheckpointNamespace
from bridge.events import dumps

__all__ = ["STATE_LIMIT", "InvalidState", "OpenWindow", "Windows"]

STATE_LIMIT = 1 << 20  # bytes of JSON: AWS ends a window early past 1 MB of state
_KEY = "tumbling-window:"


class InvalidState(ValueError):
    """The function's answer has no ``state`` object (the message says what it has)."""


@dataclass(slots=True)
class OpenWindow:
    index: int  # start // seconds
    state: dict[str, Any]


class Windows:
    """The tumbling windows of one mapping (see the module docstring)."""

    def __init__(
        self,
        seconds: int,
        store: CheckpointNamespace,
        *,
        source_arn: Callable[[], str | None] = lambda: None,
    ) -> None:
        if seconds <= 0:
            raise ValueError("a tumbling window lasts at least 1 second")
        self.seconds = seconds
        self._store = store
        self._source_arn = source_arn
        self._open: dict[str, OpenWindow | None] = {}  # partition -> its open window
        self._floor: dict[str, int] = {}  # partition -> the earliest window still to come

    def index(self, arrived: float) -> int:
        return int(arrived // self.seconds)

    def assign(self, partition: str, arrived: float) -> int:
        """The window of a record of ``partition`` read now: its own, or a later one the
        partition is already in (records arrive in order; a late one joins)."""
        index = int(arrived // self.seconds)
        floor = self._floor.get(partition, 0)
        if index < floor:
            return floor
        self._floor[partition] = index
        return index

    def end(self, index: int) -> float:
        return (index + 1) * self.seconds

    async def current(self, partition: str) -> OpenWindow | None:
        """The partition's open window, from the store the first time it is asked."""
        if partition not in self._open:
            stored = await self._store.get(_KEY + partition)
            window = None
            if stored is not None:
                doc = json.loads(stored)
                window = OpenWindow(int(doc["index"]), dict(doc["state"]))
            self._open[partition] = window
        return self._open[partition]

    def forget(self, partitions: Iterable[str]) -> None:
        """These partitions are not read here any more (revoked): their windows are left
        in the store, never closed from here."""
        for partition in partitions:
            self._open.pop(partition, None)
            self._floor.pop(partition, None)

    def open_windows(self) -> dict[str, OpenWindow]:
        """The partitions whose window is open (known to this process)."""
        return {p: w for p, w in self._open.items() if w is not None}

    async def keep(self, partition: str, window: OpenWindow | None) -> None:
        """Store ``window`` as the partition's open window (None: closed), durably."""
        if window is None:
            await self._store.write({}, [_KEY + partition])
            closed = self._open.get(partition)
            if closed is not None:  # records of it that come late join the next one
                self._floor[partition] = max(self._floor.get(partition, 0), closed.index + 1)
        else:
            doc = {"index": window.index, "state": window.state}
            await self._store.write({_KEY + partition: json.dumps(doc, separators=(",", ":"))})
        self._open[partition] = window

    def payload(
        self,
        envelope: bytes,
        partition: str,
        window: OpenWindow,
        *,
        final: bool = False,
        early: bool = False,
    ) -> bytes:
        """``envelope`` (the connector's event, a JSON object) with the window's
        properties added."""
        start = window.index * self.seconds
        extra: dict[str, Any] = {
            "window": {"start": _iso(start), "end": _iso(start + self.seconds)},
            "state": window.state,
            "shardId": partition,
        }
        arn = self._source_arn()
        if arn is not None:
            extra["eventSourceARN"] = arn
        extra["isFinalInvokeForWindow"] = final
        extra["isWindowTerminatedEarly"] = early
        body = envelope.rstrip()
        if not body.endswith(b"}"):
            raise ValueError("the connector's event is not a JSON object")
        joiner = b"," if body[:-1].rstrip() != b"{" else b""
        return body[:-1] + joiner + dumps(extra)[1:]


def state_of(response: bytes) -> dict[str, Any]:
    """The ``state`` of a function's answer; ``InvalidState`` when it has none."""
    try:
        doc = json.loads(response) if response.strip() else None
    except ValueError:
        raise InvalidState("the answer is not JSON, so it has no state") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("state"), dict):
        shown = response[:200].decode("utf-8", "replace")
        raise InvalidState(f"the answer has no state object (got {shown})")
    state: dict[str, Any] = doc["state"]
    return state


def state_size(state: dict[str, Any]) -> int:
    return len(dumps(state))


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
