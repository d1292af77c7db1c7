"""API Gateway WebSocket events and answers against what AWS sends.

The expected events are ones API Gateway sent in 2024, as published in Powertools for AWS
Lambda's ``tests/events`` (wscat; ids and times kept so whole events compare) and in a
Firefox session's test fixtures; the ``@connections`` answers are parsed by a real boto3
``apigatewaymanagementapi`` client.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from botocore.config import Config

from bridge.front.ws_events import (
    DELETED,
    FORBIDDEN,
    GOING_AWAY,
    INTERNAL_SERVER_ERROR,
    NO_STATUS,
    Connection,
    InvalidResponse,
    WsApiContext,
    client_closed,
    connect_accepted,
    connect_event,
    connection_info,
    disconnect_event,
    error_frame,
    forbidden_error,
    gone_error,
    limit_exceeded_error,
    message_event,
    new_connection_id,
    new_message_id,
    new_request_id,
    payload_too_large_error,
    route_response,
    select_route,
    validate_selection_expression,
)

API = WsApiContext(
    api_id="asasasas",
    stage="prod",
    domain_name="asasasas.execute-api.us-east-1.amazonaws.com",
    account_id="123456789012",
)

# the upgrade request wscat sends, in its order
WSCAT_HEADERS = [
    ("Sec-WebSocket-Version", "13"),
    ("Sec-WebSocket-Key", "+W5xw47OHh3OTFsWKjGu9Q=="),
    ("Connection", "Upgrade"),
    ("Upgrade", "websocket"),
    ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
    ("Host", "fjnq7njcv2.execute-api.us-east-1.amazonaws.com"),
]

# Powertools tests/events/apiGatewayWebSocketApiConnect.json (API Gateway, Nov 2024)
AWS_CONNECT: dict[str, Any] = {
    "headers": {
        "Host": "fjnq7njcv2.execute-api.us-east-1.amazonaws.com",
        "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits",
        "Sec-WebSocket-Key": "+W5xw47OHh3OTFsWKjGu9Q==",
        "Sec-WebSocket-Version": "13",
        "X-Amzn-Trace-Id": "Root=1-6731ebfc-08e1e656421db73c5d2eef31",
        "X-Forwarded-For": "166.90.225.1",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
    },
    "multiValueHeaders": {
        "Host": ["fjnq7njcv2.execute-api.us-east-1.amazonaws.com"],
        "Sec-WebSocket-Extensions": ["permessage-deflate; client_max_window_bits"],
        "Sec-WebSocket-Key": ["+W5xw47OHh3OTFsWKjGu9Q=="],
        "Sec-WebSocket-Version": ["13"],
        "X-Amzn-Trace-Id": ["Root=1-6731ebfc-08e1e656421db73c5d2eef31"],
        "X-Forwarded-For": ["166.90.225.1"],
        "X-Forwarded-Port": ["443"],
        "X-Forwarded-Proto": ["https"],
    },
    "requestContext": {
        "routeKey": "$connect",
        "eventType": "CONNECT",
        "extendedRequestId": "BFHPhFe3IAMF95g=",
        "requestTime": "11/Nov/2024:11:35:24 +0000",
        "messageDirection": "IN",
        "stage": "prod",
        "connectedAt": 1731324924553,
        "requestTimeEpoch": 1731324924561,
        "identity": {"sourceIp": "166.90.225.1"},
        "requestId": "BFHPhFe3IAMF95g=",
        "domainName": "asasasas.execute-api.us-east-1.amazonaws.com",
        "connectionId": "BFHPhfCWIAMCKlQ=",
        "apiId": "asasasas",
    },
    "isBase64Encoded": False,
}

# ...apiGatewayWebSocketApiMessage.json
AWS_MESSAGE: dict[str, Any] = {
    "requestContext": {
        "routeKey": "chat",
        "messageId": "BFaVtfGSIAMCKug=",
        "eventType": "MESSAGE",
        "extendedRequestId": "BFaVtH2HoAMFZEQ=",
        "requestTime": "11/Nov/2024:13:45:46 +0000",
        "messageDirection": "IN",
        "stage": "prod",
        "connectedAt": 1731332735513,
        "requestTimeEpoch": 1731332746514,
        "identity": {"sourceIp": "166.90.225.1"},
        "requestId": "BFaVtH2HoAMFZEQ=",
        "domainName": "asasasas.execute-api.us-east-1.amazonaws.com",
        "connectionId": "BFaT_fALIAMCKug=",
        "apiId": "asasasas",
    },
    "body": '{"action": "chat", "message": "Hello from client"}',
    "isBase64Encoded": False,
}

# ...apiGatewayWebSocketApiDisconnect.json: wscat closed without a status code
AWS_DISCONNECT: dict[str, Any] = {
    "headers": {
        "Host": "asasasas.execute-api.us-east-1.amazonaws.com",
        "x-api-key": "",
        "X-Forwarded-For": "",
        "x-restapi": "",
    },
    "multiValueHeaders": {
        "Host": ["asasasas.execute-api.us-east-1.amazonaws.com"],
        "x-api-key": [""],
        "X-Forwarded-For": [""],
        "x-restapi": [""],
    },
    "requestContext": {
        "routeKey": "$disconnect",
        "disconnectStatusCode": 1005,
        "eventType": "DISCONNECT",
        "extendedRequestId": "BFbOeE87IAMF31w=",
        "requestTime": "11/Nov/2024:13:51:49 +0000",
        "messageDirection": "IN",
        "disconnectReason": "Client-side close frame status not set",
        "stage": "prod",
        "connectedAt": 1731332735513,
        "requestTimeEpoch": 1731333109875,
        "identity": {"sourceIp": "166.90.225.1"},
        "requestId": "BFbOeE87IAMF31w=",
        "domainName": "asasasas.execute-api.us-east-1.amazonaws.com",
        "connectionId": "BFaT_fALIAMCKug=",
        "apiId": "asasasas",
    },
    "isBase64Encoded": False,
}

FIREFOX_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:122.0) Gecko/20100101 Firefox/122.0"
# Firefox 122's upgrade request, in its order (Connection and Upgrade included)
FIREFOX_HEADERS = [
    ("Host", "allowedhost.com"),
    ("User-Agent", FIREFOX_UA),
    ("Accept", "*/*"),
    ("Accept-Language", "en-US,en;q=0.5"),
    ("Accept-Encoding", "gzip, deflate, br"),
    ("Sec-WebSocket-Version", "13"),
    ("Origin", "https://testsite.com"),
    ("Sec-WebSocket-Extensions", "permessage-deflate"),
    ("Sec-WebSocket-Key", "DM+9PqsQtaZrN+IMZbWTzg=="),
    ("Connection", "keep-alive, Upgrade"),
    ("Sec-Fetch-Dest", "empty"),
    ("Sec-Fetch-Mode", "websocket"),
    ("Sec-Fetch-Site", "cross-site"),
    ("Pragma", "no-cache"),
    ("Cache-Control", "no-cache"),
    ("Upgrade", "websocket"),
]
# the headers API Gateway gave that connection's $connect (custom domain, Feb 2024)
FIREFOX_EVENT_HEADER_NAMES = [
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "Cache-Control",
    "Host",
    "Origin",
    "Pragma",
    "Sec-Fetch-Dest",
    "Sec-Fetch-Mode",
    "Sec-Fetch-Site",
    "Sec-WebSocket-Extensions",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "User-Agent",
    "X-Amzn-Trace-Id",
    "X-Forwarded-For",
    "X-Forwarded-Port",
    "X-Forwarded-Proto",
]

ID = re.compile(r"^[A-Za-z0-9_-]{15}=$")
TRACE_ID = re.compile(r"^Root=1-[0-9a-f]{8}-[0-9a-f]{24}$")


def connection(**overrides: Any) -> Connection:
    fields: dict[str, Any] = {
        "connection_id": "BFHPhfCWIAMCKlQ=",
        "connected_at": 1731324924.553,
        "source_ip": "166.90.225.1",
        "user_agent": None,
        "headers": WSCAT_HEADERS,
        "raw_query": "",
        "last_active_at": 1731324924.553,
        "tls": True,
    }
    return Connection(**(fields | overrides))


def without_trace_id(event: dict[str, Any]) -> dict[str, Any]:
    """The event with its X-Amzn-Trace-Id (random, AWS's or ours) checked and dropped."""
    event = json.loads(json.dumps(event))
    assert TRACE_ID.match(event["headers"].pop("X-Amzn-Trace-Id"))
    assert len(event["multiValueHeaders"].pop("X-Amzn-Trace-Id")) == 1
    return event


# --- events ---------------------------------------------------------------------------------


def test_connect_event_is_the_one_api_gateway_sent() -> None:
    event = connect_event(connection(), API, request_id="BFHPhFe3IAMF95g=", now=1731324924.561)

    assert without_trace_id(event) == without_trace_id(AWS_CONNECT)
    assert list(event) == list(AWS_CONNECT)
    assert list(event["headers"]) == list(AWS_CONNECT["headers"])
    assert list(event["requestContext"]) == list(AWS_CONNECT["requestContext"])


def test_message_event_is_the_one_api_gateway_sent() -> None:
    conn = connection(connection_id="BFaT_fALIAMCKug=", connected_at=1731332735.513)
    event = message_event(
        conn,
        API,
        route_key="chat",
        body='{"action": "chat", "message": "Hello from client"}',
        request_id="BFaVtH2HoAMFZEQ=",
        message_id="BFaVtfGSIAMCKug=",
        now=1731332746.514,
    )

    assert json.dumps(event) == json.dumps(AWS_MESSAGE)  # key order included


def test_disconnect_event_is_the_one_api_gateway_sent() -> None:
    conn = connection(
        connection_id="BFaT_fALIAMCKug=",
        connected_at=1731332735.513,
        headers=[("Host", "asasasas.execute-api.us-east-1.amazonaws.com")],
    )
    event = disconnect_event(
        conn,
        API,
        status_code=1005,
        reason="Client-side close frame status not set",
        request_id="BFbOeE87IAMF31w=",
        now=1731333109.875,
    )

    assert json.dumps(event) == json.dumps(AWS_DISCONNECT)


def test_browser_connect_keeps_its_headers_sorted_without_connection_and_upgrade() -> None:
    conn = connection(user_agent=FIREFOX_UA, source_ip="185.69.197.15", headers=FIREFOX_HEADERS)
    event = connect_event(conn, API, request_id="TXzPWFkkjoEF92g=", now=1708326702.790)

    assert list(event["headers"]) == FIREFOX_EVENT_HEADER_NAMES
    assert list(event["multiValueHeaders"]) == FIREFOX_EVENT_HEADER_NAMES
    assert event["headers"]["X-Forwarded-For"] == "185.69.197.15"
    assert event["requestContext"]["identity"] == {
        "userAgent": FIREFOX_UA,
        "sourceIp": "185.69.197.15",
    }
    assert list(event["requestContext"]["identity"]) == ["userAgent", "sourceIp"]


def test_disconnect_after_idle_timeout_is_going_away_with_the_user_agent() -> None:
    conn = connection(user_agent=FIREFOX_UA, headers=[("Host", "allowedhost.com")])
    event = disconnect_event(
        conn, API, status_code=GOING_AWAY[0], reason=GOING_AWAY[1], request_id="x", now=1.0
    )

    context = event["requestContext"]
    assert (context["disconnectStatusCode"], context["disconnectReason"]) == (1001, "Going away")
    assert context["identity"] == {"userAgent": FIREFOX_UA, "sourceIp": "166.90.225.1"}
    assert event["headers"]["Host"] == "allowedhost.com"


def test_disconnect_host_falls_back_to_the_domain_name() -> None:
    event = disconnect_event(
        connection(headers=[]), API, status_code=1000, reason="", request_id="x", now=1.0
    )
    assert event["headers"]["Host"] == API.domain_name


def test_only_connect_carries_headers_and_only_messages_a_body() -> None:
    conn = connection()
    connect = connect_event(conn, API, request_id="r", now=1.0)
    message = message_event(
        conn, API, route_key="$default", body="hi", request_id="r", message_id="m", now=1.0
    )
    disconnect = disconnect_event(conn, API, status_code=1000, reason="", request_id="r", now=1.0)

    assert "body" not in connect and "body" not in disconnect
    assert "headers" not in message and "multiValueHeaders" not in message
    assert "messageId" not in connect["requestContext"]
    assert "messageId" not in disconnect["requestContext"]
    assert "disconnectStatusCode" not in message["requestContext"]
    assert [e["requestContext"]["eventType"] for e in (connect, message, disconnect)] == [
        "CONNECT",
        "MESSAGE",
        "DISCONNECT",
    ]


def test_query_string_parameters_only_when_the_upgrade_had_a_query() -> None:
    assert "queryStringParameters" not in connect_event(connection(), API, request_id="r", now=1)

    event = connect_event(
        connection(raw_query="token=a%2Bb&room=1&room=2&flag&Room=x&q=a+b"),
        API,
        request_id="r",
        now=1,
    )

    assert event["queryStringParameters"] == {
        "token": "a+b",
        "room": "2",
        "flag": "",
        "Room": "x",
        "q": "a b",
    }
    assert event["multiValueQueryStringParameters"] == {
        "token": ["a+b"],
        "room": ["1", "2"],
        "flag": [""],
        "Room": ["x"],
        "q": ["a b"],
    }
    assert list(event) == [
        "headers",
        "multiValueHeaders",
        "queryStringParameters",
        "multiValueQueryStringParameters",
        "requestContext",
        "isBase64Encoded",
    ]


def test_headers_differing_in_case_are_one_the_last_value_wins() -> None:
    headers = [("Host", "h:8081"), ("X-Token", "a"), ("x-token", "b"), ("Sec-WebSocket-Key", "k")]
    event = connect_event(connection(headers=headers), API, request_id="r", now=1)

    assert event["headers"]["X-Token"] == "b"
    assert event["multiValueHeaders"]["X-Token"] == ["a", "b"]
    assert "x-token" not in event["headers"]


def test_forwarded_headers_describe_how_the_client_reached_the_bridge() -> None:
    headers = [
        ("Host", "127.0.0.1:8081"),
        ("X-Forwarded-For", "10.0.0.1"),
        ("X-Forwarded-Proto", "https"),
        ("X-Amzn-Trace-Id", "Root=1-00000001-000000000000000000000001"),
    ]
    event = connect_event(
        connection(headers=headers, tls=False, source_ip="127.0.0.1"), API, request_id="r", now=1
    )

    assert event["headers"]["X-Forwarded-For"] == "10.0.0.1, 127.0.0.1"
    assert event["headers"]["X-Forwarded-Port"] == "8081"
    assert event["headers"]["X-Forwarded-Proto"] == "http"
    assert event["multiValueHeaders"]["X-Forwarded-Proto"] == ["http"]
    assert event["headers"]["X-Amzn-Trace-Id"] == "Root=1-00000001-000000000000000000000001"


def test_request_time_is_clf_in_english_and_epochs_are_milliseconds() -> None:
    event = connect_event(
        connection(connected_at=1709251199.9996), API, request_id="r", now=1709251200.25
    )
    context = event["requestContext"]

    assert context["requestTime"] == "01/Mar/2024:00:00:00 +0000"
    assert context["requestTimeEpoch"] == 1709251200250
    assert context["connectedAt"] == 1709251199999
    assert isinstance(context["connectedAt"], int)


def test_a_binary_frame_would_travel_base64() -> None:
    event = message_event(
        connection(), API, route_key="$default", body=b"\x00\xff", request_id="r",
        message_id="m", now=1,
    )  # fmt: skip

    assert event["body"] == "AP8="
    assert event["isBase64Encoded"] is True


@pytest.mark.parametrize(
    ("code", "reason", "expected"),
    [
        (None, "", NO_STATUS),
        (1005, "", (1005, "Client-side close frame status not set")),
        (1000, "bye", (1000, "bye")),
        (1001, "", (1001, "")),
        (4000, "app", (4000, "app")),
    ],
)
def test_a_client_close_keeps_its_code_and_reason(
    code: int | None, reason: str, expected: tuple[int, str]
) -> None:
    assert client_closed(code, reason) == expected


def test_api_gateway_own_closes() -> None:
    assert GOING_AWAY == (1001, "Going away")
    assert DELETED == (1000, "Connection Closed Normally")


# --- ids --------------------------------------------------------------------------------------


def test_ids_look_like_aws_and_never_repeat() -> None:
    ids = [new_connection_id() for _ in range(5000)] + [new_request_id() for _ in range(5000)]

    assert len(set(ids)) == len(ids)
    assert all(ID.match(i) for i in ids)
    assert {base64.urlsafe_b64decode(i)[8] for i in ids} == {0x02, 0x05}
    for aws in ("BFHPhfCWIAMCKlQ=", "BFaT_fALIAMCKug=", "BFHPhFe3IAMF95g=", "R1knPc2ntjMCFIA="):
        assert ID.match(aws)


def test_ids_sort_by_time() -> None:
    first, second = new_request_id(), new_request_id()
    assert base64.urlsafe_b64decode(first)[:6] < base64.urlsafe_b64decode(second)[:6]


def test_a_message_id_keeps_its_connection_tail_as_aws() -> None:
    conn = new_connection_id()
    message = new_message_id(conn)

    assert ID.match(message) and message != conn
    assert base64.urlsafe_b64decode(message)[6:] == base64.urlsafe_b64decode(conn)[6:]
    # AWS: connection BFaT_fALIAMCKug=, its message BFaVtfGSIAMCKug=
    assert ID.match(new_message_id("not-an-aws-id"))


# --- route selection ----------------------------------------------------------------------------

DOC_MESSAGE = '{"service": "chat", "action": "join", "data": {"room": "room1234"}}'


@pytest.mark.parametrize(
    ("expression", "expected"),
    [  # the table of AWS's "Route selection expressions"
        ("$request.body.action", "join"),
        ("${request.body.action}", "join"),
        ("${request.body.service}/${request.body.action}", "chat/join"),
        ("${request.body.action}-${request.body.invalidPath}", "join-"),
        ("action", "action"),
        ("\\$default", "$default"),
        ("$request.body.data.room", "room1234"),
        ("${request.body.data.room}", "room1234"),
        ("$request.body['service']", "chat"),
    ],
)
def test_selection_expressions_evaluate_as_aws_documents(expression: str, expected: str) -> None:
    validate_selection_expression(expression)
    routes = {expected, "$default"}
    assert select_route(expression, DOC_MESSAGE, routes) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"action": "join"}', "join"),
        ('{"action": "Join"}', "$default"),  # exact match: case counts
        ('{"action": "leave"}', "$default"),  # no such route
        ('{"other": "join"}', "$default"),  # missing key
        ("join", "$default"),  # not JSON
        ("", "$default"),
        ('["join"]', "$default"),
        ('{"action": 5}', "5"),  # stringified
        ('{"action": true}', "true"),
        ('{"action": null}', "$default"),
        ('{"action": ["a","b"]}', '["a","b"]'),
        ('{"action": "$connect"}', "$default"),  # never a predefined route
        ('{"action": "$disconnect"}', "$default"),
    ],
)
def test_a_message_goes_to_its_route_or_default(body: str, expected: str) -> None:
    routes = {"join", "5", "true", '["a","b"]', "$connect", "$disconnect", "$default"}
    assert select_route("$request.body.action", body, routes) == expected


