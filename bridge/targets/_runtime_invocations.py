"""The invocations of the ``runtime`` target, with no HTTP and no processes: the queue
of invocations, the runtimes waiting for one, what each runtime holds and until when,
and the Lambda error documents for what can go wrong (see ``runtime_api``)."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bridge.errors import DeliveryError, FunctionError, TargetUnavailable
from bridge.targets._runtime_procs import Worker, describe_exit
from bridge.targets.base import error_document

ErrorFactory = Callable[[str], DeliveryError]  # request id -> the error to raise for it


def timeout_error(invocation: Invocation) -> FunctionError:
    message = (
        f"RequestId: {invocation.request_id} Error: "
        f"Task timed out after {invocation.timeout:.2f} seconds"
    )
    return FunctionError(
        message, error_type="Sandbox.Timedout", payload=error_document("Sandbox.Timedout", message)
    )


def exit_error(returncode: int) -> ErrorFactory:
    if returncode == 0:
        reason = "Runtime exited without providing a reason"
    else:
        reason = f"Runtime exited with error: {describe_exit(returncode)}"

    def make(request_id: str) -> FunctionError:
        message = f"RequestId: {request_id} Error: {reason}"
        payload = error_document("Runtime.ExitError", message)
        return FunctionError(message, error_type="Runtime.ExitError", payload=payload)

    return make


def out_of_memory_error(request_id: str) -> FunctionError:
    """Lambda's error for an instance that went over its memory size and was ended."""
    message = f"RequestId: {request_id} Error: Runtime exited with error: signal: killed"
    return FunctionError(
        message,
        error_type="Runtime.OutOfMemory",
        payload=error_document("Runtime.OutOfMemory", message),
    )


def reported_error(body: bytes, header: str | None) -> FunctionError:
    """The error a runtime posted: its document as payload, its ``errorType`` first.

    The ``Lambda-Runtime-Function-Error-Type`` header is only the fallback, for a document
    that is missing or unreadable (as the Runtime API specification says Lambda does): a
    runtime may send a generic ``Unhandled`` there with a ``ValueError`` document.
    """
    try:
        document: Any = json.loads(body)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        document = {}
    error_type = str(document.get("errorType") or header or "Unhandled")
    message = str(document.get("errorMessage") or error_type)
    return FunctionError(message, error_type=error_type, payload=body)


def _new_trace_id() -> str:
    root = f"1-{int(time.time()):08x}-{secrets.token_hex(12)}"
    return f"Root={root};Parent={secrets.token_hex(8)};Sampled=0"


@dataclass(eq=False)
class Invocation:
    """One event on its way through the Runtime API.

    ``left_queue`` is set once a runtime took it or it finished while queued; ``outcome``
    holds the response bytes or the error, and is cancelled when the caller gave up.
    """

    request_id: str
    payload: bytes
    timeout: float
    outcome: asyncio.Future[bytes]
    left_queue: asyncio.Event = field(default_factory=asyncio.Event)
    trace_id: str = field(default_factory=_new_trace_id)
    holder: Worker | None = None  # None: a runtime the bridge does not run
    deadline_ms: int = 0
    timer: asyncio.TimerHandle | None = None
    started: float = 0.0  # monotonic: when a runtime took it


class UnknownInvocation(LookupError):
    """The caller holds no invocation with this request id (or it was already answered)."""


