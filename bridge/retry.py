"""Delivery of one batch with Lambda's retry semantics.

``Deliverer.deliver(batch)`` returns once every record of the batch is settled:
delivered, or written to the on-failure destination. It only leaves records
unsettled when the pipeline is stopping (they stay in the source, to be read again).

Semantics, as AWS documents them for event source mappings:

- ``TargetUnavailable`` (connection errors, throttling, 5xx) is retried with
  exponential backoff with jitter (tenacity), honouring ``Retry-After``; it does
  not count as a retry attempt but does count towards ``maximum_record_age_seconds``.
  Any other exception out of a target (a bug, a library error nobody translated) is
  handled the same way, its traceback logged once: the function may not have run.
- For a source with ``redelivery = "source"`` (queues), records the function failed
  are given back to the source (``abandon``), which redelivers them by its own policy;
  the retry limits below do not apply to them.
- ``FunctionError`` counts one attempt. After ``maximum_retry_attempts`` retries
  (-1: no limit) the records are dead-lettered with ``RetryAttemptsExhausted``.
- With ``bisect_batch_on_function_error`` a failing batch of more than one record is
  split in two halves, retried in order, each with a fresh attempt count; so a poison
  record ends up alone.
- With ``ReportBatchItemFailures`` the function's ``batchItemFailures`` settle the
  rest of the batch: for streams everything before the first failed record, for queues
  (SQS FIFO included) and other unordered sources every record not named (a record the
  source handed over twice is failed with its copy). An invalid response fails the
  whole batch. Records later dead-lettered are described by their own payload, not the
  whole batch's.
- ``TargetRejected`` is never retried as is: the batch is split, or a single record
  dead-lettered.
- A record older than ``maximum_record_age_seconds`` is dead-lettered with
  ``RecordAgeExceeded`` (only such records: the rest of its batch is delivered); one
  larger than the payload limit with ``MaximumPayloadSizeExceeded``.
- With tumbling windows (:mod:`bridge.windows`) each invocation carries its partition's
  window and state; the state the function answers is kept before the records settle (an
  answer without one is a function error), and a batch of a later window first closes
  the open one with a final invocation, retried until it succeeds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from bridge import telemetry
from bridge.connector import Connector, FailureContext, Record
from bridge.destinations import Destination, DestinationError
from bridge.errors import FunctionError, TargetRejected, TargetUnavailable
from bridge.events import new_request_id
from bridge.metrics import MappingStats
from bridge.targets.base import Target
from bridge.windows import STATE_LIMIT, InvalidState, OpenWindow, Windows, state_of, state_size

__all__ = ["Deliverer", "RetryPolicy", "Stopping"]

log = logging.getLogger(__name__)

Settle = Callable[[Sequence[Record]], None]
GiveBack = Callable[[Sequence[Record]], Awaitable[None]]


class Stopping(Exception):
    """The pipeline is stopping: the remaining records are left unsettled."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    maximum_retry_attempts: int = -1
    maximum_record_age_seconds: int = -1
    bisect_batch_on_function_error: bool = False
    report_batch_item_failures: bool = False
    backoff_initial_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    max_payload_bytes: int = 6 * 1024 * 1024

    def backoff(self, attempt: int) -> float:
        """Jittered exponential backoff before retry number ``attempt`` (1-based)."""
        ceiling = min(self.backoff_max_seconds, self.backoff_initial_seconds * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)


@dataclass(slots=True)
class _Outcome:
    ok: bool
    response: bytes = b""
    error: FunctionError | TargetRejected | None = None