def test_nested_and_indexed_values_select_routes() -> None:
    body = '{"a": {"b": "deep"}, "list": ["zero", "one"]}'
    assert select_route("$request.body.a.b", body, {"deep"}) == "deep"
    assert select_route("${request.body.list[1]}", body, {"one"}) == "one"
    assert select_route("$request.body.list[5]", body, {"one"}) == "$default"


def test_a_binary_frame_goes_to_default() -> None:
    assert select_route("$request.body.action", b'{"action": "join"}', {"join"}) == "$default"


def test_default_is_returned_even_when_the_api_has_none() -> None:
    """The server answers error_frame(FORBIDDEN, ...) then, as API Gateway does."""
    assert select_route("$request.body.action", '{"action": "x"}', {"join"}) == "$default"


@pytest.mark.parametrize(
    "expression",
    ["", "$", "$default", "${request.body.action", "$request.header.x-api-key", "${context.x}"],
)
def test_expressions_aws_refuses(expression: str) -> None:
    with pytest.raises(ValueError):
        validate_selection_expression(expression)


# --- what goes back to the client -----------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "sent"),
    [
        ({"statusCode": 200, "body": "hello"}, "hello"),
        ({"statusCode": 500, "body": "still sent"}, "still sent"),
        ({"statusCode": "200", "body": "x"}, "x"),
        ({"statusCode": 200}, None),
        ({"statusCode": 200, "body": None}, None),
        ({"statusCode": 200, "body": ""}, None),
        ({"statusCode": 200, "body": "AP8=", "isBase64Encoded": True}, b"\x00\xff"),
    ],
)
def test_a_route_response_is_the_body(answer: dict[str, Any], sent: str | bytes | None) -> None:
    assert route_response(json.dumps(answer).encode()) == sent


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b'"hello"',
        b"null",
        b"[1]",
        b'{"body": "no status"}',
        b'{"statusCode": 200, "body": {"a": 1}}',
        b'{"statusCode": true}',
        b'{"statusCode": 99}',
        b'{"statusCode": 200, "body": "!!", "isBase64Encoded": true}',
    ],
)
def test_an_answer_that_is_no_proxy_response_is_invalid(payload: bytes) -> None:
    with pytest.raises(InvalidResponse):
        route_response(payload)


