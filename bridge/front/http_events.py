"""The events an API Gateway HTTP API sends its Lambda integration (payload format 2.0 and
1.0), and how it turns the function's answer into the HTTP response.

Sources: "Working with AWS Lambda proxy integrations for HTTP APIs"
(https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html)
and events captured from live HTTP APIs, cited where a rule comes from one.

Requests, both formats:

- the path is percent-decoded once (``rawPath``, ``requestContext.http.path``, 1.0's
  ``path``): see :func:`bridge.front.routing.decode_path`; ``rawQueryString`` is the query
  exactly as received;
- query values are form-decoded (``+`` is a space, ``%2B`` a plus: hotsock/voker
  testdata ``literalPlus=a+b`` -> ``"a b"``); 2.0 joins repeated names with ``,``; 1.0 puts
  the last value in ``queryStringParameters`` and all in ``multiValueQueryStringParameters``
  (aws-serverless-java-container's captured 1.0 event: ``foo=bar&foo=baz`` -> ``"baz"``);
- header names compare case-insensitively ("HTTP API has solved this", Jaewoo Ahn,
  https://medium.com/@lancers/amazon-api-gateway-explaining-lambda-payload-version-2-0-in-http-api-24b0b4db5d36)
  and are sorted, as every captured event shows them. 2.0 lower-cases them and joins
  repeats with ``,`` (voker: ``first,second``); 1.0 keeps the last value in ``headers``,
  all in ``multiValueHeaders``, and spells names as received except the ones API Gateway
  rewrites (:data:`_V1_NAMES`, seen in three captured 1.0 events);
- 2.0 moves the ``Cookie`` headers into ``cookies``, one entry per cookie;
- a body is a string when its content type is ``text/*``, ``application/json``,
  ``application/xml`` or ``application/javascript``, else base64 with ``isBase64Encoded``
  true, also with no content type and for ``application/x-www-form-urlencoded``
  (ministackorg/ministack#766, checked against AWS; middyjs/middy#603: Slack's form
  posts arrive base64). No body: 2.0 has no ``body`` key, 1.0 ``"body": null``, both
  ``isBase64Encoded`` false (captured GET events);
- 2.0 leaves out ``cookies``, ``queryStringParameters``, ``pathParameters``, ``body`` and
  ``stageVariables`` when empty (aws-lambda-go testdata apigw-v2-request-no-authorizer);
  1.0 sends them as ``null``. 1.0's ``resource``, ``resourcePath`` and ``resourceId`` are
  the route's path and key, ``$default`` for the default route (captured events).

Responses: see :func:`response_v2` and :func:`response_v1`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from bridge.front.routing import DEFAULT_ROUTE, Match, decode_path

__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "ApiContext",
    "HttpRequest",
    "HttpResponse",
    "InvalidResponse",
    "event_v1",
    "event_v2",
    "new_trace_id",
    "response_v1",
    "response_v2",
    "with_gateway_headers",
]

#: what HTTP APIs send when the function's response names no content type
#: (fujiwara/ridge#9; aws-powertools/powertools-lambda-python#2464 saw ``text/plain``)
DEFAULT_CONTENT_TYPE = "text/plain; charset=utf-8"

_TEXT_TYPES = frozenset({"application/json", "application/xml", "application/javascript"})
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
#: header names payload 1.0 spells its own way, whatever the client sent
_V1_NAMES = {
    n.lower(): n
    for n in (
        "Content-Length", "Content-Type", "Host", "User-Agent", "X-Amzn-Trace-Id",
        "X-Forwarded-For", "X-Forwarded-Port", "X-Forwarded-Proto", "accept", "accept-encoding",
    )
}  # fmt: skip
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding"}
    | {"upgrade", "content-length"}
)
_IDENTITY_KEYS = (
    "accessKey", "accountId", "caller", "cognitoAmr", "cognitoAuthenticationProvider",
    "cognitoAuthenticationType", "cognitoIdentityId", "cognitoIdentityPoolId", "principalOrgId",
    "sourceIp", "user", "userAgent", "userArn",
)  # fmt: skip
_FORWARDED = frozenset({"x-forwarded-for", "x-forwarded-port", "x-forwarded-proto"})
_KINDS: tuple[tuple[str, type | tuple[type, ...]], ...] = (
    ("boolean", bool), ("number", (int, float)), ("string", str), ("array", list), ("object", dict),
)  # fmt: skip
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A request as the server received it."""

    method: str  # upper-case
    raw_path: str  # percent-encoded, without the query
    raw_query: str  # after '?', "" if none
    headers: Sequence[tuple[str, str]]  # arrival order, original case, repeats kept
    body: bytes
    source_ip: str
    protocol: str  # "HTTP/1.1"


