"""API Gateway WebSocket APIs as AWS shapes them: the ``$connect``/message/``$disconnect``
events a Lambda proxy integration receives, route selection, what goes back to the client,
and the ``@connections`` management API's answers. Pure functions: no server, no I/O.

Shapes and key order follow events API Gateway sent in 2024 (aws-lambda-go
``events/testdata``, Powertools' ``tests/events``): ``$connect`` carries the upgrade
request's headers (sorted case-insensitively, without ``Connection``/``Upgrade``, with
AWS's ``X-Amzn-Trace-Id`` and ``X-Forwarded-*``) and its query string if any; a message
carries ``messageId`` and ``body``, no headers; ``$disconnect`` four fixed headers and the
close code and reason.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache, partial
from typing import Any, TypeAlias
from urllib.parse import unquote_plus

from bridge.events import iso_timestamp

__all__ = [
    "DELETED", "ENDPOINT_TIMED_OUT", "FORBIDDEN", "GOING_AWAY", "INTERNAL_SERVER_ERROR",
    "MESSAGE_TOO_BIG", "NO_STATUS", "UNSUPPORTED_DATA", "Connection", "InvalidResponse",
    "WsApiContext", "client_closed",
    "connect_accepted", "connect_event", "connection_info", "disconnect_event", "error_frame",
    "forbidden_error", "gone_error", "limit_exceeded_error", "message_event", "new_connection_id",
    "new_message_id", "new_request_id", "payload_too_large_error", "route_response",
    "select_route", "validate_selection_expression",
]  # fmt: skip

#: (disconnectStatusCode, disconnectReason) of the closes API Gateway makes itself
GOING_AWAY = (1001, "Going away")  # idle 10 min, the 2-hour limit (client sees the same)
NO_STATUS = (1005, "Client-side close frame status not set")  # client closed without a code
DELETED = (1000, "Connection Closed Normally")  # DELETE @connections/{id}
#: close codes API Gateway sends the client: a binary frame; a message over 128 KB
UNSUPPORTED_DATA = 1003
MESSAGE_TOO_BIG = 1009

#: the ``message`` of API Gateway's error frames (see :func:`error_frame`)
FORBIDDEN = "Forbidden"  # no route matched and there is no $default
INTERNAL_SERVER_ERROR = "Internal server error"  # the function failed
#: the integration timeout passed (Kludex/mangum#128, aws/chalice#1406: seen by clients)
ENDPOINT_TIMED_OUT = "Endpoint request timed out"


@dataclass(frozen=True, slots=True)
class WsApiContext:
    """The API a connection belongs to, as its events name it."""

    api_id: str  # 10 lower-case letters and digits
    stage: str
    domain_name: str  # e.g. "127.0.0.1:8081"
    account_id: str


@dataclass(slots=True)
class Connection:
    """What the server knows of one client."""

    connection_id: str  # from new_connection_id()
    connected_at: float  # epoch seconds
    source_ip: str
    user_agent: str | None
    headers: Sequence[tuple[str, str]]  # the upgrade request's, arrival order, original case
    raw_query: str  # the upgrade request's query string ("" if none)
    last_active_at: float
    tls: bool = False  # reached over wss:// (X-Forwarded-Proto https, default port 443)


class InvalidResponse(ValueError):
    """A function's answer is not a Lambda proxy response (API Gateway: "Malformed Lambda
    proxy response"): not a JSON object, no integer ``statusCode``, a ``body`` that is not
    a string."""


# --- ids ----------------------------------------------------------------------------------

_NODE = os.urandom(2)
_id_lock = threading.Lock()
_last_tick = 0


def _tick() -> bytes:
    """6 bytes of time, strictly increasing in this process so that ids never repeat.

    AWS's ids are 11 bytes in URL-safe base64 (``BFHPhfCWIAMCKlQ=``): this time prefix
    (2**18 ticks per 100 ms), two node bytes, a kind byte (``0x02`` connections and
    messages, ``0x05`` requests) and two more; a message id keeps its connection's tail."""
    global _last_tick
    with _id_lock:
        now = time.time_ns() * 2**18 // 100_000_000 % 2**48
        _last_tick = now if now > _last_tick else (_last_tick + 1) % 2**48
        return _last_tick.to_bytes(6, "big")


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


def new_connection_id() -> str:
    """A ``connectionId`` like AWS's (``BFHPhfCWIAMCKlQ=``), unique in this process and
    safe in a URL path."""
    return _encode(_tick() + _NODE + b"\x02" + os.urandom(2))


def new_request_id() -> str:
    """A ``requestId``/``extendedRequestId`` like AWS's (``BFHPhFe3IAMF95g=``); the same
    value goes in both fields and in error frames."""
    return _encode(_tick() + _NODE + b"\x05" + os.urandom(2))