@pytest.mark.parametrize(
    ("payload", "error", "expected"),
    [
        (b'{"statusCode": 200}', False, (True, 101)),
        (b'{"statusCode": 204, "body": "hi"}', False, (True, 101)),
        (None, False, (True, 101)),  # no $connect function
        (b'{"statusCode": 400}', False, (False, 400)),  # AWS's subprotocol example
        (b'{"statusCode": 401}', False, (False, 401)),
        (b'{"statusCode": 403}', False, (False, 403)),
        (b'{"statusCode": 301}', False, (False, 301)),
        (b'{"statusCode": 501}', False, (False, 501)),
        (None, True, (False, 502)),  # the function failed
        (b"null", False, (False, 502)),  # not a proxy response
        (b'"ok"', False, (False, 502)),
    ],
)
def test_connect_is_refused_with_the_functions_status_or_502(
    payload: bytes | None, error: bool, expected: tuple[bool, int]
) -> None:
    assert connect_accepted(payload, error) == expected


def test_error_frames_are_api_gateways_bytes() -> None:
    assert error_frame(FORBIDDEN, "DBNjmfOmSwMCJiA=", "DBNlXFDjSwMF3FA=") == (
        '{"message": "Forbidden", "connectionId":"DBNjmfOmSwMCJiA=", '
        '"requestId":"DBNlXFDjSwMF3FA="}'
    )
    frame = error_frame(INTERNAL_SERVER_ERROR, "Qyi07eCbtjMCJKw=", "Qyi3UG41tjMFlUg=")
    assert frame == (
        '{"message": "Internal server error", "connectionId":"Qyi07eCbtjMCJKw=", '
        '"requestId":"Qyi3UG41tjMFlUg="}'
    )


