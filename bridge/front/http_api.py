"""An API Gateway HTTP API: each request invokes its route's function, whose answer is sent
back, as API Gateway's Lambda proxy integration does.

One request: CORS preflight (answered here when ``cors`` is set, as API Gateway does) ->
throttling (429) -> route (404) -> the event (:mod:`bridge.front.http_events`, payload
format 1.0 or 2.0) -> one synchronous invocation within the integration timeout -> the
response mapped back. What can go wrong is answered as API Gateway answers it: a function
error or an answer that is not a valid response ``500 {"message":"Internal Server
Error"}`` (the reason is logged), the integration timeout ``503 {"message":"Service
Unavailable"}``, a function that cannot be reached or is throttled ``500``/``503``
(:data:`_ERRORS`), a request body over 10 MB ``413``. Every answer carries
``apigw-requestid``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from aiohttp import web

from bridge import telemetry
from bridge.errors import FunctionError, TargetRejected, TargetUnavailable
from bridge.events import dumps
from bridge.front.config import Cors, HttpApi
from bridge.front.http_events import (
    ApiContext,
    HttpRequest,
    HttpResponse,
    InvalidResponse,
    event_v1,
    event_v2,
    response_v1,
    response_v2,
)
from bridge.front.invoke import Call, call_within, new_request_id
from bridge.front.listener import Listener
from bridge.front.routing import RouteTable

__all__ = ["MAX_REQUEST_BYTES", "HttpApiServer"]

_log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit

#: API Gateway's answers for what is not the function's response (status, message)
_ERRORS = {
    "not_found": (404, "Not Found"),
    "too_large": (413, "Request Entity Too Large"),
    "throttled": (429, "Too Many Requests"),
    "function_error": (500, "Internal Server Error"),
    "invalid_response": (500, "Internal Server Error"),
    "unavailable": (503, "Service Unavailable"),
    "timeout": (503, "Service Unavailable"),
}


class _TokenBucket:
    """API Gateway's throttling: ``burst`` requests at once, refilled at ``rate`` a second."""

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = float(burst)
        self._at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


class HttpApiServer:
    """Serves one :class:`~bridge.front.config.HttpApi`; ``call`` invokes its functions.

    ``start()`` binds (raises ``OSError``: a port in use) and serves until ``aclose()``,
    which lets requests in flight finish for up to ``grace`` seconds."""

    def __init__(self, config: HttpApi, call: Call, *, account_id: str) -> None:
        self.config = config
        self._call = call
        self._routes = RouteTable(config.routes)
        self._bucket = (
            _TokenBucket(config.throttling_rate_limit, config.throttling_burst_limit)
            if config.throttling_rate_limit is not None
            and config.throttling_burst_limit is not None
            else None
        )
        self._account_id = account_id
        self._server = web.Server(self._handle, request_factory=self._request, access_log=None)
        self._listener: Listener | None = None
        self._context: ApiContext | None = None
        self.address = ""

    def _request(
        self, message: Any, payload: Any, protocol: Any, writer: Any, task: Any
    ) -> web.BaseRequest:
        """aiohttp's request, reading bodies of up to API Gateway's 10 MB (aiohttp: 1 MB)."""
        loop = asyncio.get_running_loop()
        return web.BaseRequest(
            message, payload, protocol, writer, task, loop, client_max_size=MAX_REQUEST_BYTES
        )

    async def start(self) -> str:
        listener = Listener(self._server, self.config.host, self.config.port)
        self.address = await listener.start()
        self._listener = listener
        self._context = ApiContext(
            api_id=self.config.id(),
            stage=self.config.stage,
            domain_name=self.config.domain_name or self.address,
            account_id=self._account_id,
            stage_variables=self.config.stage_variables or None,
        )
        return self.address

    async def aclose(self, grace: float = 5.0) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.aclose()
        await self._server.shutdown(grace)
        if listener is not None:
            listener.abort()

    # ------------------------------------------------------------ one request

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        started = time.monotonic()
        request_id = new_request_id()
        response, route = await self._answer(request, request_id)
        response.headers["apigw-requestid"] = request_id
        if self.config.cors is not None:
            _add_cors(response, request, self.config.cors)
        telemetry.emit(
            telemetry.API_REQUEST,
            api=self.config.name,
            route=route or "-",
            status=response.status,
            ms=round((time.monotonic() - started) * 1000, 1),
        )
        return response

    async def _answer(
        self, request: web.BaseRequest, request_id: str
    ) -> tuple[web.Response, str | None]:
        cors = self.config.cors
        if cors is not None and _is_preflight(request):
            return _preflight(request, cors), None
        if (request.content_length or 0) > MAX_REQUEST_BYTES:
            return _error("too_large"), None
        if self._bucket is not None and not self._bucket.take():
            telemetry.emit(telemetry.API_THROTTLED, api=self.config.name, level=logging.DEBUG)
            return _error("throttled"), None
        match = self._routes.match(request.method, request.raw_path.split("?", 1)[0])
        if match is None:
            return _error("not_found"), None
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error("too_large"), match.route.key
        assert self._context is not None
        incoming = HttpRequest(
            method=request.method,
            raw_path=request.raw_path.split("?", 1)[0],
            raw_query=request.raw_path.split("?", 1)[1] if "?" in request.raw_path else "",
            headers=[
                (k.decode(errors="replace"), v.decode(errors="replace"))
                for k, v in request.raw_headers
            ],
            body=body,
            source_ip=_source_ip(request),
            protocol=f"HTTP/{request.version.major}.{request.version.minor}",
        )
        v1 = self.config.payload_format_version == "1.0"
        build = event_v1 if v1 else event_v2
        event = build(incoming, match, self._context, request_id=request_id, now=time.time())
        route = match.route.key
        try:
            answer = await call_within(
                self._call,
                match.route.target,
                dumps(event),
                request_id=str(uuid.uuid4()),  # Lambda's own id: API Gateway's is in the event
                timeout=self.config.timeout_in_millis / 1000,
            )
        except TimeoutError:
            self._tell(
                telemetry.API_TIMEOUT, route, f"no answer in {self.config.timeout_in_millis} ms"
            )
            return _error("timeout"), route
        except FunctionError as exc:
            self._tell(telemetry.API_FUNCTION_ERROR, route, f"{exc.error_type}: {exc}")
            return _error("function_error"), route
        except TargetRejected as exc:
            if exc.status == 413:
                return _error("too_large"), route
            self._tell(telemetry.API_UNAVAILABLE, route, str(exc))
            return _error("function_error"), route
        except TargetUnavailable as exc:
            if exc.throttled:  # the function is at its concurrency: Lambda's 429
                telemetry.emit(telemetry.API_THROTTLED, api=self.config.name, route=route)
                return _error("throttled"), route
            self._tell(telemetry.API_UNAVAILABLE, route, str(exc))
            return _error("unavailable"), route
        try:
            mapped = response_v1(answer) if v1 else response_v2(answer)
        except InvalidResponse as exc:
            self._tell(telemetry.API_INVALID_RESPONSE, route, str(exc))
            return _error("invalid_response"), route
        return _response(mapped), route

    def _tell(self, event: str, route: str, reason: str) -> None:
        telemetry.emit(
            event, api=self.config.name, route=route, reason=reason, level=logging.WARNING
        )


