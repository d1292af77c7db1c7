"""The Runtime API's routes for the ``runtime`` target (see ``runtime_api``): the four
routes of AWS's Runtime API over an :class:`InvocationRegistry`, as one caller sees them,
and the listening socket that serves them.

Statuses and bodies are Lambda's: 202 ``{"status":"OK"}``; 400 ``InvalidRequestID``; 403
``Forbidden`` for a caller the gate refuses; 413 ``RequestEntityTooLarge`` for a response
over ``MAX_RESPONSE_SIZE`` bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from bridge.errors import DeliveryError, TargetUnavailable
from bridge.targets._runtime_callers import Gate
from bridge.targets._runtime_invocations import (
    InvocationRegistry,
    UnknownInvocation,
    reported_error,
)
from bridge.targets._runtime_procs import Worker
from bridge.targets.base import MAX_RESPONSE_SIZE, error_document, response_too_large

__all__ = ["API_PREFIX", "ERROR_TYPE_HEADER", "Endpoint", "RuntimeApi"]

API_PREFIX = "/2018-06-01/runtime"
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json_response(status: int, body: bytes) -> web.Response:
    return web.Response(status=status, body=body, content_type="application/json")


def _accepted() -> web.Response:
    return _json_response(202, b'{"status":"OK"}')


def _forbidden() -> web.Response:
    message = "This process may not use this function's Runtime API"
    return _json_response(403, error_document("Forbidden", message))


def _invalid_request_id() -> web.Response:
    return _json_response(400, error_document("InvalidRequestID", "Invalid request ID"))


def _too_large() -> web.Response:
    message = f"Exceeded maximum allowed payload size ({MAX_RESPONSE_SIZE} bytes)."
    return _json_response(413, error_document("RequestEntityTooLarge", message))


async def _read_body(request: web.Request) -> bytes | None:
    """The request body as sent, or ``None`` if it is over ``MAX_RESPONSE_SIZE`` bytes."""
    if (request.content_length or 0) > MAX_RESPONSE_SIZE:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > MAX_RESPONSE_SIZE:
            return None  # aiohttp reads and drops the rest before the next request
        chunks.append(chunk)
    return b"".join(chunks)


class RuntimeApi:
    """The Runtime API routes for one caller, on top of an :class:`InvocationRegistry`.

    ``caller`` is the worker slot this endpoint belongs to, or ``None`` for the shared
    address that runtimes started by the user poll; ``gate`` admits or refuses (403
    ``Forbidden``) each connection before anything else happens. The routes are served
    under ``/2018-06-01/runtime`` and, given a ``key``, under ``/<key>/2018-06-01/runtime``
    as well. Statuses and bodies are Lambda's: 202
    ``{"status":"OK"}``; 400 ``InvalidRequestID`` for a request id the caller does not hold
    (unknown, or already answered); 413 ``RequestEntityTooLarge`` for a response over
    ``MAX_RESPONSE_SIZE`` bytes, which fails the invocation with
    ``Function.ResponseSizeTooLarge``.
    """

    def __init__(
        self,
        registry: InvocationRegistry,
        caller: Worker | None,
        *,
        function_arn: str,
        gate: Gate,
        key: str | None = None,
    ) -> None:
        self._registry = registry
        self._caller = caller
        self._function_arn = function_arn
        self._gate = gate
        self._key = key

    def app(self) -> web.Application:
        @web.middleware
        async def admitted_only(request: web.Request, handler: _Handler) -> web.StreamResponse:
            if not await self._gate.admits(request):
                return _forbidden()
            return await handler(request)

        app = web.Application(middlewares=[admitted_only])
        prefixes = [API_PREFIX] if self._key is None else [API_PREFIX, f"/{self._key}{API_PREFIX}"]
        for prefix in prefixes:
            app.add_routes(
                [
                    web.get(f"{prefix}/invocation/next", self.next_invocation),
                    web.post(f"{prefix}/invocation/{{request_id}}/response", self.response),
                    web.post(f"{prefix}/invocation/{{request_id}}/error", self.error),
                    web.post(f"{prefix}/init/error", self.init_error),
                ]
            )
        return app

    async def next_invocation(self, request: web.Request) -> web.StreamResponse:
        """Long poll: the event bytes as queued, with the invocation's headers."""
        if self._caller is not None:
            self._caller.mark_polled()
        self._registry.forgive(self._caller)
        invocation = await self._registry.next(self._caller)
        response = web.StreamResponse(
            headers={
                "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": self._function_arn,
                "Lambda-Runtime-Trace-Id": invocation.trace_id,
                # exactly this value: awslambdaric passes anything else to handlers raw
                "Content-Type": "application/json",
            }
        )
        response.content_length = len(invocation.payload)
        try:
            await response.prepare(request)
            await response.write(invocation.payload)
            await response.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            gone = TargetUnavailable("the runtime hung up before it received the invocation")
            self._registry.finish(invocation, gone)
            raise
        return response

    async def response(self, request: web.Request) -> web.Response:
        return await self._answer(request, lambda body: body)

    async def error(self, request: web.Request) -> web.Response:
        header = request.headers.get(ERROR_TYPE_HEADER)
        return await self._answer(request, lambda body: reported_error(body, header))

    async def _answer(
        self, request: web.Request, interpret: Callable[[bytes], bytes | DeliveryError]
    ) -> web.Response:
        body = await _read_body(request)
        result = response_too_large() if body is None else interpret(body)
        try:
            self._registry.resolve(request.match_info["request_id"], self._caller, result)
        except UnknownInvocation:
            return _invalid_request_id()
        return _too_large() if body is None else _accepted()

    async def init_error(self, request: web.Request) -> web.Response:
        """A failed cold start: served to the next invocation, as Lambda does."""
        body = await _read_body(request) or b""
        header = request.headers.get(ERROR_TYPE_HEADER)
        if self._caller is not None:
            reported = reported_error(body, header)
            self._caller.report_init_error(f"{reported.error_type}: {reported}")
        self._registry.fail_next(self._caller, lambda _: reported_error(body, header))
        return _accepted()


class Endpoint:
    """One listening socket serving a :class:`RuntimeApi`."""

    def __init__(self, api: RuntimeApi) -> None:
        # Cancelling the handler of a hung-up poll gives its invocation to another runtime.
        self._runner = web.AppRunner(
            api.app(), handler_cancellation=True, shutdown_timeout=0.5, access_log=None
        )

    async def start(self, host: str, port: int) -> str:
        """Bind and serve; returns the ``host:port`` bound. Raises ``OSError``."""
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound_port = self._runner.addresses[0][1]
        return f"[{host}]:{bound_port}" if ":" in host else f"{host}:{bound_port}"

    async def aclose(self) -> None:
        await self._runner.cleanup()