# --- @connections through boto3 ------------------------------------------------------------------


class _Management:
    """A loopback server answering every request with one canned answer, as the bridge's
    ``@connections`` endpoint would; it keeps what it was asked."""

    def __init__(self) -> None:
        self.answer: tuple[int, dict[str, str], bytes] = (200, {}, b"")
        self.requests: list[tuple[str, str, bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                outer.requests.append((self.command, self.path, self.rfile.read(length)))
                status, headers, body = outer.answer
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/prod"


@pytest.fixture
def management() -> Iterator[_Management]:
    server = _Management()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()
    server.thread.join()


@pytest.fixture
def client(management: _Management) -> Iterator[Any]:
    client = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=management.url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"total_max_attempts": 1}),
    )
    yield client
    client.close()


def test_boto3_reads_connection_info_as_datetimes(management: _Management, client: Any) -> None:
    conn = connection(user_agent="wscat", connected_at=1731324924.553, last_active_at=1731324930)
    body = json.dumps(connection_info(conn)).encode()
    management.answer = (200, {"Content-Type": "application/json"}, body)

    info = client.get_connection(ConnectionId="BFHPhfCWIAMCKlQ=")

    assert info["ConnectedAt"] == datetime(2024, 11, 11, 11, 35, 24, 553000, tzinfo=UTC)
    assert info["LastActiveAt"] == datetime(2024, 11, 11, 11, 35, 30, tzinfo=UTC)
    assert info["Identity"] == {"SourceIp": "166.90.225.1", "UserAgent": "wscat"}
    # what the bridge must route: the stage, @connections and the id, its "=" percent-encoded
    assert management.requests == [("GET", "/prod/@connections/BFHPhfCWIAMCKlQ%3D", b"")]


