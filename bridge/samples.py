"""Sample events in AWS's shapes, for ``trigger-bridge generate-event``.

A source type's sample is its connector's ``sample_event`` hook (see
:class:`bridge.connector.Connector`), found through the registry, so a third-party
connector that defines the hook has samples too; ``dynamodb`` is another name of
``dynamodb_streams``. The API front door's requests are the bridge's own:
``http-api`` (an HTTP API's event, payload format 2.0 or 1.0) and ``websocket-api`` (a
WebSocket API's ``$connect``, message or ``$disconnect`` event), built here with
:mod:`bridge.front`'s event builders. Either way a sample is exactly what the bridge would
send, with placeholder values a caller may replace through the builder's parameters.
"""

from __future__ import annotations

import difflib
import inspect
import json
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union, get_args, get_origin

from bridge.events import dumps
from bridge.registry import UnknownConnector, connector_class, connector_types

__all__ = [
    "ALIASES",
    "Parameter",
    "SampleError",
    "describe",
    "parameters",
    "sample_event",
    "sample_types",
]

#: other names of source types, kept for the command lines that use them
ALIASES = {"dynamodb": "dynamodb_streams"}

Builder = Callable[..., dict[str, Any]]


class SampleError(ValueError):
    """No sample for that name, or a parameter the sample does not take or cannot use;
    the message says which and what would do."""


@dataclass(frozen=True, slots=True)
class Parameter:
    """One parameter of a sample: its name, the type a value typed as text becomes
    (``str``, ``int``, ``float``, ``bool``, or ``"json"``), and its default."""

    name: str
    kind: type | str
    default: Any

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")


def sample_types() -> list[str]:
    """Every name a sample can be asked for."""
    return sorted({*connector_types(), *ALIASES, *_FRONT})


def parameters(kind: str) -> list[Parameter]:
    """The parameters of the sample ``kind``, in the builder's order; ``SampleError`` for
    a name without a sample."""
    builder = _builder(kind)
    try:
        signature = inspect.signature(builder, eval_str=True)
    except Exception:  # an annotation that does not evaluate: as written
        signature = inspect.signature(builder)
    return [
        Parameter(p.name, _kind(p.annotation), p.default)
        for p in signature.parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is not inspect.Parameter.empty
    ]


def describe(kind: str) -> str:
    """What the sample ``kind`` is and what its parameters mean: its builder's docstring."""
    return inspect.getdoc(_builder(kind)) or ""


def sample_event(kind: str, **values: str) -> dict[str, Any]:
    """The sample ``kind`` (a source type, an alias, ``http-api`` or ``websocket-api``),
    with ``values`` (text, as typed, by parameter name) in place of the placeholders.

    Raises ``SampleError`` for an unknown name, a parameter the sample does not take, a
    value that is not of its type or that the builder rejects."""
    known = {p.name: p for p in parameters(kind)}
    arguments: dict[str, Any] = {}
    for name, text in values.items():
        parameter = known.get(name)
        if parameter is None:
            options = ", ".join(p.option for p in known.values()) or "none"
            raise SampleError(
                f"{kind} takes no --{name.replace('_', '-')} (its parameters: {options})"
            )
        arguments[name] = _convert(parameter, text)
    try:
        return _builder(kind)(**arguments)
    except ValueError as exc:
        raise SampleError(f"{kind}: {exc}") from exc


