"""A real loopback HTTP server that answers like the Lambda Invoke API.

``serve_function(handler, mode=...)`` starts an aiohttp server on 127.0.0.1 (ephemeral
port) that serves ``POST /2015-03-31/functions/{name}/invocations`` by calling
``handler(event)`` (sync or async; ``bytes`` results are sent verbatim, anything else as
JSON). Three modes:

``emulator``
    Like the Runtime Interface Emulator: a raised exception is a 200 with
    ``{"errorMessage", "errorType", "requestId", "stackTrace"}`` and NO
    ``X-Amz-Function-Error`` header; ``times_out_after`` makes every invocation answer
    ``Task timed out after N.00 seconds`` (200, text); a second concurrent request
    "crashes" it: that connection is dropped without a response, ``refused`` is
    counted, and every later request is dropped too (the real emulator panics and dies).
``aws``
    Like the real service: errors are a 200 with ``X-Amz-Function-Error: Unhandled``;
    concurrent requests are served.
``http``
    A plain webhook on every path: the handler's result is the 200 body, an exception
    is a 500.

In every mode ``reply(status, ...)`` queues canned answers (429 with Retry-After, 413,
...) that are used, in order, before the handler runs again. Every request is recorded
in ``requests`` (method, raw path, decoded name and query, headers, body), and
``high_water`` is the most requests ever in flight at once.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import traceback
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

__all__ = [
    "INVOKE_PATH",
    "CannedReply",
    "FakeLambda",
    "Mode",
    "RecordedRequest",
    "aws_error",
    "closed_port_url",
    "serve_function",
]

Mode = Literal["emulator", "aws", "http"]
Handler = Callable[[Any], Any]
INVOKE_PATH = "/2015-03-31/functions/{name}/invocations"


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    raw_path: str  # as sent, percent-escapes and query string included
    name: str | None  # the function name from the path, decoded
    query: dict[str, str]
    headers: CIMultiDictProxy[str]
    body: bytes


@dataclass(frozen=True)
class CannedReply:
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


def aws_error(
    status: int, error_type: str, message: str, *, retry_after: float | None = None
) -> CannedReply:
    """An error answer shaped like the Lambda service's own (not a function error)."""
    headers = {"Content-Type": "application/json", "x-amzn-ErrorType": error_type}
    if retry_after is not None:
        headers["Retry-After"] = f"{retry_after:g}"
    body = json.dumps({"Type": "User", "message": message}).encode()
    return CannedReply(status, body, headers)


def _encode(result: Any) -> bytes:
    return result if isinstance(result, bytes) else json.dumps(result).encode()


def _error_document(exc: BaseException) -> bytes:
    return json.dumps(
        {
            "errorMessage": str(exc),
            "errorType": type(exc).__name__,
            "requestId": str(uuid.uuid4()),
            "stackTrace": traceback.format_tb(exc.__traceback__),
        }
    ).encode()


class FakeLambda:
    """The server's state; tests read ``requests``, ``high_water``, ``refused``, ``url``."""

    def __init__(
        self,
        handler: Handler | None = None,
        *,
        mode: Mode = "emulator",
        times_out_after: float | None = None,
    ) -> None:
        self.handler: Handler = handler if handler is not None else (lambda event: event)
        self.mode = mode
        self.times_out_after = times_out_after
        self.requests: list[RecordedRequest] = []
        self.responses: list[bytes] = []  # the body of every answer sent, in order
        self.in_flight = 0
        self.high_water = 0
        self.refused = 0
        self.crashed = False
        self._canned: deque[CannedReply] = deque()
        self._runner: web.AppRunner | None = None
        self.url = ""

    # --- test-facing ---------------------------------------------------------------

    def reply(
        self,
        status: int,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        *,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` requests with this status instead of running."""
        self.queue(CannedReply(status, body, dict(headers or {})), times=times)

    def queue(self, canned: CannedReply, *, times: int = 1) -> None:
        self._canned.extend([canned] * times)

    @property
    def names(self) -> list[str | None]:
        return [r.name for r in self.requests]

    # --- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        if self.mode == "http":
            app.router.add_route("*", "/{tail:.*}", self._serve)
        else:
            app.router.add_post(INVOKE_PATH, self._serve)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- serving -------------------------------------------------------------------

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            RecordedRequest(
                method=request.method,
                raw_path=request.raw_path,
                name=request.match_info.get("name"),
                query=dict(request.query),
                headers=CIMultiDictProxy(CIMultiDict(request.headers)),
                body=body,
            )
        )
        if self.mode == "emulator" and (self.crashed or self.in_flight > 0):
            # The real emulator panics on a second concurrent invocation: no answer,
            # and nothing answers afterwards either.
            self.refused += 1
            self.crashed = True
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError  # aiohttp drops the request quietly
        self.in_flight += 1
        self.high_water = max(self.high_water, self.in_flight)
        try:
            status, payload, headers = await self._answer(body)
        finally:
            self.in_flight -= 1
        self.responses.append(payload)
        return web.Response(status=status, body=payload, headers=headers)

    async def _answer(self, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        if self._canned:
            canned = self._canned.popleft()
            return canned.status, canned.body, dict(canned.headers)
        if self.times_out_after is not None:
            text = f"Task timed out after {self.times_out_after:.2f} seconds"
            return 200, text.encode(), {"Content-Type": "text/plain"}
        event = json.loads(body) if body else None
        try:
            result = self.handler(event)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            if self.mode == "http":
                return 500, str(exc).encode(), {"Content-Type": "text/plain"}
            headers = {"Content-Type": "application/json"}
            if self.mode == "aws":
                headers["X-Amz-Function-Error"] = "Unhandled"
            return 200, _error_document(exc), headers
        headers = {"Content-Type": "application/json"}
        if self.mode == "aws":
            headers["X-Amz-Executed-Version"] = "$LATEST"
        return 200, _encode(result), headers


@asynccontextmanager
async def serve_function(
    handler: Handler | None = None,
    *,
    mode: Mode = "emulator",
    times_out_after: float | None = None,
) -> AsyncIterator[FakeLambda]:
    """A started :class:`FakeLambda`, stopped on exit."""
    server = FakeLambda(handler, mode=mode, times_out_after=times_out_after)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def closed_port_url() -> str:
    """``http://127.0.0.1:<port>`` where nothing listens (the port was just released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