class InvocationRegistry:
    """Invocations waiting for a runtime, runtimes waiting for one, invocations being run.

    A runtime takes an invocation with :meth:`next`; from then its deadline runs, and when it
    passes the invocation fails with ``Sandbox.Timedout`` and ``on_timeout(invocation)`` is
    called. A caller (a :class:`Worker`, or ``None`` for runtimes the bridge does not run)
    may only answer invocations it took.

    ``on_start(invocation)`` is called when a runtime took an invocation, ``on_finish(
    invocation, result)`` when a taken one is settled (the platform's log lines).
    """

    def __init__(
        self,
        on_timeout: Callable[[Invocation], None],
        *,
        on_start: Callable[[Invocation], None] | None = None,
        on_finish: Callable[[Invocation, bytes | DeliveryError], None] | None = None,
    ) -> None:
        self._on_timeout = on_timeout
        self._on_start = on_start
        self._on_finish = on_finish
        self._queue: deque[Invocation] = deque()
        self._pollers: deque[tuple[Worker | None, asyncio.Future[Invocation]]] = deque()
        self._running: dict[str, Invocation] = {}
        self._failed_inits: dict[Worker | None, ErrorFactory] = {}
        self._handed = 0  # given to a waiting runtime, which has not resumed to take it yet
        self._closed = False

    def submit(self, payload: bytes, *, request_id: str, timeout: float) -> Invocation:
        """Queue an invocation, or hand it straight to a waiting runtime.

        Raises ``ValueError`` if an invocation with this request id is still pending.
        """
        if self._closed:
            raise TargetUnavailable("the runtime target is closed")
        if request_id in self._running or any(i.request_id == request_id for i in self._queue):
            raise ValueError(f"request id {request_id!r} is already in use")
        invocation = Invocation(
            request_id, payload, timeout, asyncio.get_running_loop().create_future()
        )
        self._dispatch(invocation)
        return invocation

    async def next(self, caller: Worker | None) -> Invocation:
        """Wait for an invocation and give it to ``caller``; its deadline starts now."""
        while True:
            if self._queue:
                invocation = self._queue.popleft()
            else:
                waiter: asyncio.Future[Invocation] = asyncio.get_running_loop().create_future()
                self._pollers.append((caller, waiter))
                try:
                    invocation = await waiter
                    self._handed -= 1
                except asyncio.CancelledError:  # the runtime hung up
                    if waiter.done() and not waiter.cancelled():
                        self._handed -= 1
                        self._dispatch(waiter.result(), front=True)
                    elif (caller, waiter) in self._pollers:
                        self._pollers.remove((caller, waiter))
                    raise
            if not invocation.outcome.done():  # else withdrawn while on its way
                self._take(invocation, caller)
                return invocation

    def resolve(
        self, request_id: str, caller: Worker | None, result: bytes | DeliveryError
    ) -> None:
        """Answer a running invocation: response bytes or an error.

        The answer is discarded if the invoker gave up. Raises :class:`UnknownInvocation`.
        """
        invocation = self._running.get(request_id)
        if invocation is None or invocation.holder is not caller:
            raise UnknownInvocation(request_id)
        self.finish(invocation, result)

    def abandon(self, invocation: Invocation) -> None:
        """The invoker stopped waiting: withdraw a queued invocation, discard a later answer.

        A running one stays until its runtime answers or its deadline passes, so a hung
        function is still reset.
        """
        if invocation.outcome.done():
            return
        invocation.outcome.cancel()
        if invocation in self._queue:
            self._queue.remove(invocation)

    def fail_next(self, caller: Worker | None, make_error: ErrorFactory) -> None:
        """A cold start of ``caller`` failed: the next invocation it would serve gets the error.

        That is the oldest queued invocation, or the next one submitted while no runtime
        waits. One failure is kept per caller, until :meth:`forgive` (the caller polls).
        """
        self._failed_inits.pop(caller, None)
        self._failed_inits[caller] = make_error
        while self._queue and self._failed_inits:
            self._fail_with_init_error(self._queue[0])

    def runtime_waiting(self) -> bool:
        """Whether a runtime is polling for an invocation right now."""
        return any(not waiter.done() for _, waiter in self._pollers)

    @property
    def queued(self) -> int:
        """Invocations no runtime has taken yet."""
        return len(self._queue)

    def busy_instances(self) -> int:
        """How many callers run an invocation now, or have been given one to take."""
        return len({i.holder for i in self._running.values()}) + self._handed

    def holds(self, caller: Worker) -> bool:
        """Whether ``caller`` is running an invocation."""
        return any(i.holder is caller for i in self._running.values())

    def withdraw(self, caller: Worker) -> bool:
        """Take ``caller`` out of the runtimes waiting for work, if it waits and holds
        nothing: no invocation can reach it any more (it is about to be stopped). Its poll
        stays unanswered. False (nothing changed) when it is busy or not polling."""
        if self.holds(caller):
            return False
        mine = [(c, w) for c, w in self._pollers if c is caller and not w.done()]
        if not mine:
            return False
        for entry in mine:
            self._pollers.remove(entry)
        return True

    def forgive(self, caller: Worker | None) -> None:
        """``caller`` initialised fine after all: forget its failed cold start."""
        self._failed_inits.pop(caller, None)

    def fail_held(self, caller: Worker, make_error: ErrorFactory) -> None:
        """Fail every invocation ``caller`` holds (its process exited)."""
        for invocation in [i for i in self._running.values() if i.holder is caller]:
            self.finish(invocation, make_error(invocation.request_id))

    def close(self, message: str) -> None:
        """Fail everything pending with ``TargetUnavailable(message)``; refuse new work."""
        self._closed = True
        self._failed_inits.clear()
        for invocation in [*self._queue, *self._running.values()]:
            self.finish(invocation, TargetUnavailable(message))

    def _dispatch(self, invocation: Invocation, *, front: bool = False) -> None:
        # the runtime that asked last takes it: under a falling load the same few instances
        # keep the work and the others go idle, to be stopped after the idle timeout
        while self._pollers:
            _, waiter = self._pollers.pop()
            if not waiter.done():
                waiter.set_result(invocation)
                self._handed += 1
                return
        if front:
            self._queue.appendleft(invocation)
        else:
            self._queue.append(invocation)
        if self._failed_inits:
            self._fail_with_init_error(self._queue[0])

    def _fail_with_init_error(self, invocation: Invocation) -> None:
        caller = next(iter(self._failed_inits))
        self.finish(invocation, self._failed_inits.pop(caller)(invocation.request_id))

    def _take(self, invocation: Invocation, caller: Worker | None) -> None:
        invocation.holder = caller
        invocation.started = time.monotonic()
        if caller is not None:
            caller.last_active = invocation.started
        invocation.deadline_ms = int((time.time() + invocation.timeout) * 1000)
        loop = asyncio.get_running_loop()
        invocation.timer = loop.call_later(invocation.timeout, self._expire, invocation)
        self._running[invocation.request_id] = invocation
        invocation.left_queue.set()
        if self._on_start is not None:
            self._on_start(invocation)

    def _expire(self, invocation: Invocation) -> None:
        if self._running.get(invocation.request_id) is invocation:
            self.finish(invocation, timeout_error(invocation))
            self._on_timeout(invocation)

    def finish(self, invocation: Invocation, result: bytes | DeliveryError) -> None:
        """Settle ``invocation`` with ``result`` unless it is settled already."""
        if self._running.get(invocation.request_id) is invocation:
            del self._running[invocation.request_id]
            if invocation.holder is not None:
                invocation.holder.last_active = time.monotonic()
            if self._on_finish is not None:
                self._on_finish(invocation, result)
        elif invocation in self._queue:
            self._queue.remove(invocation)
        if invocation.timer is not None:
            invocation.timer.cancel()
        invocation.left_queue.set()
        if invocation.outcome.done():  # already answered, or the invoker gave up
            return
        if isinstance(result, bytes):
            invocation.outcome.set_result(result)
        else:
            invocation.outcome.set_exception(result)