def _error(kind: str) -> web.Response:
    status, message = _ERRORS[kind]
    return web.Response(
        status=status, body=dumps({"message": message}), content_type="application/json"
    )


def _response(mapped: HttpResponse) -> web.Response:
    response = web.Response(status=mapped.status, body=mapped.body)
    response.headers.popall("Content-Type", None)  # the mapped headers carry one
    for name, value in mapped.headers:
        if name.lower() == "content-length":
            continue  # aiohttp counts the body itself
        response.headers.add(name, value)
    return response


def _source_ip(request: web.BaseRequest) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return str(peer[0]) if isinstance(peer, tuple) else "127.0.0.1"


# ---------------------------------------------------------------- CORS


def _is_preflight(request: web.BaseRequest) -> bool:
    return (
        request.method == "OPTIONS"
        and "Origin" in request.headers
        and "Access-Control-Request-Method" in request.headers
    )


def _allowed_origin(origin: str | None, cors: Cors) -> str | None:
    if origin is None:
        return None
    if "*" in cors.allow_origins:
        return "*"
    return origin if origin in cors.allow_origins else None


def _preflight(request: web.BaseRequest, cors: Cors) -> web.Response:
    response = web.Response(status=204)
    origin = _allowed_origin(request.headers.get("Origin"), cors)
    method = request.headers.get("Access-Control-Request-Method", "")
    methods = [m.upper() for m in cors.allow_methods]
    if origin is None or not ("*" in methods or method.upper() in methods):
        return response  # no CORS headers: the browser refuses
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Allow-Methods"] = ",".join(cors.allow_methods)
    asked = request.headers.get("Access-Control-Request-Headers")
    if cors.allow_headers:
        response.headers["Access-Control-Allow-Headers"] = (
            asked if "*" in cors.allow_headers and asked else ",".join(cors.allow_headers)
        )
    if cors.max_age is not None:
        response.headers["Access-Control-Max-Age"] = str(cors.max_age)
    if cors.allow_credentials:
        response.headers["Access-Control-Allow-Credentials"] = "true"
    return response


def _add_cors(response: web.Response, request: web.BaseRequest, cors: Cors) -> None:
    if "Access-Control-Allow-Origin" in response.headers:
        return  # the preflight's, or the function's own
    origin = _allowed_origin(request.headers.get("Origin"), cors)
    if origin is None:
        return
    response.headers["Access-Control-Allow-Origin"] = origin
    if cors.expose_headers:
        response.headers["Access-Control-Expose-Headers"] = ",".join(cors.expose_headers)
    if cors.allow_credentials:
        response.headers["Access-Control-Allow-Credentials"] = "true"
    if origin != "*":
        response.headers.add("Vary", "Origin")