class Deliverer:
    """Delivers batches of one mapping to its target; see the module docstring."""

    def __init__(
        self,
        *,
        mapping: str,
        connector: Connector,
        target: Target,
        destination: Destination,
        policy: RetryPolicy,
        settle: Settle,
        give_back: GiveBack,
        function_arn: str,
        stopping: asyncio.Event,
        timeout: float | None = None,
        stats: MappingStats | None = None,
        windows: Windows | None = None,
    ) -> None:
        self.windows = windows
        self.mapping = mapping
        self.stats = stats if stats is not None else MappingStats()
        self.connector = connector
        self.target = target
        self.destination = destination
        self.policy = policy
        self.settle = settle
        self.give_back = give_back
        self.function_arn = function_arn
        self.stopping = stopping
        self.timeout = timeout
        self.ordered = connector.ordered  # may be decided per instance (SQS FIFO)
        self.source_redelivers = connector.redelivery == "source"
        self._reported: set[type[BaseException]] = set()  # unexpected errors logged

    async def deliver(self, batch: list[Record]) -> None:
        """Deliver or dead-letter every record of ``batch``; raise Stopping to abandon."""
        window = None
        if self.windows is not None and batch[0].encoded:
            window = await self._enter_window(batch[0].partition, batch[0].window)
        work: list[list[Record]] = [batch]
        while work:
            records = work.pop(0)
            halves = await self._deliver_one(records, window)
            work[:0] = halves

    async def _enter_window(self, partition: str, index: int) -> OpenWindow:
        """The window a batch of ``partition`` goes into: the open one, unless the batch
        is of a later window; then the open one is closed first (its final invocation)."""
        assert self.windows is not None
        window = await self.windows.current(partition)
        if window is not None and window.index < index:
            await self.close_window(partition, window)
            window = None
        if window is None:
            window = OpenWindow(index, {})  # kept once the function answers a state
        return window

    async def close_window(
        self, partition: str, window: OpenWindow, *, early: bool = False
    ) -> None:
        """The window's final invocation (no records, ``isFinalInvokeForWindow``), retried
        until it succeeds; then the window is closed (``early``: it goes on afresh)."""
        assert self.windows is not None
        payload = self.windows.payload(
            self.connector.encode_event([]), partition, window, final=True, early=early
        )
        attempt = 0
        while True:
            attempt += 1
            outcome = await self._invoke(payload, new_request_id(), [])
            if outcome is not None and outcome.ok:
                break
            error = outcome.error if outcome is not None else None
            telemetry.emit(
                telemetry.WINDOW_FINAL_FAILED,
                mapping=self.mapping,
                partition=partition,
                attempt=attempt,
                error=str(error)[:200],
                level=logging.WARNING,
            )
            await self._sleep(self.policy.backoff(attempt))
        telemetry.emit(
            telemetry.WINDOW_CLOSED, mapping=self.mapping, partition=partition, early=early
        )
        if early:
            window.state = {}
            await self.windows.keep(partition, window)
        else:
            await self.windows.keep(partition, None)

    async def _keep_state(
        self, records: list[Record], window: OpenWindow, state: dict[str, Any]
    ) -> None:
        """Keep what the function answered as the window's state (durably, before the
        records settle); a state over 1 MB ends the window early."""
        assert self.windows is not None
        partition = records[0].partition
        window.state = state
        await self.windows.keep(partition, window)
        if state_size(state) > STATE_LIMIT:
            await self.close_window(partition, window, early=True)

    async def _deliver_one(
        self, records: list[Record], window: OpenWindow | None = None
    ) -> list[list[Record]]:
        """Deliver one (sub-)batch; return sub-batches still to do (after a bisect)."""
        attempts = 0
        while records:
            expired, records = self._expired(records)
            if expired:  # only those: the others are delivered
                payload = self.connector.encode_event(expired)
                await self._dead_letter(expired, "RecordAgeExceeded", attempts, payload)
                continue
            payload = self.connector.encode_event(records)
            if window is not None:
                assert self.windows is not None
                payload = self.windows.payload(payload, records[0].partition, window)
            if len(payload) > self.policy.max_payload_bytes:
                if len(records) > 1:
                    return _split(records)
                await self._dead_letter(records, "MaximumPayloadSizeExceeded", attempts, payload)
                return []
            attempts += 1
            if attempts > 1:
                self.stats.retries += 1
            request_id = new_request_id()
            outcome = await self._invoke(payload, request_id, records)
            if outcome is None:  # the target was unavailable until records aged out
                attempts -= 1  # the function never saw them
                continue
            state: dict[str, Any] | None = None
            if window is not None and outcome.ok:
                try:
                    state = state_of(outcome.response)
                except InvalidState as exc:  # as on AWS: a failed invocation
                    error_doc = json.dumps(
                        {"errorType": "InvalidStateResponse", "errorMessage": str(exc)}
                    )
                    outcome = _Outcome(
                        ok=False,
                        error=FunctionError(
                            f"tumbling window: {exc}",
                            error_type="InvalidStateResponse",
                            payload=error_doc.encode(),
                        ),
                    )
            if isinstance(outcome.error, TargetRejected):
                if len(records) > 1:
                    return _split(records)
                await self._dead_letter(
                    records, "TargetRejected", attempts, payload, error=outcome.error
                )
                return []
            if outcome.ok:
                failed = self._failed_items(outcome.response, records)
                if window is not None and state is not None:
                    await self._keep_state(records, window, state)
                if not failed:
                    self.settle(records)
                    self.stats.delivered_now(len(records), records[-1].arrived)
                    telemetry.emit(
                        telemetry.BATCH_DELIVERED, mapping=self.mapping, records=len(records)
                    )
                    return []
                done, records = self._split_partial(records, failed)
                self.settle(done)
                if done:
                    self.stats.delivered_now(len(done), done[-1].arrived)
                self.stats.failed += len(records)
                payload = self.connector.encode_event(records)
                telemetry.emit(
                    telemetry.BATCH_PARTIAL,
                    mapping=self.mapping,
                    delivered=len(done),
                    failed=len(records),
                )
                if self.source_redelivers:
                    await self.give_back(records)
                    return []
                error: FunctionError | None = None
            else:
                assert isinstance(outcome.error, FunctionError)
                error = outcome.error
                self.stats.failed += len(records)
                telemetry.emit(
                    telemetry.BATCH_FAILED,
                    mapping=self.mapping,
                    size=len(records),
                    attempt=attempts,
                    error_type=error.error_type,
                    error=str(error)[:200],
                    level=logging.WARNING,
                )
                if self.source_redelivers:  # e.g. SQS: back after the visibility timeout
                    await self.give_back(records)
                    return []
                if self.policy.bisect_batch_on_function_error and len(records) > 1:
                    telemetry.emit(
                        telemetry.BATCH_BISECTED, mapping=self.mapping, size=len(records)
                    )
                    return _split(records)
            limit = self.policy.maximum_retry_attempts
            if limit != -1 and attempts > limit:
                await self._dead_letter(
                    records, "RetryAttemptsExhausted", attempts, payload, error=error
                )
                return []
            await self._sleep(self.policy.backoff(attempts))
        return []

    async def _invoke(
        self, payload: bytes, request_id: str, records: list[Record]
    ) -> _Outcome | None:
        """One invocation; target outages are retried here without counting attempts.

        The first try runs without tenacity (the common case costs one call, not a retry
        machine per invocation); when it finds the target unavailable, tenacity takes
        over with that failure as its first attempt, so the backoff is the same."""
        try:
            return await self._attempt(payload, request_id, len(records))
        except TargetUnavailable as exc:
            first: TargetUnavailable | None = exc

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            hint = getattr(exc, "retry_after", None)
            return float(hint) if hint else self.policy.backoff(state.attempt_number)

        def stop(_state: RetryCallState) -> bool:
            return self.stopping.is_set() or self._too_old(records)

        retrying = AsyncRetrying(
            retry=retry_if_exception_type(TargetUnavailable),
            wait=wait,
            stop=stop,
            sleep=self._sleep,
            before_sleep=self._unavailable,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    if first is not None:
                        failure, first = first, None
                        raise failure
                    self.stats.retries += 1
                    return await self._attempt(payload, request_id, len(records))
        except TargetUnavailable:
            if self.stopping.is_set():
                raise Stopping() from None
            return None
        raise AssertionError("unreachable")  # pragma: no cover

    def _unavailable(self, state: RetryCallState) -> None:
        telemetry.emit(
            telemetry.TARGET_UNAVAILABLE,
            mapping=self.mapping,
            error=str(state.outcome.exception()) if state.outcome else "",
            level=logging.WARNING,
        )

    async def _attempt(self, payload: bytes, request_id: str, records: int) -> _Outcome:
        """Invoke once: the function's answer, or raise TargetUnavailable (also for an
        exception the target did not classify, whose traceback is logged once)."""
        stats = self.stats
        started = time.monotonic()
        try:
            response = await self.target.invoke(
                payload, request_id=request_id, timeout=self.timeout
            )
        except FunctionError as exc:
            stats.invoked(records, time.monotonic() - started)
            stats.function_errors += 1
            return _Outcome(ok=False, error=exc)
        except TargetRejected as exc:
            stats.invoked(records, time.monotonic() - started)
            return _Outcome(ok=False, error=exc)
        except TargetUnavailable as exc:
            if exc.throttled:
                stats.throttles += 1
            raise
        except Exception as exc:
            if type(exc) not in self._reported:
                self._reported.add(type(exc))
                log.exception(
                    "%s: function %s failed with an unexpected error; retrying it as unavailable",
                    self.mapping,
                    self.target.name,
                )
            raise TargetUnavailable(
                f"function {self.target.name}: unexpected {type(exc).__name__}: {exc}"
            ) from exc
        stats.invoked(records, time.monotonic() - started)
        return _Outcome(ok=True, response=response)

    def _failed_items(self, response: bytes, records: list[Record]) -> set[int] | None:
        """Indexes of records the function reported as failed; None when all succeeded.
        An invalid response fails them all, as on AWS, and says why."""
        if not self.policy.report_batch_item_failures:
            return None
        everything = set(range(len(records)))
        try:
            doc: Any = json.loads(response) if response.strip() else None
        except ValueError:
            return self._invalid_response(everything, "it is not JSON", response)
        if doc is None or (isinstance(doc, dict) and not doc):
            return None
        if not isinstance(doc, dict):
            return self._invalid_response(everything, "it is not a JSON object", response)
        items = doc.get("batchItemFailures")
        if not items:
            return None
        if not isinstance(items, list):
            return self._invalid_response(everything, "batchItemFailures is not a list", response)
        index: dict[Hashable, list[int]] = {}
        for i, r in enumerate(records):  # a queue may hand one message over twice
            index.setdefault(self.connector.item_identifier(r), []).append(i)
        failed: set[int] = set()
        for item in items:
            ident = item.get("itemIdentifier") if isinstance(item, dict) else None
            if ident in (None, ""):
                why = f"an entry has no itemIdentifier: {json.dumps(item)[:200]}"
                return self._invalid_response(everything, why, response)
            key = self.connector.identifier_key(ident)
            if key is None or key not in index:
                why = f"itemIdentifier {json.dumps(ident)[:200]} names no record of the batch"
                return self._invalid_response(everything, why, response)
            failed.update(index[key])
        return failed

    def _invalid_response(self, failed: set[int], why: str, response: bytes) -> set[int]:
        telemetry.emit(
            telemetry.RESPONSE_INVALID,
            mapping=self.mapping,
            reason=why,
            response=response[:200].decode("utf-8", "replace"),
            retried=len(failed),
            level=logging.WARNING,
        )
        return failed

    def _split_partial(
        self, records: list[Record], failed: set[int]
    ) -> tuple[list[Record], list[Record]]:
        """(settled, failed). A stream resumes from its first failed record, as Lambda
        does; a queue (FIFO included) fails only the records named, as Lambda deletes every
        message a FIFO function did not name (AWS tells it to name the unprocessed ones)."""
        if self.ordered and not self.source_redelivers:
            first = min(failed)
            return records[:first], records[first:]
        done = [r for i, r in enumerate(records) if i not in failed]
        return done, [r for i, r in enumerate(records) if i in failed]

    def _expired(self, records: list[Record]) -> tuple[list[Record], list[Record]]:
        """(records older than ``maximum_record_age_seconds``, the others). For a source
        acknowledged by frontier the expired ones are the leading run of old records (they
        settle in order; a late one after a younger record is delivered with it)."""
        limit = self.policy.maximum_record_age_seconds
        if limit == -1:
            return [], records
        cutoff = time.time() - limit
        if self.ordered and not self.source_redelivers:
            n = 0
            for r in records:
                if r.arrived >= cutoff:
                    break
                n += 1
            return records[:n], records[n:]
        old = [r for r in records if r.arrived < cutoff]
        if not old:
            return [], records
        return old, [r for r in records if r.arrived >= cutoff]

    def _too_old(self, records: list[Record]) -> bool:
        return bool(self._expired(records)[0])

    async def _dead_letter(
        self,
        records: list[Record],
        condition: str,
        attempts: int,
        payload: bytes,
        *,
        error: FunctionError | TargetRejected | None = None,
    ) -> None:
        ctx = FailureContext(
            condition=condition,
            function_arn=self.function_arn,
            request_id=new_request_id(),
            attempts=attempts,
            status_code=getattr(error, "status_code", None) or getattr(error, "status", None),
            function_error="Unhandled" if isinstance(error, FunctionError) else None,
            error_message=str(error) if error else None,
            response=error.payload if isinstance(error, FunctionError) else b"",
            payload=payload,
        )
        document = self.connector.failure_record(records, ctx)
        await self.write_failures([document])
        self.stats.dead_lettered[condition] += len(records)
        telemetry.emit(
            telemetry.DEAD_LETTERED,
            mapping=self.mapping,
            records=len(records),
            condition=condition,
            destination=self.destination.uri,
            level=logging.WARNING,
        )
        self.settle(records)

    async def write_failures(self, documents: list[dict[str, Any]]) -> None:
        """Write to the destination, retrying until it is durable (or stopping)."""
        attempt = 0
        while True:
            try:
                await self.destination.write(documents)
                return
            except DestinationError as exc:
                attempt += 1
                telemetry.emit(
                    telemetry.DESTINATION_FAILED,
                    mapping=self.mapping,
                    error=str(exc),
                    level=logging.ERROR,
                )
                await self._sleep(self.policy.backoff(attempt))

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but give up at once when the pipeline is stopping."""
        if self.stopping.is_set():
            raise Stopping()
        try:
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)
        except TimeoutError:
            return
        raise Stopping()


def _split(records: list[Record]) -> list[list[Record]]:
    mid = len(records) // 2
    return [records[:mid], records[mid:]]