def test_connection_info_without_user_agent_is_still_read(
    management: _Management, client: Any
) -> None:
    body = json.dumps(connection_info(connection())).encode()
    management.answer = (200, {"Content-Type": "application/json"}, body)

    assert client.get_connection(ConnectionId="x")["Identity"] == {"SourceIp": "166.90.225.1"}


def test_gone_is_gone_exception(management: _Management, client: Any) -> None:
    management.answer = gone_error()

    with pytest.raises(client.exceptions.GoneException) as caught:
        client.post_to_connection(ConnectionId="BFHPhfCWIAMCKlQ=", Data=b"hi")
    with pytest.raises(client.exceptions.GoneException):
        client.delete_connection(ConnectionId="BFHPhfCWIAMCKlQ=")
    with pytest.raises(client.exceptions.GoneException):
        client.get_connection(ConnectionId="BFHPhfCWIAMCKlQ=")

    error = caught.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 410
    assert error["Error"]["Code"] == "GoneException"
    assert error["ResponseMetadata"]["RequestId"] == management.answer[1]["x-amzn-RequestId"]
    assert management.requests[0][:2] == ("POST", "/prod/@connections/BFHPhfCWIAMCKlQ%3D")
    assert management.requests[0][2] == b"hi"


@pytest.mark.parametrize(
    ("answer", "exception", "status"),
    [
        (payload_too_large_error, "PayloadTooLargeException", 413),
        (forbidden_error, "ForbiddenException", 403),
        (limit_exceeded_error, "LimitExceededException", 429),
    ],
)
def test_the_other_errors_are_their_exceptions(
    management: _Management, client: Any, answer: Any, exception: str, status: int
) -> None:
    management.answer = answer()

    with pytest.raises(getattr(client.exceptions, exception)) as caught:
        client.post_to_connection(ConnectionId="x", Data=b"hi")

    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert caught.value.response["Error"]["Code"] == exception
    assert len(management.requests) == 1  # 429 is not retried here (retries off)


def test_payload_too_large_carries_its_message(management: _Management, client: Any) -> None:
    management.answer = payload_too_large_error()

    with pytest.raises(client.exceptions.PayloadTooLargeException) as caught:
        client.post_to_connection(ConnectionId="x", Data=b"hi")

    assert caught.value.response["Error"]["Message"] == "Message too long"
    assert caught.value.response["Message"] == "Message too long"  # the modelled member