@dataclass(frozen=True, slots=True)
class ApiContext:
    """The API a request came to."""

    api_id: str
    stage: str
    domain_name: str
    account_id: str
    stage_variables: Mapping[str, str] | None


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """What the client gets; ``headers`` may repeat a name (``set-cookie``)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


class InvalidResponse(ValueError):
    """The function's answer is not a response API Gateway accepts; says why."""


# ---------------------------------------------------------------- requests


def event_v2(
    request: HttpRequest, match: Match | None, api: ApiContext, *, request_id: str, now: float
) -> dict[str, Any]:
    """The payload format 2.0 event; ``match`` ``None`` is the ``$default`` route."""
    groups = _headers(request.headers)
    cookies = [c for value in groups.pop("cookie", ("", []))[1] for c in _cookies(value)]
    headers = {lower: ",".join(values) for lower, (_, values) in sorted(groups.items())}
    query = _grouped(_query(request.raw_query))
    path = decode_path(request.raw_path)
    route_key = match.route.key if match is not None else DEFAULT_ROUTE
    content_type = groups["content-type"][1][0] if "content-type" in groups else None
    body, is_base64 = _body(request.body, content_type)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": request.raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if query:
        event["queryStringParameters"] = {k: ",".join(v) for k, v in query.items()}
    event["requestContext"] = {
        "accountId": api.account_id,
        "apiId": api.api_id,
        "domainName": api.domain_name,
        "domainPrefix": _domain_prefix(api.domain_name),
        "http": {
            "method": request.method,
            "path": path,
            "protocol": request.protocol,
            "sourceIp": request.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": route_key,
        "stage": api.stage,
        "time": _clf_time(now),
        "timeEpoch": round(now * 1000),
    }
    if body is not None:
        event["body"] = body
    if match is not None and match.path_parameters:
        event["pathParameters"] = dict(match.path_parameters)
    event["isBase64Encoded"] = is_base64
    if api.stage_variables:
        event["stageVariables"] = dict(api.stage_variables)
    return event


def event_v1(
    request: HttpRequest, match: Match | None, api: ApiContext, *, request_id: str, now: float
) -> dict[str, Any]:
    """The payload format 1.0 event; ``match`` ``None`` is the ``$default`` route."""
    groups = sorted(
        (_V1_NAMES.get(lower, name), values)
        for lower, (name, values) in _headers(request.headers).items()
    )
    query = _grouped(_query(request.raw_query))
    path = decode_path(request.raw_path)
    route = match.route if match is not None else None
    resource = route.path if route is not None and route.path else DEFAULT_ROUTE
    content_type = next((v[0] for n, v in groups if n.lower() == "content-type"), None)
    body, is_base64 = _body(request.body, content_type)
    user_agent = next((",".join(v) for n, v in groups if n.lower() == "user-agent"), "")
    identity: dict[str, str | None] = dict.fromkeys(_IDENTITY_KEYS)
    identity.update(sourceIp=request.source_ip, userAgent=user_agent)
    return {
        "version": "1.0",
        "resource": resource,
        "path": path,
        "httpMethod": request.method,
        "headers": {name: values[-1] for name, values in groups},
        "multiValueHeaders": {name: list(values) for name, values in groups},
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "requestContext": {
            "accountId": api.account_id,
            "apiId": api.api_id,
            "domainName": api.domain_name,
            "domainPrefix": _domain_prefix(api.domain_name),
            "extendedRequestId": request_id,
            "httpMethod": request.method,
            "identity": identity,
            "path": path,
            "protocol": request.protocol,
            "requestId": request_id,
            "requestTime": _clf_time(now),
            "requestTimeEpoch": round(now * 1000),
            "resourceId": route.key if route is not None else DEFAULT_ROUTE,
            "resourcePath": resource,
            "stage": api.stage,
        },
        "pathParameters": dict(match.path_parameters) if match and match.path_parameters else None,
        "stageVariables": dict(api.stage_variables) if api.stage_variables else None,
        "body": body,
        "isBase64Encoded": is_base64,
    }


def with_gateway_headers(
    request: HttpRequest, *, port: int, proto: str, trace_id: str
) -> HttpRequest:
    """The request with the headers API Gateway sets before the event is built (seen in
    every captured event): hop-by-hop headers dropped, ``content-length`` the body's (``0``
    for none), ``x-amzn-trace-id`` (the client's if sent), ``x-forwarded-for`` (the
    client's list plus ``source_ip``), ``x-forwarded-port`` and ``x-forwarded-proto``."""
    kept = [(n, v) for n, v in request.headers if n.lower() not in _HOP_BY_HOP]
    forwarded = [v for n, v in kept if n.lower() == "x-forwarded-for"]
    kept = [(n, v) for n, v in kept if n.lower() not in _FORWARDED]
    if not any(n.lower() == "x-amzn-trace-id" for n, _ in kept):
        kept.append(("x-amzn-trace-id", trace_id))
    kept += [
        ("content-length", str(len(request.body))),
        ("x-forwarded-for", ", ".join([*forwarded, request.source_ip])),
        ("x-forwarded-port", str(port)),
        ("x-forwarded-proto", proto),
    ]
    return replace(request, headers=kept)


def new_trace_id(now: float) -> str:
    """An X-Ray trace header as API Gateway adds it: ``Root=1-<epoch hex>-<96 random bits>``."""
    return f"Root=1-{int(now):08x}-{secrets.token_hex(12)}"


def _headers(headers: Iterable[tuple[str, str]]) -> dict[str, tuple[str, list[str]]]:
    """lower-case name -> (the name as first received, every value in order)."""
    out: dict[str, tuple[str, list[str]]] = {}
    for name, value in headers:
        out.setdefault(name.lower(), (name, []))[1].append(value)
    return out


def _cookies(header: str) -> list[str]:
    return [c.strip() for c in header.split(";") if c.strip()]


def _query(raw_query: str) -> list[tuple[str, str]]:
    pairs = []
    for piece in raw_query.split("&"):
        if piece:
            name, _, value = piece.partition("=")
            pairs.append(
                (unquote_plus(name, errors="replace"), unquote_plus(value, errors="replace"))
            )
    return pairs


def _grouped(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in pairs:
        out.setdefault(name, []).append(value)
    return out


def _body(body: bytes, content_type: str | None) -> tuple[str | None, bool]:
    if not body:
        return None, False
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media.startswith("text/") or media in _TEXT_TYPES:
        return body.decode("utf-8", errors="replace"), False
    return base64.b64encode(body).decode("ascii"), True


def _domain_prefix(domain_name: str) -> str:
    """The first label of the host (``id`` of ``id.execute-api...``), port left out."""
    host = domain_name
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.split(":", 1)[0].split(".", 1)[0]


def _clf_time(now: float) -> str:
    """``12/Mar/2020:19:03:58 +0000``, English month names whatever the locale."""
    t = datetime.fromtimestamp(now, UTC)
    return f"{t.day:02d}/{_MONTHS[t.month - 1]}/{t.year}:{t:%H:%M:%S} +0000"


# ---------------------------------------------------------------- responses


def response_v2(payload: bytes) -> HttpResponse:
    """The client's response for a payload format 2.0 answer (the invocation's JSON).

    A JSON object with a ``statusCode`` is a response: ``headers`` (values strings, numbers
    or booleans), ``cookies`` (each a ``set-cookie``, ahead of any in ``headers``:
    ministackorg/ministack, observed), ``body``, ``isBase64Encoded``; other keys are
    ignored and ``multiValueHeaders`` is not read (powertools#2464). Without a content type
    the response gets :data:`DEFAULT_CONTENT_TYPE`. Any other valid JSON (a string, a
    number, an object without ``statusCode``) is sent as it is, byte for byte, ``200`` with
    ``content-type: application/json``: the function URL docs, which share this format,
    show ``"Hello, world!"`` reaching the client with its quotes (content-length 15).
    Raises :class:`InvalidResponse` (API Gateway: 500) for anything else."""
    answer = _load(payload)
    if not isinstance(answer, dict) or answer.get("statusCode") is None:
        return HttpResponse(200, [("content-type", "application/json")], payload)
    status = _status(answer)
    given = _single_headers(answer.get("headers"))
    cookies = answer.get("cookies") or []
    if not isinstance(cookies, list) or not all(isinstance(c, str) for c in cookies):
        raise InvalidResponse(f"cookies must be an array of strings, got {_kind(cookies)}")
    headers = [h for h in given if h[0].lower() != "set-cookie"]
    headers += [("set-cookie", _header_value("set-cookie", c)) for c in cookies]
    headers += [h for h in given if h[0].lower() == "set-cookie"]
    return HttpResponse(status, _with_content_type(headers), _response_body(answer))


def response_v1(payload: bytes) -> HttpResponse:
    """The client's response for a payload format 1.0 answer: a JSON object with
    ``statusCode``, ``headers``, ``multiValueHeaders``, ``body``, ``isBase64Encoded``.

    ``headers`` and ``multiValueHeaders`` are merged into one list; a name and value in
    both is sent once ("Output format of a Lambda function for proxy integration",
    https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-lambda-proxy-integrations.html).
    ``statusCode`` is required (AWS SAM CLI, from its trials against HTTP APIs).
    Raises :class:`InvalidResponse` (API Gateway: 500)."""
    answer = _load(payload)
    if not isinstance(answer, dict):
        raise InvalidResponse(f"a 1.0 response must be a JSON object, got {_kind(answer)}")
    if answer.get("statusCode") is None:
        raise InvalidResponse("a 1.0 response needs a statusCode")
    status = _status(answer)
    multi = answer.get("multiValueHeaders")
    if multi is not None and not isinstance(multi, dict):
        raise InvalidResponse(f"multiValueHeaders must be an object, got {_kind(multi)}")
    headers: list[tuple[str, str]] = []
    for name, values in (multi or {}).items():
        if values is None:
            continue
        if not isinstance(values, list):
            raise InvalidResponse(f"multiValueHeaders[{name!r}] must be an array")
        headers += [(name, _header_value(name, v)) for v in values if v is not None]
    both = {(n.lower(), v) for n, v in headers}
    headers += [
        (n, v) for n, v in _single_headers(answer.get("headers")) if (n.lower(), v) not in both
    ]
    return HttpResponse(status, _with_content_type(headers), _response_body(answer))


def _load(payload: bytes) -> Any:
    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        return json.loads(payload, parse_constant=no_constants)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InvalidResponse(f"the answer is not JSON: {exc}") from None


def _kind(value: Any) -> str:
    """The JSON type of a decoded value, for messages."""
    for kind, types in _KINDS:
        if isinstance(value, types):
            return kind
    return "null"


def _status(answer: dict[str, Any]) -> int:
    """statusCode as an int: a number, or its text ("200"), as a lenient JSON binder takes it."""
    value = answer["statusCode"]
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidResponse(f"statusCode must be an integer, got {_kind(value)}")
    if not 100 <= value <= 599:
        raise InvalidResponse(f"statusCode {value} is not an HTTP status (100-599)")
    return value


def _single_headers(headers: Any) -> list[tuple[str, str]]:
    if headers is None:
        return []
    if not isinstance(headers, dict):
        raise InvalidResponse(f"headers must be an object, got {_kind(headers)}")
    return [(n, _header_value(n, v)) for n, v in headers.items() if v is not None]


def _text(value: Any) -> str | None:
    """A string, or a number or boolean as JSON writes it (as a lenient JSON binder reads
    them into a string field); ``None`` for anything else."""
    if isinstance(value, str):
        return value
    return json.dumps(value) if isinstance(value, bool | int | float) else None


def _header_value(name: str, value: Any) -> str:
    text = _text(value)
    if text is None:
        raise InvalidResponse(f"header {name!r}: a value must be a string, got {_kind(value)}")
    _check_header(name, text)
    return text


def _check_header(name: str, value: str) -> None:
    if not _TOKEN.fullmatch(name):
        raise InvalidResponse(f"header name {name!r} is not a valid HTTP header name")
    if any(c in value for c in "\r\n\0"):
        raise InvalidResponse(f"header {name!r}: the value holds a line break or NUL")


def _with_content_type(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    if any(n.lower() == "content-type" for n, _ in headers):
        return headers
    return [*headers, ("content-type", DEFAULT_CONTENT_TYPE)]


def _response_body(answer: dict[str, Any]) -> bytes:
    body = answer.get("body")
    encoded = answer.get("isBase64Encoded")
    if isinstance(encoded, str) and encoded.lower() in ("true", "false"):
        encoded = encoded.lower() == "true"
    if encoded is not None and not isinstance(encoded, bool):
        raise InvalidResponse(f"isBase64Encoded must be a boolean, got {_kind(encoded)}")
    if body is None:
        return b""
    text = _text(body)
    if text is None:
        raise InvalidResponse(f"body must be a string, got {_kind(body)}")
    if not encoded:
        return text.encode("utf-8", errors="replace")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidResponse(
            f"isBase64Encoded is true but the body is not base64: {exc}"
        ) from None
