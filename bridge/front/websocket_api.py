"""An API Gateway WebSocket API, with the ``@connections`` API handlers post back through.

Clients connect to ``ws://host:port/{stage}`` (or ``/``). The upgrade request is the
``$connect`` route: the function may refuse it (an error or a status that is not 2xx),
then the client gets API Gateway's status and no connection. Every message picks its
route with ``route_selection_expression`` (``$default`` when nothing matches) and invokes
that route's function; on a two-way route (``two_way``) the body of its answer goes back
to the client. Binary frames are refused (close 1003), as API Gateway does. When the
connection ends, however it ends, ``$disconnect`` is invoked once, after the fact, with
the close code and reason. Error messages to the client are API Gateway's, byte for byte
(``{"message": "Forbidden", "connectionId":"...", "requestId":"..."}``).

Handlers talk back through ``POST``/``GET``/``DELETE /{stage}/@connections/{id}`` on the
same port, over plain HTTP or TLS (``https://{domainName}/{stage}``, see
:mod:`bridge.front.tls`), as boto3's ``apigatewaymanagementapi`` client does; a connection
that is gone is ``410 GoneException``. Requests are not signature-checked: whoever
reaches the port may post to its clients, as with any local development server.

API Gateway's limits hold: a message over 128 KB closes the connection (1009), an idle
one is closed after ``idle_timeout_seconds`` (10 min), any after
``max_connection_seconds`` (2 h), and a route's function gets ``timeout_in_millis``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import unquote

from aiohttp import WSMsgType, web

from bridge import telemetry
from bridge.errors import DeliveryError
from bridge.events import dumps
from bridge.front.config import WebSocketApi
from bridge.front.frames import GuardedWebSocketResponse
from bridge.front.invoke import Call, call_within
from bridge.front.listener import Listener
from bridge.front.tls import LocalCA, default_names
from bridge.front.ws_events import (
    DELETED,
    ENDPOINT_TIMED_OUT,
    FORBIDDEN,
    GOING_AWAY,
    INTERNAL_SERVER_ERROR,
    MESSAGE_TOO_BIG,
    UNSUPPORTED_DATA,
    Connection,
    InvalidResponse,
    WsApiContext,
    client_closed,
    connect_accepted,
    connect_event,
    connection_info,
    disconnect_event,
    error_frame,
    gone_error,
    message_event,
    new_connection_id,
    new_message_id,
    new_request_id,
    payload_too_large_error,
    route_response,
    select_route,
)

__all__ = ["MAX_MESSAGE_BYTES", "WebSocketApiServer"]

_log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 128 * 1024  # API Gateway: 128 KB per message, in and out
_MESSAGES_AT_ONCE = 16  # per connection: invocations under way; the next message waits


@dataclass(eq=False)
class _Client:
    """A live connection: what the events need (``info``) and the socket."""

    info: Connection
    socket: web.WebSocketResponse
    closing: tuple[int, str] | None = None  # the code and reason the bridge closed with
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class WebSocketApiServer:
    """Serves one :class:`~bridge.front.config.WebSocketApi`; ``call`` invokes its functions.

    ``start()`` binds (raises ``OSError``) and returns ``host:port``; ``aclose()`` closes
    every connection (1001, ``$disconnect`` runs for each) and stops serving."""

    def __init__(self, config: WebSocketApi, call: Call, *, account_id: str, ca: LocalCA) -> None:
        self.config = config
        self._call = call
        self._account_id = account_id
        self._ca = ca
        self._clients: dict[str, _Client] = {}
        self._disconnects: set[asyncio.Task[None]] = set()
        self._context: WsApiContext | None = None
        self._runner: web.AppRunner | None = None
        self._listener: Listener | None = None
        self.address = ""

    @property
    def connections(self) -> list[str]:
        """The ids of the connections open now."""
        return list(self._clients)

    async def start(self) -> str:
        stage = self.config.stage
        app = web.Application(client_max_size=MAX_MESSAGE_BYTES)
        app.add_routes(
            [
                web.get(f"/{stage}", self._connect),
                web.get("/", self._connect),
                web.post(f"/{stage}/@connections/{{id}}", self._post),
                web.get(f"/{stage}/@connections/{{id}}", self._get),
                web.delete(f"/{stage}/@connections/{{id}}", self._delete),
            ]
        )
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await runner.setup()
        self._runner = runner
        self._ca.ensure()
        # the certificate names the domain name, known once the port is
        listener = Listener(runner.server, self.config.host, self.config.port)  # type: ignore[arg-type]
        self.address = await listener.start()
        self._listener = listener
        domain = self.config.domain_name or self.address
        listener.tls = await asyncio.to_thread(self._ca.server_context, default_names(domain))
        self._context = WsApiContext(
            api_id=self.config.id(),
            stage=stage,
            domain_name=domain,
            account_id=self._account_id,
        )
        return self.address

    async def aclose(self, grace: float = 5.0) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.aclose()
        clients = list(self._clients.values())
        await asyncio.gather(*(self._close(c, *GOING_AWAY) for c in clients))
        if self._disconnects:
            await asyncio.wait(self._disconnects, timeout=grace)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if listener is not None:
            listener.abort()

    # ------------------------------------------------------------ connections

    async def _connect(self, request: web.Request) -> web.StreamResponse:
        assert self._context is not None
        now = time.time()
        info = Connection(
            connection_id=new_connection_id(),
            connected_at=now,
            source_ip=_source_ip(request),
            user_agent=request.headers.get("User-Agent"),
            headers=[
                (k.decode(errors="replace"), v.decode(errors="replace"))
                for k, v in request.raw_headers
            ],
            raw_query=request.query_string,
            last_active_at=now,
            tls=request.secure,
        )
        protocols: tuple[str, ...] = ()
        if "$connect" in self.config.routes:
            event = connect_event(info, self._context, request_id=new_request_id(), now=now)
            answer, failure = await self._invoke("$connect", event, info.connection_id)
            accepted, status = connect_accepted(answer, failure is not None)
            if not accepted:
                telemetry.emit(
                    telemetry.WS_CONNECTED,
                    api=self.config.name,
                    connection=info.connection_id,
                    refused=status,
                )
                return web.Response(status=status)
            protocols = _subprotocols(answer)
        socket = GuardedWebSocketResponse(
            protocols=protocols,
            max_msg_size=MAX_MESSAGE_BYTES,
            autoping=True,
            compress=False,
        )
        await socket.prepare(request)
        client = _Client(info, socket)
        self._clients[info.connection_id] = client
        telemetry.emit(telemetry.WS_CONNECTED, api=self.config.name, connection=info.connection_id)
        code, reason = 1006, "Connection Closed Abnormally"
        try:
            code, reason = await self._serve(client)
        finally:
            self._clients.pop(info.connection_id, None)
            for task in client.tasks:
                task.cancel()
            if not socket.closed:
                await socket.close(code=code, message=reason.encode())
            self._after_close(client, code, reason)
        return socket

    async def _serve(self, client: _Client) -> tuple[int, str]:
        """Read messages until the connection ends; the close code and reason."""
        socket = client.socket
        ends = client.info.connected_at + self.config.max_connection_seconds
        slots = asyncio.Semaphore(_MESSAGES_AT_ONCE)
        while True:
            left = ends - time.time()
            if left <= 0:
                return GOING_AWAY
            try:
                message = await socket.receive(timeout=min(self.config.idle_timeout_seconds, left))
            except TimeoutError:
                return GOING_AWAY
            if message.type == WSMsgType.BINARY:
                return UNSUPPORTED_DATA, "Binary messages are not supported"
            if message.type == WSMsgType.TEXT:
                client.info.last_active_at = time.time()
                await slots.acquire()
                task = asyncio.create_task(self._message(client, message.data))
                client.tasks.add(task)
                task.add_done_callback(client.tasks.discard)
                task.add_done_callback(lambda _: slots.release())
                continue
            if message.type == WSMsgType.ERROR:  # a message over the limit, a bad frame
                exc = socket.exception()
                if getattr(exc, "code", None) == MESSAGE_TOO_BIG:
                    return MESSAGE_TOO_BIG, "Message too big"
                return 1002, str(exc) or "Protocol error"
            # CLOSE / CLOSING / CLOSED: by the client, or by us (DELETE, shutdown)
            if client.closing is not None:
                return client.closing
            reason = message.extra if isinstance(message.extra, str) else ""
            return client_closed(socket.close_code, reason)

    async def _message(self, client: _Client, data: str | bytes) -> None:
        assert self._context is not None
        route = select_route(self.config.route_selection_expression, data, self.config.routes)
        request_id = new_request_id()
        event = message_event(
            client.info,
            self._context,
            route_key=route,
            body=data,
            request_id=request_id,
            message_id=new_message_id(client.info.connection_id),
            now=time.time(),
        )
        connection = client.info.connection_id
        if route not in self.config.routes:  # no $default: API Gateway says so
            await _send(client, error_frame(FORBIDDEN, connection, request_id))
            return
        answer, failure = await self._invoke(route, event, connection)
        if failure is not None or answer is None:
            message = failure or INTERNAL_SERVER_ERROR
            await _send(client, error_frame(message, connection, request_id))
            return
        if not self.config.is_two_way(route):
            return
        try:
            reply = route_response(answer)
        except InvalidResponse as exc:
            telemetry.emit(
                telemetry.API_INVALID_RESPONSE,
                api=self.config.name,
                route=route,
                connection=connection,
                reason=str(exc),
                level=logging.WARNING,
            )
            await _send(client, error_frame(INTERNAL_SERVER_ERROR, connection, request_id))
            return
        if reply is not None:
            await _send(client, reply)

    def _after_close(self, client: _Client, code: int, reason: str) -> None:
        telemetry.emit(
            telemetry.WS_DISCONNECTED,
            api=self.config.name,
            connection=client.info.connection_id,
            code=code,
        )
        if "$disconnect" not in self.config.routes:
            return
        assert self._context is not None
        event = disconnect_event(
            client.info,
            self._context,
            status_code=code,
            reason=reason,
            request_id=new_request_id(),
            now=time.time(),
        )
        task = asyncio.create_task(self._disconnect(event, client.info.connection_id))
        self._disconnects.add(task)
        task.add_done_callback(self._disconnects.discard)

    async def _disconnect(self, event: dict[str, object], connection: str) -> None:
        await self._invoke("$disconnect", event, connection)  # its answer is ignored

    async def _invoke(
        self, route: str, event: dict[str, object], connection: str
    ) -> tuple[bytes | None, str | None]:
        """Invoke ``route``'s function: (its answer, None), or (None, the message API
        Gateway sends the client for what went wrong)."""
        function = self.config.routes[route]
        try:
            answer = await call_within(
                self._call,
                function,
                dumps(event),
                request_id=str(uuid.uuid4()),
                timeout=self.config.timeout_in_millis / 1000,
            )
        except (DeliveryError, TimeoutError) as exc:
            timeout = isinstance(exc, TimeoutError)
            telemetry.emit(
                telemetry.API_TIMEOUT if timeout else telemetry.API_FUNCTION_ERROR,
                api=self.config.name,
                route=route,
                connection=connection,
                reason=f"no answer in {self.config.timeout_in_millis} ms"
                if timeout
                else f"{type(exc).__name__}: {exc}",
                level=logging.WARNING,
            )
            return None, ENDPOINT_TIMED_OUT if timeout else INTERNAL_SERVER_ERROR
        telemetry.emit(telemetry.WS_MESSAGE, api=self.config.name, route=route)
        return answer, None

    async def _close(self, client: _Client, code: int, reason: str) -> None:
        if client.closing is None:
            client.closing = (code, reason)
        with contextlib.suppress(Exception):
            await client.socket.close(code=code, message=reason.encode())

    # ------------------------------------------------------------ @connections

    def _client(self, request: web.Request) -> _Client | None:
        return self._clients.get(unquote(request.match_info["id"]))

    async def _post(self, request: web.Request) -> web.Response:
        client = self._client(request)
        if client is None or client.socket.closed:
            return _aws_error(*gone_error())
        try:
            data = await request.read()  # aiohttp refuses more than client_max_size
        except web.HTTPRequestEntityTooLarge:
            return _aws_error(*payload_too_large_error())
        try:
            await _send(client, data)
        except ConnectionError:
            return _aws_error(*gone_error())
        return web.Response(status=200)

    async def _get(self, request: web.Request) -> web.Response:
        client = self._client(request)
        if client is None:
            return _aws_error(*gone_error())
        return web.Response(
            body=dumps(connection_info(client.info)), content_type="application/json"
        )

    async def _delete(self, request: web.Request) -> web.Response:
        client = self._client(request)
        if client is None:
            return _aws_error(*gone_error())
        await self._close(client, *DELETED)
        return web.Response(status=204)


async def _send(client: _Client, data: str | bytes) -> None:
    """Send ``data`` to the client: text when it is UTF-8, else binary."""
    if isinstance(data, bytes):
        try:
            text = data.decode()
        except UnicodeDecodeError:
            await client.socket.send_bytes(data)
            return
    else:
        text = data
    await client.socket.send_str(text)


def _subprotocols(answer: bytes | None) -> tuple[str, ...]:
    """The subprotocol a ``$connect`` answer chose (its ``Sec-WebSocket-Protocol``)."""
    try:
        document = json.loads(answer or b"null")
    except ValueError:
        return ()
    headers = document.get("headers") if isinstance(document, dict) else None
    if not isinstance(headers, dict):
        return ()
    for name, value in headers.items():
        if str(name).lower() == "sec-websocket-protocol" and isinstance(value, str):
            return (value.split(",")[0].strip(),)
    return ()


def _aws_error(status: int, headers: dict[str, str], body: bytes) -> web.Response:
    return web.Response(status=status, headers=headers, body=body)


def _source_ip(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return str(peer[0]) if isinstance(peer, tuple) else "127.0.0.1"
