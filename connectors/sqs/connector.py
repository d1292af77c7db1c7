"""The ``sqs`` source: an SQS queue, with the semantics of Lambda's SQS event source
mapping.

- Long polling with ``pollers`` concurrent ReceiveMessage calls (10 messages each).
- A message is deleted only once it is settled (delivered, or filtered out: as on AWS,
  messages that do not match ``filter_criteria`` are deleted).
- Redelivery belongs to the queue: a message the function failed on (or named in
  ``batchItemFailures``) is not deleted and comes back after its visibility timeout;
  the queue's own redrive policy moves it to its dead-letter queue after
  ``maxReceiveCount`` receives. The bridge does not count receives itself.
- While a message is held (read, being batched or delivered) its visibility timeout
  is extended, so a slow function does not cause a duplicate. Held messages are known
  by receipt handle: a standard queue may hand one message over twice, and each copy
  is extended, deleted or given back on its own.
- On shutdown every held message is released (visibility 0) instead of staying hidden.
  When there is something to release, receives under way are waited for (at most
  ``wait_time_seconds`` and 8 s, within the engine's 10 s budget for closing a source)
  instead of cut off: the server goes on with a long poll whose client left, and would
  hide what is released meanwhile for a whole visibility timeout. A receive still under
  way after that is cut off; what it takes shows up again after the visibility timeout.
- FIFO queues: order per message group (the group is the partition: one batch in
  flight per group); a failing group gives its messages back (with everything read
  after them in the group) and stops, the other groups keep flowing. A message that
  does not match the filters is deleted at once, whatever waits before it: it is never
  delivered, so its order does not matter, and it never keeps its group locked.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from bridge.connector import BaseConnector, ConnectorContext, FailureContext, Feed, Record
from bridge.errors import CheckpointError, ConfigError, SourceError
from bridge.events import stream_failure_base
from connectors.aws import create_client, translate_errors
from connectors.sqs.config import SqsSource
from connectors.sqs.normalize import filter_view, sample_event, sqs_record

__all__ = ["SqsConnector"]

log = logging.getLogger(__name__)

_RELEASE_WAIT = 8.0  # seconds a stop waits for receives under way (CLOSE_TIMEOUT is 10)

_NOT_RETRIED = {"maximum_retry_attempts", "maximum_record_age_seconds"}


@dataclass(slots=True)
class _Held:
    message_id: str
    hidden_until: float


class SqsConnector(BaseConnector):
    type: ClassVar[str] = "sqs"
    config_model: ClassVar[builtins.type[SqsSource]] = SqsSource
    ordered: bool = False  # a FIFO queue makes its instance ordered, per message group
    redelivery: ClassVar[Literal["bridge", "source"]] = "source"
    defaults: ClassVar[dict[str, Any]] = {
        "batch_size": 10,
        "maximum_batching_window_seconds": 0.0,
        "maximum_concurrency": 10,
    }
    sample_event = staticmethod(sample_event)

    @classmethod
    def check_mapping(cls, options: dict[str, Any]) -> list[tuple[str, str]]:
        """What AWS rejects for an SQS event source mapping."""
        problems: list[tuple[str, str]] = []
        for key in sorted(_NOT_RETRIED & options.keys()):
            problems.append(
                (key, "not supported for SQS: the queue's redrive policy (maxReceiveCount) decides")
            )
        if options.get("bisect_batch_on_function_error"):
            problems.append(("bisect_batch_on_function_error", "not supported for SQS"))
        concurrency = options.get("maximum_concurrency")
        if isinstance(concurrency, int) and not 2 <= concurrency <= 1000:
            problems.append(("maximum_concurrency", "must be between 2 and 1000 for SQS"))
        size, window = options.get("batch_size"), options.get("maximum_batching_window_seconds")
        source = options.get("source")
        queue = (
            (source.get("queue_url") or source.get("queue_name"))
            if isinstance(source, dict)
            else None
        )
        if isinstance(queue, str) and queue.endswith(".fifo"):
            # AWS: "For FIFO queues, the maximum is 10"; "Batching window is not supported
            # for FIFO queues"
            if isinstance(size, int) and size > 10:
                problems.append(("batch_size", "must be between 1 and 10 for a FIFO queue"))
            if isinstance(window, int | float) and window > 0:
                problems.append(
                    ("maximum_batching_window_seconds", "not supported for a FIFO queue")
                )
        elif (
            isinstance(size, int)
            and size > 10
            and not (isinstance(window, int | float) and window >= 1)
        ):
            problems.append(
                ("batch_size", "above 10 needs maximum_batching_window_seconds of at least 1")
            )
        return problems

    def __init__(self, config: SqsSource, context: ConnectorContext) -> None:
        self.config = config
        self.context = context
        self.region = config.region or context.region
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self.queue_url = config.queue_url or ""
        self.queue_arn = ""
        self.visibility = 30
        self._held: dict[str, _Held] = {}  # receipt handle -> message id and deadline
        self._received: Feed[list[Record]] = Feed(maxsize=config.pollers)
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()  # no new receives: the engine reads no more
        self._receiving = 0  # ReceiveMessage calls under way
        self._no_receive = asyncio.Event()
        self._no_receive.set()
        self._released = False  # release() gave messages back
        # FIFO queue names end in .fifo (SQS enforces it), so this is known before open()
        self.ordered = (config.queue_url or config.queue_name or "").endswith(".fifo")

    @property
    def _what(self) -> str:
        return f"SQS queue {self.queue_url or self.config.queue_name}"

    # ------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        self._client = await self._stack.enter_async_context(
            create_client("sqs", self.config, self.context.region)
        )
        with translate_errors(self._what):
            if not self.queue_url:
                found = await self._client.get_queue_url(QueueName=self.config.queue_name)
                self.queue_url = found["QueueUrl"]
            attributes = (
                await self._client.get_queue_attributes(
                    QueueUrl=self.queue_url, AttributeNames=["All"]
                )
            )["Attributes"]
        self.queue_arn = attributes["QueueArn"]
        self.visibility = self.config.visibility_timeout or int(attributes["VisibilityTimeout"])

    async def read(self) -> AsyncIterator[Sequence[Record]]:
        # FIFO: one poller, so a message group is never split between concurrent receives
        pollers = 1 if self.ordered else self.config.pollers
        self._tasks = [
            asyncio.create_task(self._poll(), name=f"{self.context.mapping}:sqs-poll-{i}")
            for i in range(pollers)
        ]
        self._tasks.append(asyncio.create_task(self._heartbeat()))
        try:
            async for chunk in self._received.items(self._tasks):
                yield chunk
        finally:
            self._stopping.set()

    async def aclose(self) -> None:
        self._stopping.set()
        if self._receiving and (self._held or self._released):
            wait = min(self.config.wait_time_seconds + 2, _RELEASE_WAIT)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._no_receive.wait(), wait)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._held and self._client is not None:  # received but never handed on
            with contextlib.suppress(SourceError):
                await self._change_visibility(list(self._held.items()), 0)
            self._held.clear()
        await self._stack.aclose()

    # ------------------------------------------------------------ receiving

    async def _poll(self) -> None:
        while not self._stopping.is_set():
            self._receiving += 1
            self._no_receive.clear()
            try:
                with translate_errors(self._what):
                    response = await self._client.receive_message(
                        QueueUrl=self.queue_url,
                        MaxNumberOfMessages=10,
                        WaitTimeSeconds=self.config.wait_time_seconds,
                        VisibilityTimeout=self.visibility,
                        AttributeNames=["All"],
                        MessageSystemAttributeNames=["All"],
                        MessageAttributeNames=["All"],
                    )
            finally:
                self._receiving -= 1
                if not self._receiving:
                    self._no_receive.set()
            messages = response.get("Messages", [])
            if not messages:
                continue
            now = time.monotonic()
            chunk = []
            for m in messages:
                self._held[m["ReceiptHandle"]] = _Held(m["MessageId"], now + self.visibility)
                attributes = m.get("Attributes", {})
                chunk.append(
                    Record(
                        partition=attributes.get("MessageGroupId", "") if self.ordered else "",
                        position=m["MessageId"],
                        data=m,
                        arrived=int(attributes.get("SentTimestamp", time.time() * 1000)) / 1000,
                    )
                )
            if self._stopping.is_set():  # held: aclose() releases them
                return
            await self._received.put(chunk)

    async def _heartbeat(self) -> None:
        """Extend the visibility of held messages before it runs out."""
        while True:
            await asyncio.sleep(max(0.5, min(10.0, self.visibility / 4)))
            soon = time.monotonic() + self.visibility / 2
            due = [(handle, h) for handle, h in self._held.items() if h.hidden_until < soon]
            if due:
                try:
                    await self._change_visibility(due, self.visibility)
                except SourceError as exc:
                    log.warning("%s: could not extend visibility: %s", self._what, exc)

    async def _change_visibility(self, held: list[tuple[str, _Held]], seconds: int) -> None:
        for start in range(0, len(held), 10):
            part = held[start : start + 10]
            with translate_errors(self._what):
                response = await self._client.change_message_visibility_batch(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": seconds}
                        for i, (handle, _) in enumerate(part)
                    ],
                )
            failed = {int(f["Id"]) for f in response.get("Failed", [])}
            until = time.monotonic() + seconds
            for i, (handle, h) in enumerate(part):
                if i in failed:  # the receipt is stale: the message is someone else's now
                    self._held.pop(handle, None)
                else:
                    h.hidden_until = until

    # ------------------------------------------------------------ shaping

    def normalize(self, record: Record) -> dict[str, Any]:
        return sqs_record(record.data, queue_arn=self.queue_arn, region=self.region)

    def filter_view(self, event: dict[str, Any]) -> dict[str, Any]:
        return filter_view(event)

    def item_identifier(self, record: Record) -> Hashable:
        return str(record.position)

    def failure_record(self, records: Sequence[Record], ctx: FailureContext) -> dict[str, Any]:
        doc = stream_failure_base(ctx, time.time())
        doc["SQSBatchInfo"] = {
            "queueArn": self.queue_arn,
            "batchSize": len(records),
            "messageIds": [str(r.position) for r in records],
        }
        return doc

    # ------------------------------------------------------------ settling

    async def commit(self, records: Sequence[Record]) -> None:
        """Delete settled messages (in batches of 10), each copy by its own receipt."""
        handles = [h for h in dict.fromkeys(_receipt(r) for r in records) if h in self._held]
        for start in range(0, len(handles), 10):
            part = handles[start : start + 10]
            try:
                with translate_errors(self._what):
                    response = await self._client.delete_message_batch(
                        QueueUrl=self.queue_url,
                        Entries=[
                            {"Id": str(i), "ReceiptHandle": handle} for i, handle in enumerate(part)
                        ],
                    )
            except (SourceError, ConfigError) as exc:
                raise CheckpointError(f"cannot delete messages: {exc}") from exc
            failed = {int(f["Id"]): f for f in response.get("Failed", [])}
            for i, handle in enumerate(part):
                if i in failed and not failed[i].get("SenderFault"):
                    raise CheckpointError(f"{self._what}: delete failed: {failed[i]}")
                if i in failed:
                    log.warning(
                        "%s: message %s could not be deleted (%s); it will come again",
                        self._what,
                        self._held[handle].message_id,
                        failed[i].get("Code"),
                    )
                self._held.pop(handle, None)

    async def abandon(self, records: Sequence[Record]) -> None:
        """Stop extending: the message reappears when its visibility timeout ends."""
        for r in records:
            self._held.pop(_receipt(r), None)

    async def release(self, records: Sequence[Record]) -> None:
        """Visible again right away (shutdown)."""
        held = [
            (h, self._held[h]) for h in dict.fromkeys(map(_receipt, records)) if h in self._held
        ]
        if held:
            self._released = True
            await self._change_visibility(held, 0)
            for handle, _ in held:
                self._held.pop(handle, None)


def _receipt(record: Record) -> str:
    return str(record.data["ReceiptHandle"])