def new_message_id(connection_id: str) -> str:
    """A ``messageId`` like AWS's: a fresh time prefix on the connection id's tail."""
    try:
        tail = base64.urlsafe_b64decode(connection_id)[6:]
    except ValueError:  # not one of ours: a message id of its own
        tail = b""
    return _encode(_tick() + tail) if len(tail) == 5 else new_connection_id()


# --- events -------------------------------------------------------------------------------

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_HOP_BY_HOP = frozenset({"connection", "upgrade"})  # API Gateway leaves these out


def _request_time(now: float) -> str:
    """``11/Nov/2024:11:35:24 +0000`` (CLF, English month whatever the locale)."""
    t = datetime.fromtimestamp(now, UTC)
    return f"{t.day:02d}/{_MONTHS[t.month - 1]}/{t.year}:{t:%H:%M:%S} +0000"


# requestContext's keys in the order API Gateway writes them; each event has its own subset
_CONTEXT_ORDER = (  # noqa: SIM905 - a list literal would take a line a key
    "routeKey messageId disconnectStatusCode eventType extendedRequestId requestTime "
    "messageDirection disconnectReason stage connectedAt requestTimeEpoch identity requestId "
    "domainName connectionId apiId"
).split()


def _context(
    conn: Connection, api: WsApiContext, request_id: str, now: float, **own: Any
) -> dict[str, Any]:
    """``requestContext``: ``own`` holds ``routeKey``, ``eventType`` and the event's own keys."""
    identity = {"sourceIp": conn.source_ip}
    if conn.user_agent is not None:
        identity = {"userAgent": conn.user_agent} | identity
    values = own | {
        "extendedRequestId": request_id,
        "requestTime": _request_time(now),
        "messageDirection": "IN",
        "stage": api.stage,
        "connectedAt": int(conn.connected_at * 1000),
        "requestTimeEpoch": int(now * 1000),
        "identity": identity,
        "requestId": request_id,
        "domainName": api.domain_name,
        "connectionId": conn.connection_id,
        "apiId": api.api_id,
    }
    return {key: values[key] for key in _CONTEXT_ORDER if key in values}


def _first(conn: Connection, name: str) -> str | None:
    return next((v for k, v in conn.headers if k.lower() == name), None)


def _multi(pairs: Sequence[tuple[str, str]], sort: bool) -> tuple[dict[str, str], dict[str, Any]]:
    """``headers`` (last value wins) and ``multiValueHeaders`` from pairs; names that differ
    only in case are one, spelled as first seen."""
    spelling: dict[str, str] = {}
    values: dict[str, list[str]] = {}
    for name, value in pairs:
        key = spelling.setdefault(name.lower() if sort else name, name)
        values.setdefault(key, []).append(value)
    keys = sorted(values, key=str.lower) if sort else list(values)
    return {k: values[k][-1] for k in keys}, {k: values[k] for k in keys}


def _connect_headers(conn: Connection, now: float) -> list[tuple[str, str]]:
    pairs = [(k, v) for k, v in conn.headers if k.lower() not in _HOP_BY_HOP]
    added = {"x-forwarded-for", "x-forwarded-port", "x-forwarded-proto"}
    kept = [(k, v) for k, v in pairs if k.lower() not in added]
    if _first(conn, "x-amzn-trace-id") is None:
        kept.append(("X-Amzn-Trace-Id", f"Root=1-{int(now):08x}-{os.urandom(12).hex()}"))
    forwarded = _first(conn, "x-forwarded-for")
    kept.append(
        ("X-Forwarded-For", f"{forwarded}, {conn.source_ip}" if forwarded else conn.source_ip)
    )
    port = re.search(r":(\d+)$", _first(conn, "host") or "")
    kept.append(("X-Forwarded-Port", port[1] if port else "443" if conn.tls else "80"))
    kept.append(("X-Forwarded-Proto", "https" if conn.tls else "http"))
    return kept


def _query(raw: str) -> list[tuple[str, str]]:
    pairs = []
    for part in raw.split("&"):
        if part:
            name, _, value = part.partition("=")
            pairs.append((unquote_plus(name), unquote_plus(value)))
    return pairs


def connect_event(
    conn: Connection, api: WsApiContext, *, request_id: str, now: float
) -> dict[str, Any]:
    """The ``$connect`` event (``eventType`` ``CONNECT``) for an upgrade request seen at
    ``now``; ``queryStringParameters`` and its multi-value twin only when the upgrade
    request had a query string (values percent-decoded, the last one wins)."""
    headers, multi = _multi(_connect_headers(conn, now), sort=True)
    event: dict[str, Any] = {"headers": headers, "multiValueHeaders": multi}
    query = _query(conn.raw_query)
    if query:
        single, multi_query = _multi(query, sort=False)
        event |= {"queryStringParameters": single, "multiValueQueryStringParameters": multi_query}
    event["requestContext"] = _context(
        conn, api, request_id, now, routeKey="$connect", eventType="CONNECT"
    )
    event["isBase64Encoded"] = False
    return event