def _builder(kind: str) -> Builder:
    if kind in _FRONT:
        return _FRONT[kind]
    try:
        cls = connector_class(ALIASES.get(kind, kind))
    except UnknownConnector:
        names = sample_types()
        close = difflib.get_close_matches(kind, names, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise SampleError(f"no sample {kind!r} ({hint}known: {', '.join(names)})") from None
    hook: Builder | None = getattr(cls, "sample_event", None)
    if hook is None:
        raise SampleError(
            f"source type {kind!r} has no sample: its connector "
            f"{cls.__module__}.{cls.__qualname__} defines no sample_event"
        )
    return hook


def _kind(annotation: Any) -> type | str:
    """The type a text value becomes: ``X | None`` is ``X``; ``str`` when unannotated."""
    if annotation is inspect.Parameter.empty:
        return str
    if get_origin(annotation) in (Union, types.UnionType):
        rest = [a for a in get_args(annotation) if a is not type(None)]
        annotation = rest[0] if len(rest) == 1 else annotation
    if isinstance(annotation, str):  # an annotation that did not evaluate
        annotation = annotation.removesuffix(" | None")
        return {"str": str, "int": int, "float": float, "bool": bool}.get(annotation, "json")
    return annotation if annotation in (str, int, float, bool) else "json"


def _boolean(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise ValueError(text)
    return text.lower() == "true"


#: how a value typed as text becomes a parameter's type, and what it must look like
_CONVERSIONS: dict[type | str, tuple[Callable[[str], Any], str]] = {
    str: (str, "text"),
    int: (int, "an integer"),
    float: (float, "a number"),
    bool: (_boolean, "true or false"),
    "json": (json.loads, "JSON"),
}


def _convert(parameter: Parameter, text: str) -> Any:
    convert, what = _CONVERSIONS[parameter.kind]
    try:
        return convert(text)
    except ValueError:
        raise SampleError(f"{parameter.option}: {text!r} is not {what}") from None


# ---------------------------------------------------------------- the API front door


def _http_api(
    *,
    method: str = "GET",
    path: str = "/items/42?color=blue",
    body: str = "",
    content_type: str = "application/json",
    route: str = "$default",
    payload_format_version: str = "2.0",
    stage: str = "$default",
    api: str = "my-api",
    account: str = "000000000000",
) -> dict[str, Any]:
    """A request to an HTTP API, as the front door's event builders shape it: ``path``
    with its query string as the client sent it, taking ``route`` (a route key such as
    ``GET /items/{id}``, whose path parameters it fills in, or ``$default``)."""
    from bridge.front.config import api_id
    from bridge.front.http_events import (
        ApiContext,
        HttpRequest,
        event_v1,
        event_v2,
        new_trace_id,
        with_gateway_headers,
    )
    from bridge.front.invoke import new_request_id
    from bridge.front.routing import RouteTable

    builders = {"2.0": event_v2, "1.0": event_v1}
    if payload_format_version not in builders:
        raise ValueError(f"payload_format_version {payload_format_version!r}: 2.0 or 1.0")
    raw_path, _, raw_query = path.partition("?")
    match = RouteTable({route: "function"}).match(method.upper(), raw_path)
    if match is None:
        raise ValueError(f"{method.upper()} {raw_path} does not take the route {route!r}")
    domain = "127.0.0.1:8080"
    headers = [("Host", domain), ("User-Agent", "curl/8.5.0"), ("Accept", "*/*")]
    if body:
        headers.append(("Content-Type", content_type))
    now = time.time()
    request = HttpRequest(
        method=method.upper(),
        raw_path=raw_path,
        raw_query=raw_query,
        headers=headers,
        body=body.encode(),
        source_ip="127.0.0.1",
        protocol="HTTP/1.1",
    )
    request = with_gateway_headers(request, port=8080, proto="http", trace_id=new_trace_id(now))
    context = ApiContext(
        api_id=api_id(api),
        stage=stage,
        domain_name=domain,
        account_id=account,
        stage_variables=None,
    )
    build = builders[payload_format_version]
    event = build(request, match, context, request_id=new_request_id(), now=now)
    return dict(json.loads(dumps(event)))


def _websocket_api(
    *,
    route: str = "$default",
    body: str = '{"action": "sendmessage", "data": "hello"}',
    stage: str = "dev",
    api: str = "my-ws-api",
    account: str = "000000000000",
) -> dict[str, Any]:
    """An event of a WebSocket API's connection: ``route`` ``$connect`` (the upgrade
    request), ``$disconnect`` (the client closed normally) or any other route key: a
    message with ``body``."""
    from bridge.front.config import api_id
    from bridge.front.ws_events import (
        Connection,
        WsApiContext,
        client_closed,
        connect_event,
        disconnect_event,
        message_event,
        new_connection_id,
        new_message_id,
        new_request_id,
    )

    now = time.time()
    domain = "127.0.0.1:8081"
    connection = Connection(
        connection_id=new_connection_id(),
        connected_at=now - 5.0,
        source_ip="127.0.0.1",
        user_agent="Python/3.11 websockets/15.0",
        headers=[
            ("Host", domain),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
            ("User-Agent", "Python/3.11 websockets/15.0"),
        ],
        raw_query="",
        last_active_at=now,
        tls=True,
    )
    context = WsApiContext(api_id=api_id(api), stage=stage, domain_name=domain, account_id=account)
    request_id = new_request_id()
    if route == "$connect":
        connection.connected_at = now
        event = connect_event(connection, context, request_id=request_id, now=now)
    elif route == "$disconnect":
        code, reason = client_closed(1000, "bye")
        event = disconnect_event(
            connection, context, status_code=code, reason=reason, request_id=request_id, now=now
        )
    else:
        message_id = new_message_id(connection.connection_id)
        event = message_event(
            connection, context, route_key=route, body=body,
            request_id=request_id, message_id=message_id, now=now,
        )  # fmt: skip
    return dict(json.loads(dumps(event)))


_FRONT: dict[str, Builder] = {"http-api": _http_api, "websocket-api": _websocket_api}