def message_event(
    conn: Connection, api: WsApiContext, *, route_key: str, body: str | bytes,
    request_id: str, message_id: str, now: float,
) -> dict[str, Any]:  # fmt: skip
    """The event of one message (``eventType`` ``MESSAGE``) for route ``route_key``.

    API Gateway refuses binary frames (it closes with :data:`UNSUPPORTED_DATA`); ``bytes``
    is shaped anyway, for a server that accepts them: ``body`` base64 and
    ``isBase64Encoded`` true."""
    rc = _context(
        conn, api, request_id, now, routeKey=route_key, eventType="MESSAGE", messageId=message_id
    )
    text = base64.b64encode(body).decode() if isinstance(body, bytes) else body
    return {"requestContext": rc, "body": text, "isBase64Encoded": isinstance(body, bytes)}


def disconnect_event(
    conn: Connection, api: WsApiContext, *, status_code: int, reason: str,
    request_id: str, now: float,
) -> dict[str, Any]:  # fmt: skip
    """The ``$disconnect`` event (``eventType`` ``DISCONNECT``): the close frame's code and
    reason when the client closed (:func:`client_closed`), else API Gateway's own
    (:data:`GOING_AWAY`, :data:`DELETED`). Its headers are always these four."""
    host = _first(conn, "host") or api.domain_name
    headers = {"Host": host, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""}
    rc = _context(
        conn, api, request_id, now, routeKey="$disconnect", eventType="DISCONNECT",
        disconnectStatusCode=status_code, disconnectReason=reason,
    )  # fmt: skip
    return {
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "requestContext": rc,
        "isBase64Encoded": False,
    }


def client_closed(code: int | None, reason: str = "") -> tuple[int, str]:
    """``disconnectStatusCode``/``disconnectReason`` for a close the client started: its
    code and reason, or :data:`NO_STATUS` for a close frame without a code."""
    return NO_STATUS if code is None or code == NO_STATUS[0] else (code, reason)


# --- route selection ------------------------------------------------------------------------

_PATH = r"request\.body(?:\.[^.\[\]{}$]+|\[\d+\]|\['[^']*'\]|\[\"[^\"]*\"\])*"
_UNWRAPPED_PATH = r"request\.body(?:\.[A-Za-z0-9_-]+|\[\d+\]|\['[^']*'\]|\[\"[^\"]*\"\])*"
_TOKEN = re.compile(r"\\\$|\$\{(?P<wrapped>[^}]*)\}|\$(?P<unwrapped>" + _UNWRAPPED_PATH + ")|\\$")
_SEGMENT = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")

_Part: TypeAlias = str | tuple[str | int, ...]  # static text, or a path into the message body


@lru_cache(maxsize=64)
def _parse(expression: str) -> tuple[_Part, ...]:
    if not expression:
        raise ValueError("a route selection expression cannot be empty")
    parts: list[_Part] = []
    at = 0
    for m in _TOKEN.finditer(expression):
        parts.append(expression[at : m.start()])
        at = m.end()
        token = m[0]
        if token == "\\$":
            parts.append("$")
            continue
        path = m["wrapped"] if m["wrapped"] is not None else m["unwrapped"]
        if path is None or not re.fullmatch(_PATH, path):
            raise ValueError(
                f"route selection expression {expression!r}: WebSocket APIs select on the "
                "message body, $request.body.{path} or ${request.body.path}"
            )
        segments = _SEGMENT.findall(path[len("request.body") :])
        parts.append(tuple(int(s[1]) if s[1] else s[0] or s[2] or s[3] for s in segments))
    parts.append(expression[at:])
    return tuple(p for p in parts if p != "")


def validate_selection_expression(expression: str) -> None:
    """Raise ``ValueError`` for a route selection expression a WebSocket API cannot have:
    empty, a ``$`` that starts no ``$request.body`` variable, an unclosed ``${``, a
    variable on anything but the message body (``$request.header.x``, ``$context.x``).
    Static text, ``\\$`` and several variables are fine (``${request.body.a}/v1``)."""
    _parse(expression)


def _lookup(document: Any, path: tuple[str | int, ...]) -> str:
    """The value at ``path``, stringified as API Gateway does ("" when not found)."""
    for step in path:
        if isinstance(step, int) and isinstance(document, list) and step < len(document):
            document = document[step]
        elif isinstance(document, dict) and str(step) in document:
            document = document[str(step)]
        else:
            return ""
    if document is None:
        return ""
    if isinstance(document, str):
        return document
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def select_route(expression: str, body: str | bytes, routes: Collection[str]) -> str:
    """The route key a message goes to: the expression evaluated over the message's JSON
    when a route has exactly that key (case-sensitive), else ``"$default"`` -- also for a
    body that is not JSON and for binary frames. A non-string value is stringified (``5``
    -> ``"5"``), a missing one is ``""``. The caller checks that ``$default`` exists; when
    it does not, API Gateway answers ``error_frame(FORBIDDEN, ...)``."""
    if isinstance(body, bytes):
        return "$default"
    try:
        document = json.loads(body)
    except ValueError:
        return "$default"
    key = "".join(p if isinstance(p, str) else _lookup(document, p) for p in _parse(expression))
    return key if key in routes and key not in ("$connect", "$disconnect") else "$default"


# --- what goes back to the client ---------------------------------------------------------


def _proxy_response(payload: bytes) -> dict[str, Any]:
    try:
        document = json.loads(payload)
    except ValueError:
        raise InvalidResponse("not JSON") from None
    if not isinstance(document, dict):
        raise InvalidResponse(f"a JSON {type(document).__name__}, not an object")
    status = document.get("statusCode")
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise InvalidResponse(f"statusCode {document.get('statusCode')!r}")
    if not isinstance(document.get("body", ""), str | None):
        raise InvalidResponse("body is not a string")
    return document | {"statusCode": status}


def route_response(payload: bytes) -> str | bytes | None:
    """What a two-way route (one with a ``$default`` route response) sends the client for
    its function's answer: the ``body`` whatever the ``statusCode`` (decoded ``bytes`` when
    ``isBase64Encoded``), ``None`` when there is no body or it is empty. A one-way route
    (API Gateway's default) sends nothing. Raises :class:`InvalidResponse`; API Gateway
    then answers ``error_frame(INTERNAL_SERVER_ERROR, ...)``."""
    document = _proxy_response(payload)
    body = document.get("body")
    if not body:
        return None
    if document.get("isBase64Encoded") is True:
        try:
            return base64.b64decode(body, validate=True)
        except ValueError:
            raise InvalidResponse("body is not base64") from None
    return str(body)


def connect_accepted(payload: bytes | None, error: bool) -> tuple[bool, int]:
    """Whether a ``$connect`` answer lets the client in, and the HTTP status it gets:
    ``(True, 101)`` for a 2xx ``statusCode`` (or ``payload`` ``None``: no ``$connect``
    function); the function's own status when it is not 2xx (``401``, ``403``, ``400``...);
    ``502`` when the function failed (``error``) or its answer is not a proxy response."""
    if error:
        return False, 502
    if payload is None:
        return True, 101
    try:
        status: int = _proxy_response(payload)["statusCode"]
    except InvalidResponse:
        return False, 502
    return (True, 101) if 200 <= status < 300 else (False, status)


def error_frame(message: str, connection_id: str, request_id: str) -> str:
    """API Gateway's error message to the client, byte for byte (its own spacing):
    ``{"message": "Forbidden", "connectionId":"...", "requestId":"..."}``."""
    return (
        f'{{"message": {json.dumps(message)}, "connectionId":{json.dumps(connection_id)}, '
        f'"requestId":{json.dumps(request_id)}}}'
    )


# --- @connections ---------------------------------------------------------------------------


def connection_info(conn: Connection) -> dict[str, Any]:
    """The body of ``GET /{stage}/@connections/{id}`` (``GetConnection``): ISO 8601
    timestamps, which boto3 returns as ``ConnectedAt``/``LastActiveAt`` datetimes."""
    return {
        "connectedAt": iso_timestamp(conn.connected_at),
        "identity": {"sourceIp": conn.source_ip, "userAgent": conn.user_agent},
        "lastActiveAt": iso_timestamp(conn.last_active_at),
    }


def _error(status: int, code: str, message: str | None) -> tuple[int, dict[str, str], bytes]:
    # the code travels in x-amzn-ErrorType (botocore and the other SDKs read it there); a
    # GoneException's body is empty, which is why the JS SDK reports "GoneException: 410"
    headers = {
        "Content-Type": "application/json",
        "x-amzn-ErrorType": code,
        "x-amzn-RequestId": str(uuid.uuid4()),
    }
    body = b"" if message is None else json.dumps({"message": message}).encode()
    return status, headers, body


#: the management API's errors, (status, headers, body) that boto3 raises as
#: ``client.exceptions.GoneException`` etc.
gone_error = partial(_error, 410, "GoneException", None)  # no such connection (any more)
payload_too_large_error = partial(_error, 413, "PayloadTooLargeException", "Message too long")
forbidden_error = partial(_error, 403, "ForbiddenException", "Forbidden")  # may not manage
limit_exceeded_error = partial(_error, 429, "LimitExceededException", None)  # or buffer full
