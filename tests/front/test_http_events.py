"""Tests for bridge.front.http_events: HTTP API events (payload 2.0 and 1.0) and responses.

The reference events are AWS's documented examples and events captured from live HTTP
APIs (each named where it is used); ids, times and the client's own headers are set to
the captured ones so the whole event can be compared.
"""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from typing import Any

import pytest

from bridge.front.http_events import (
    DEFAULT_CONTENT_TYPE,
    ApiContext,
    HttpRequest,
    HttpResponse,
    InvalidResponse,
    event_v1,
    event_v2,
    new_trace_id,
    response_v1,
    response_v2,
    with_gateway_headers,
)
from bridge.front.routing import Match, Route, RouteTable

API = ApiContext(
    api_id="r3pmxmplak",
    stage="$default",
    domain_name="r3pmxmplak.execute-api.us-east-2.amazonaws.com",
    account_id="123456789012",
    stage_variables=None,
)
NOW = 1583817383.220  # 10/Mar/2020:05:16:23 +0000


def request(
    method: str = "GET",
    path: str = "/",
    query: str = "",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> HttpRequest:
    return HttpRequest(
        method=method,
        raw_path=path,
        raw_query=query,
        headers=headers or [],
        body=body,
        source_ip="192.0.2.1",
        protocol="HTTP/1.1",
    )


def v2(req: HttpRequest, match: Match | None = None, api: ApiContext = API) -> dict[str, Any]:
    return event_v2(req, match, api, request_id="JKJaXmPLvHcESHA=", now=NOW)


def v1(req: HttpRequest, match: Match | None = None, api: ApiContext = API) -> dict[str, Any]:
    return event_v1(req, match, api, request_id="JKJaXmPLvHcESHA=", now=NOW)


def routed(key: str, method: str, path: str) -> Match:
    match = RouteTable({key: "fn"}).match(method, path)
    assert match is not None
    return match


# --- AWS's documented examples ---------------------------------------------------------

# "Working with AWS Lambda proxy integrations for HTTP APIs", payload format 2.0 example
DOCS_V2 = json.loads("""{
  "version": "2.0", "routeKey": "$default", "rawPath": "/my/path",
  "rawQueryString": "parameter1=value1&parameter1=value2&parameter2=value",
  "cookies": ["cookie1", "cookie2"],
  "headers": {"header1": "value1", "header2": "value1,value2"},
  "queryStringParameters": {"parameter1": "value1,value2", "parameter2": "value"},
  "requestContext": {
    "accountId": "123456789012", "apiId": "api-id",
    "authentication": {"clientCert": {"clientCertPem": "CERT_CONTENT"}},
    "authorizer": {"jwt": {"claims": {"claim1": "value1"}, "scopes": ["scope1"]}},
    "domainName": "id.execute-api.us-east-1.amazonaws.com", "domainPrefix": "id",
    "http": {"method": "POST", "path": "/my/path", "protocol": "HTTP/1.1",
             "sourceIp": "192.0.2.1", "userAgent": "agent"},
    "requestId": "id", "routeKey": "$default", "stage": "$default",
    "time": "12/Mar/2020:19:03:58 +0000", "timeEpoch": 1583348638390
  },
  "body": "Hello from Lambda",
  "pathParameters": {"parameter1": "value1"},
  "isBase64Encoded": false,
  "stageVariables": {"stageVariable1": "value1", "stageVariable2": "value2"}
}""")


def test_v2_event_matches_the_documented_example() -> None:
    """Differences by design: no ``authentication`` (mutual TLS) nor ``authorizer`` (no
    authorizers); the example elides the ``user-agent`` and ``content-type`` headers its
    ``userAgent`` and text body imply; its time and epoch disagree, so both come from now."""
    api = ApiContext(
        api_id="api-id",
        stage="$default",
        domain_name="id.execute-api.us-east-1.amazonaws.com",
        account_id="123456789012",
        stage_variables={"stageVariable1": "value1", "stageVariable2": "value2"},
    )
    req = request(
        "POST",
        "/my/path",
        "parameter1=value1&parameter1=value2&parameter2=value",
        [
            ("Header1", "value1"),
            ("Header2", "value1"),
            ("Cookie", "cookie1; cookie2"),
            ("header2", "value2"),
            ("User-Agent", "agent"),
            ("Content-Type", "text/plain"),
        ],
        b"Hello from Lambda",
    )
    # the example's routeKey is $default yet it has pathParameters: reproduce it as shown
    match = Match(Route("$default", "", "", "fn"), {"parameter1": "value1"})
    event = event_v2(req, match, api, request_id="id", now=1583348638.390)

    expected = json.loads(json.dumps(DOCS_V2))
    context = expected["requestContext"]
    del context["authentication"], context["authorizer"]
    context["time"] = "04/Mar/2020:19:03:58 +0000"
    expected["headers"] |= {"content-type": "text/plain", "user-agent": "agent"}
    assert event == expected
    assert list(event) == list(expected)
    assert list(event["requestContext"]) == list(context)


# "Working with AWS Lambda proxy integrations for HTTP APIs", payload format 1.0 example
DOCS_V1_KEYS = [
    "version",
    "resource",
    "path",
    "httpMethod",
    "headers",
    "multiValueHeaders",
    "queryStringParameters",
    "multiValueQueryStringParameters",
    "requestContext",
    "pathParameters",
    "stageVariables",
    "body",
    "isBase64Encoded",
]
DOCS_V1_CONTEXT_KEYS = [
    "accountId",
    "apiId",
    "authorizer",
    "domainName",
    "domainPrefix",
    "extendedRequestId",
    "httpMethod",
    "identity",
    "path",
    "protocol",
    "requestId",
    "requestTime",
    "requestTimeEpoch",
    "resourceId",
    "resourcePath",
    "stage",
]
DOCS_V1_IDENTITY_KEYS = [
    "accessKey",
    "accountId",
    "caller",
    "cognitoAuthenticationProvider",
    "cognitoAuthenticationType",
    "cognitoIdentityId",
    "cognitoIdentityPoolId",
    "principalOrgId",
    "sourceIp",
    "user",
    "userAgent",
    "userArn",
    "clientCert",
]


def test_v1_event_has_the_documented_fields() -> None:
    """The 1.0 example is partly illustrative; live events (below) differ from it by design:
    no ``authorizer`` or ``clientCert`` without an authorizer or mutual TLS, and
    ``identity.cognitoAmr`` (null), which every captured 1.0 event carries."""
    event = v1(request("GET", "/my/path", "parameter1=value1", [("header1", "value1")]))
    assert list(event) == DOCS_V1_KEYS
    assert list(event["requestContext"]) == [k for k in DOCS_V1_CONTEXT_KEYS if k != "authorizer"]
    identity_keys = [k for k in DOCS_V1_IDENTITY_KEYS if k != "clientCert"] + ["cognitoAmr"]
    assert sorted(event["requestContext"]["identity"]) == sorted(identity_keys)


# --- events captured from live HTTP APIs -------------------------------------------------


def captured_request(
    method: str, path: str, query: str, headers: list[tuple[str, str]], body: bytes, ip: str
) -> HttpRequest:
    return HttpRequest(method, path, query, headers, body, ip, "HTTP/1.1")


def test_v2_event_matches_live_get_without_optional_fields() -> None:
    """aws/aws-lambda-go events/testdata/apigw-v2-request-no-authorizer.json (curl GET /),
    less its mutual-TLS ``authentication``."""
    client = captured_request(
        "GET",
        "/",
        "",
        [
            ("Host", "aaaaaaaaaa.execute-api.us-west-2.amazonaws.com"),
            ("User-Agent", "curl/7.58.0"),
            ("Accept", "*/*"),
        ],
        b"",
        "1.2.3.4",
    )
    req = with_gateway_headers(
        client, port=443, proto="https", trace_id="Root=1-5e9f0c65-1de4d666d4dd26aced652b6c"
    )
    api = ApiContext(
        "aaaaaaaaaa",
        "$default",
        "aaaaaaaaaa.execute-api.us-west-2.amazonaws.com",
        "123456789012",
        None,
    )
    event = event_v2(req, None, api, request_id="LV7fzho-PHcEJPw=", now=1587481701.067)
    expected: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": {
            "accept": "*/*",
            "content-length": "0",
            "host": "aaaaaaaaaa.execute-api.us-west-2.amazonaws.com",
            "user-agent": "curl/7.58.0",
            "x-amzn-trace-id": "Root=1-5e9f0c65-1de4d666d4dd26aced652b6c",
            "x-forwarded-for": "1.2.3.4",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https",
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "aaaaaaaaaa",
            "domainName": "aaaaaaaaaa.execute-api.us-west-2.amazonaws.com",
            "domainPrefix": "aaaaaaaaaa",
            "http": {
                "method": "GET",
                "path": "/",
                "protocol": "HTTP/1.1",
                "sourceIp": "1.2.3.4",
                "userAgent": "curl/7.58.0",
            },
            "requestId": "LV7fzho-PHcEJPw=",
            "routeKey": "$default",
            "stage": "$default",
            "time": "21/Apr/2020:15:08:21 +0000",
            "timeEpoch": 1587481701067,
        },
        "isBase64Encoded": False,
    }
    assert event == expected
    assert list(event) == list(expected)
    assert list(event["headers"]) == list(expected["headers"])  # sorted, as AWS sends them


def test_v2_event_matches_live_post_with_encoded_path_query_cookies_and_repeats() -> None:
    """hotsock/voker vokerhttp/testdata/apigwv2-request.json (live, us-west-2, 2026); its
    ``pathParameters``/``stageVariables`` nulls and empty auth structs are its Go types'."""
    body = '{"message":"hello from the public internet","unicode":"lambda-λ"}'.encode()
    client = captured_request(
        "POST",
        "/capture/space%20value",
        "repeat=one&repeat=two&redirect=https%3A%2F%2Fexample.com%2Fa%2Fb"
        "&literalPlus=a+b&encodedPlus=a%2Bb&empty=",
        [
            ("Host", "sjzepsqsu5.execute-api.us-west-2.amazonaws.com"),
            ("User-Agent", "curl/8.7.1"),
            ("Accept", "*/*"),
            ("Cookie", "session=abc123; theme=dark"),
            ("Content-Type", "application/json"),
            ("X-Voker-Probe", "first"),
            ("X-Voker-Probe", "second"),
            ("Content-Length", "66"),
        ],
        body,
        "68.8.83.18",
    )
    req = with_gateway_headers(
        client, port=443, proto="https", trace_id="Root=1-6a5145a9-1bae89e2512ec92d5d9438a0"
    )
    api = ApiContext(
        "sjzepsqsu5",
        "$default",
        "sjzepsqsu5.execute-api.us-west-2.amazonaws.com",
        "910345601053",
        None,
    )
    event = event_v2(req, None, api, request_id="ATfSmjLgPHcESJw=", now=1783711145.766)
    assert event == {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/capture/space value",
        "rawQueryString": "repeat=one&repeat=two&redirect=https%3A%2F%2Fexample.com%2Fa%2Fb"
        "&literalPlus=a+b&encodedPlus=a%2Bb&empty=",
        "cookies": ["session=abc123", "theme=dark"],
        "headers": {
            "accept": "*/*",
            "content-length": "66",
            "content-type": "application/json",
            "host": "sjzepsqsu5.execute-api.us-west-2.amazonaws.com",
            "user-agent": "curl/8.7.1",
            "x-amzn-trace-id": "Root=1-6a5145a9-1bae89e2512ec92d5d9438a0",
            "x-forwarded-for": "68.8.83.18",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https",
            "x-voker-probe": "first,second",
        },
        "queryStringParameters": {
            "repeat": "one,two",
            "redirect": "https://example.com/a/b",
            "literalPlus": "a b",
            "encodedPlus": "a+b",
            "empty": "",
        },
        "requestContext": {
            "accountId": "910345601053",
            "apiId": "sjzepsqsu5",
            "domainName": "sjzepsqsu5.execute-api.us-west-2.amazonaws.com",
            "domainPrefix": "sjzepsqsu5",
            "http": {
                "method": "POST",
                "path": "/capture/space value",
                "protocol": "HTTP/1.1",
                "sourceIp": "68.8.83.18",
                "userAgent": "curl/8.7.1",
            },
            "requestId": "ATfSmjLgPHcESJw=",
            "routeKey": "$default",
            "stage": "$default",
            "time": "10/Jul/2026:19:19:05 +0000",
            "timeEpoch": 1783711145766,
        },
        "body": '{"message":"hello from the public internet","unicode":"lambda-λ"}',
        "isBase64Encoded": False,
    }


MANTIL_CLIENT = [
    ("Host", "9pyofn5yi9.execute-api.eu-central-1.amazonaws.com"),
    ("User-Agent", "curl/7.77.0"),
    ("Accept", "*/*"),
]
MANTIL_API = ApiContext(
    "9pyofn5yi9",
    "$default",
    "9pyofn5yi9.execute-api.eu-central-1.amazonaws.com",
    "052548195718",
    None,
)


def test_v2_event_matches_live_greedy_route() -> None:
    """mantil-io/go-lambda-examples, api guide (live, eu-central-1, 2022): POST /handler/pero
    to ANY /handler/{proxy+}."""
    client = captured_request("POST", "/handler/pero", "", MANTIL_CLIENT, b"", "93.136.72.29")
    req = with_gateway_headers(
        client, port=443, proto="https", trace_id="Root=1-61fff2e3-6c0b0b63585d1a33199498a6"
    )
    match = routed("ANY /handler/{proxy+}", "POST", "/handler/pero")
    event = event_v2(req, match, MANTIL_API, request_id="NILjoi6FFiAEJ6A=", now=1644163811.849)
    assert event["routeKey"] == event["requestContext"]["routeKey"] == "ANY /handler/{proxy+}"
    assert event["pathParameters"] == {"proxy": "pero"}
    assert event["rawPath"] == event["requestContext"]["http"]["path"] == "/handler/pero"
    assert event["headers"]["content-length"] == "0"
    assert "body" not in event and event["isBase64Encoded"] is False
    assert event["requestContext"]["time"] == "06/Feb/2022:16:10:11 +0000"


def test_v1_event_matches_live_greedy_route_with_trailing_slash() -> None:
    """mantil-io/go-lambda-examples, api guide (live, payload 1.0): POST /handler/."""
    client = captured_request("POST", "/handler/", "", MANTIL_CLIENT, b"", "93.136.72.29")
    req = with_gateway_headers(
        client, port=443, proto="https", trace_id="Root=1-61fff17e-5b8496e96e81bed7494730a7"
    )
    match = routed("ANY /handler/{proxy+}", "POST", "/handler/")
    event = event_v1(req, match, MANTIL_API, request_id="NIKr1jmIFiAEJmw=", now=1644163454.741)
    headers = {
        "Content-Length": "0",
        "Host": "9pyofn5yi9.execute-api.eu-central-1.amazonaws.com",
        "User-Agent": "curl/7.77.0",
        "X-Amzn-Trace-Id": "Root=1-61fff17e-5b8496e96e81bed7494730a7",
        "X-Forwarded-For": "93.136.72.29",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
        "accept": "*/*",
    }
    identity: dict[str, Any] = dict.fromkeys(
        [
            "accessKey",
            "accountId",
            "caller",
            "cognitoAmr",
            "cognitoAuthenticationProvider",
            "cognitoAuthenticationType",
            "cognitoIdentityId",
            "cognitoIdentityPoolId",
            "principalOrgId",
            "user",
            "userArn",
        ]
    )
    assert event == {
        "body": None,
        "headers": headers,
        "httpMethod": "POST",
        "isBase64Encoded": False,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "multiValueQueryStringParameters": None,
        "path": "/handler/",
        "pathParameters": {"proxy": ""},
        "queryStringParameters": None,
        "requestContext": {
            "accountId": "052548195718",
            "apiId": "9pyofn5yi9",
            "domainName": "9pyofn5yi9.execute-api.eu-central-1.amazonaws.com",
            "domainPrefix": "9pyofn5yi9",
            "extendedRequestId": "NIKr1jmIFiAEJmw=",
            "httpMethod": "POST",
            "identity": identity | {"sourceIp": "93.136.72.29", "userAgent": "curl/7.77.0"},
            "path": "/handler/",
            "protocol": "HTTP/1.1",
            "requestId": "NIKr1jmIFiAEJmw=",
            "requestTime": "06/Feb/2022:16:04:14 +0000",
            "requestTimeEpoch": 1644163454741,
            "resourceId": "ANY /handler/{proxy+}",
            "resourcePath": "/handler/{proxy+}",
            "stage": "$default",
        },
        "resource": "/handler/{proxy+}",
        "stageVariables": None,
        "version": "1.0",
    }
    assert list(event["headers"]) == list(headers)  # sorted as captured


# --- payload 2.0 rules ---------------------------------------------------------------------


def test_v2_header_names_are_lowercased_and_repeats_joined_with_commas() -> None:
    event = v2(request(headers=[("X-Tag", "a"), ("x-tag", "b, c"), ("X-TAG", "d")]))
    assert event["headers"] == {"x-tag": "a,b, c,d"}


def test_v2_headers_are_sorted_by_name() -> None:
    event = v2(request(headers=[("zeta", "1"), ("Alpha", "2"), ("mid", "3")]))
    assert list(event["headers"]) == ["alpha", "mid", "zeta"]


def test_v2_cookie_headers_become_cookies_and_leave_headers() -> None:
    event = v2(request(headers=[("Cookie", "a=1; b=2"), ("cookie", "c=3;d=4"), ("X", "y")]))
    assert event["cookies"] == ["a=1", "b=2", "c=3", "d=4"]
    assert event["headers"] == {"x": "y"}


def test_v2_leaves_out_empty_optional_fields() -> None:
    event = v2(request())
    for key in ("cookies", "queryStringParameters", "pathParameters", "body", "stageVariables"):
        assert key not in event
    assert event["headers"] == {}
    assert event["rawQueryString"] == ""
    assert event["isBase64Encoded"] is False


def test_v2_query_repeats_are_joined_with_commas() -> None:
    event = v2(request(query="a=1&b=2&a=3"))
    assert event["queryStringParameters"] == {"a": "1,3", "b": "2"}


def test_query_values_are_form_decoded_and_raw_query_kept() -> None:
    raw = "q=a+b%2Bc&name%20x=%C3%A9&flag&&e="
    event = v2(request(query=raw))
    assert event["rawQueryString"] == raw
    assert event["queryStringParameters"] == {"q": "a b+c", "name x": "é", "flag": "", "e": ""}


def test_raw_path_and_http_path_are_percent_decoded() -> None:
    event = v2(request(path="/a%2Fb/caf%C3%A9/x+y"))
    assert event["rawPath"] == event["requestContext"]["http"]["path"] == "/a/b/café/x+y"


def test_v2_path_parameters_come_from_the_match() -> None:
    match = routed("GET /items/{id}", "GET", "/items/Chester%20Mall")
    event = v2(request(path="/items/Chester%20Mall"), match)
    assert event["pathParameters"] == {"id": "Chester Mall"}
    assert event["routeKey"] == event["requestContext"]["routeKey"] == "GET /items/{id}"


def test_v2_default_route_has_default_route_key() -> None:
    default = RouteTable({"$default": "fn"}).match("GET", "/x")
    assert v2(request(path="/x"), default)["routeKey"] == "$default"
    assert v2(request(path="/x"), None)["routeKey"] == "$default"


def test_stage_and_stage_variables_come_from_the_api() -> None:
    api = replace(API, stage="prod", stage_variables={"env": "test"})
    event = v2(request(), api=api)
    assert event["stageVariables"] == {"env": "test"}
    assert event["requestContext"]["stage"] == "prod"
    assert v1(request(), api=api)["stageVariables"] == {"env": "test"}


def test_time_is_clf_with_english_months_and_epoch_in_milliseconds() -> None:
    ctx = event_v2(request(), None, API, request_id="r", now=1704067199.9996)["requestContext"]
    assert ctx["time"] == "31/Dec/2023:23:59:59 +0000"
    assert ctx["timeEpoch"] == 1704067200000
    ctx1 = event_v1(request(), None, API, request_id="r", now=NOW)["requestContext"]
    assert (ctx1["requestTime"], ctx1["requestTimeEpoch"]) == (
        "10/Mar/2020:05:16:23 +0000",
        1583817383220,
    )


def test_user_agent_is_empty_when_the_client_sends_none() -> None:
    assert v2(request())["requestContext"]["http"]["userAgent"] == ""
    assert v1(request())["requestContext"]["identity"]["userAgent"] == ""


@pytest.mark.parametrize(
    ("domain", "prefix"),
    [
        ("id.execute-api.us-east-1.amazonaws.com", "id"),
        ("127.0.0.1:8080", "127"),
        ("localhost:3000", "localhost"),
        ("api.example.com", "api"),
        ("[::1]:8080", "[::1]"),
    ],
)
def test_domain_prefix_is_the_first_label_of_the_host(domain: str, prefix: str) -> None:
    api = replace(API, domain_name=domain)
    assert v2(request(), api=api)["requestContext"]["domainPrefix"] == prefix
    assert v2(request(), api=api)["requestContext"]["domainName"] == domain


# --- bodies ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "text/plain",
        "text/html; charset=iso-8859-1",
        "text/csv",
        "application/xml",
        "application/javascript",
    ],
)
def test_text_content_types_give_a_string_body(content_type: str) -> None:
    req = request("POST", headers=[("Content-Type", content_type)], body="héllo".encode())
    for event in (v2(req), v1(req)):
        assert event["body"] == "héllo"
        assert event["isBase64Encoded"] is False


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/octet-stream",
        "image/png",
        "application/vnd.api+json",
    ],
)
def test_other_bodies_are_base64_encoded(content_type: str | None) -> None:
    headers = [("Content-Type", content_type)] if content_type else []
    req = request("POST", headers=headers, body=b"a=1&b=\xff")
    for event in (v2(req), v1(req)):
        assert event["body"] == base64.b64encode(b"a=1&b=\xff").decode()
        assert event["isBase64Encoded"] is True


def test_empty_body_is_absent_in_v2_and_null_in_v1() -> None:
    req = request("POST", headers=[("Content-Type", "application/octet-stream")])
    assert "body" not in v2(req) and v2(req)["isBase64Encoded"] is False
    assert v1(req)["body"] is None and v1(req)["isBase64Encoded"] is False


def test_invalid_utf8_in_a_text_body_is_replaced() -> None:
    req = request("POST", headers=[("Content-Type", "text/plain")], body=b"a\xffb")
    assert v2(req)["body"] == "a\ufffdb"


def test_the_first_content_type_decides() -> None:
    req = request(
        "POST",
        headers=[("Content-Type", "application/json"), ("content-type", "image/png")],
        body=b"{}",
    )
    assert v2(req)["isBase64Encoded"] is False


# --- payload 1.0 rules ----------------------------------------------------------------------


def test_v1_headers_hold_the_last_value_and_multi_value_headers_all() -> None:
    event = v1(request(headers=[("X-Tag", "a"), ("x-tag", "b"), ("Other", "c")]))
    assert event["headers"] == {"Other": "c", "X-Tag": "b"}
    assert event["multiValueHeaders"] == {"Other": ["c"], "X-Tag": ["a", "b"]}


def test_v1_spells_gateway_header_names_its_own_way() -> None:
    names = ["content-type", "HOST", "user-agent", "Accept", "Accept-Encoding", "Postman-Token"]
    event = v1(request(headers=[(n, "v") for n in names]))
    assert list(event["headers"]) == [
        "Content-Type",
        "Host",
        "Postman-Token",
        "User-Agent",
        "accept",
        "accept-encoding",
    ]


def test_v1_keeps_the_cookie_header() -> None:
    event = v1(request(headers=[("Cookie", "a=1; b=2")]))
    assert event["headers"] == {"Cookie": "a=1; b=2"}
    assert "cookies" not in event


def test_v1_query_holds_the_last_value_and_multi_value_all() -> None:
    event = v1(request(query="foo=bar&foo=baz&x=%20y"))
    assert event["queryStringParameters"] == {"foo": "baz", "x": " y"}
    assert event["multiValueQueryStringParameters"] == {"foo": ["bar", "baz"], "x": [" y"]}


def test_v1_sends_null_for_what_is_empty() -> None:
    event = v1(request())
    for key in (
        "queryStringParameters",
        "multiValueQueryStringParameters",
        "pathParameters",
        "stageVariables",
        "body",
    ):
        assert event[key] is None
    assert event["headers"] == {} and event["multiValueHeaders"] == {}


def test_v1_default_route_fills_resource_fields_with_default() -> None:
    # aws/serverless-java-container's captured 1.0 event for a $default route
    for match in (None, RouteTable({"$default": "fn"}).match("POST", "/pets")):
        event = v1(request("POST", "/pets"), match)
        assert event["resource"] == "$default"
        ctx = event["requestContext"]
        assert (ctx["resourceId"], ctx["resourcePath"], ctx["path"]) == (
            "$default",
            "$default",
            "/pets",
        )


def test_v1_resource_fields_come_from_the_route() -> None:
    match = routed("GET /pets/{id}", "GET", "/pets/7")
    event = v1(request("GET", "/pets/7"), match)
    assert event["resource"] == "/pets/{id}"
    assert event["path"] == "/pets/7"
    assert event["pathParameters"] == {"id": "7"}
    ctx = event["requestContext"]
    assert (ctx["resourceId"], ctx["resourcePath"]) == ("GET /pets/{id}", "/pets/{id}")
    assert ctx["extendedRequestId"] == ctx["requestId"] == "JKJaXmPLvHcESHA="
    assert ctx["identity"]["sourceIp"] == "192.0.2.1"


def test_events_are_json_serializable() -> None:
    req = request("POST", "/a", "b=c", [("Cookie", "x=1"), ("A", "b")], b"\x00\x01")
    for event in (v2(req), v1(req)):
        assert json.loads(json.dumps(event)) == event


# --- headers API Gateway sets ---------------------------------------------------------------


def test_gateway_headers_replace_hop_by_hop_and_forwarding_headers() -> None:
    client = request(
        "POST",
        headers=[
            ("Connection", "keep-alive"),
            ("Transfer-Encoding", "chunked"),
            ("Content-Length", "999"),
            ("X-Forwarded-For", "10.0.0.1"),
            ("X-Forwarded-Proto", "ftp"),
            ("X-Forwarded-Host", "kept"),
            ("Accept", "*/*"),
        ],
        body=b"abc",
    )
    req = with_gateway_headers(client, port=8080, proto="http", trace_id="Root=1-0-0")
    assert list(req.headers) == [
        ("X-Forwarded-Host", "kept"),
        ("Accept", "*/*"),
        ("x-amzn-trace-id", "Root=1-0-0"),
        ("content-length", "3"),
        ("x-forwarded-for", "10.0.0.1, 192.0.2.1"),
        ("x-forwarded-port", "8080"),
        ("x-forwarded-proto", "http"),
    ]


def test_gateway_headers_keep_the_clients_trace_id() -> None:
    client = request(headers=[("X-Amzn-Trace-Id", "Root=1-abc")])
    req = with_gateway_headers(client, port=443, proto="https", trace_id="Root=1-new")
    assert [v for n, v in req.headers if n.lower() == "x-amzn-trace-id"] == ["Root=1-abc"]


def test_new_trace_id_has_aws_shape() -> None:
    trace = new_trace_id(1587481701.067)
    assert trace.startswith("Root=1-5e9f0c65-")
    assert len(trace.rsplit("-", 1)[1]) == 24
    assert new_trace_id(0) != new_trace_id(0)


# --- responses, payload 2.0 --------------------------------------------------------------------


def answer(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def test_v2_response_with_status_code_headers_and_body() -> None:
    got = response_v2(
        answer(
            {
                "statusCode": 201,
                "headers": {"Content-Type": "text/html", "X-A": "b"},
                "body": "<p>hi</p>",
            }
        )
    )
    assert got == HttpResponse(201, [("Content-Type", "text/html"), ("X-A", "b")], b"<p>hi</p>")


def test_v2_cookies_become_set_cookie_headers_ahead_of_header_ones() -> None:
    got = response_v2(
        answer(
            {
                "statusCode": 200,
                "cookies": ["a=1; Path=/", "b=2; HttpOnly"],
                "headers": {"Set-Cookie": "c=3", "content-type": "text/plain"},
            }
        )
    )
    assert got.headers == [
        ("content-type", "text/plain"),
        ("set-cookie", "a=1; Path=/"),
        ("set-cookie", "b=2; HttpOnly"),
        ("Set-Cookie", "c=3"),
    ]


def test_v2_response_without_content_type_gets_the_default() -> None:
    got = response_v2(answer({"statusCode": 204}))
    assert got == HttpResponse(204, [("content-type", DEFAULT_CONTENT_TYPE)], b"")
    assert DEFAULT_CONTENT_TYPE == "text/plain; charset=utf-8"


def test_v2_base64_body_is_decoded() -> None:
    png = b"\x89PNG\r\n\x1a\n\x00"
    got = response_v2(
        answer({"statusCode": 200, "isBase64Encoded": True, "body": base64.b64encode(png).decode()})
    )
    assert got.body == png


@pytest.mark.parametrize(
    ("payload", "body"),
    [
        (b'"Hello from Lambda!"', b'"Hello from Lambda!"'),
        (b'{ "message": "Hello from Lambda!" }', b'{ "message": "Hello from Lambda!" }'),
        (b"42", b"42"),
        (b"[1, 2]", b"[1, 2]"),
        (b"null", b"null"),
        (b'{"statusCode": null, "body": "x"}', b'{"statusCode": null, "body": "x"}'),
        (b'{"body": "only a body"}', b'{"body": "only a body"}'),
    ],
)
def test_v2_json_without_status_code_is_sent_as_is(payload: bytes, body: bytes) -> None:
    assert response_v2(payload) == HttpResponse(200, [("content-type", "application/json")], body)


def test_v2_ignores_multi_value_headers_and_unknown_keys() -> None:
    got = response_v2(
        answer(
            {"statusCode": 200, "multiValueHeaders": {"Content-Type": ["application/json"]}, "x": 1}
        )
    )
    assert got.headers == [("content-type", DEFAULT_CONTENT_TYPE)]


def test_v2_header_numbers_and_booleans_become_text_nulls_are_dropped() -> None:
    got = response_v2(
        answer({"statusCode": 200, "headers": {"A": 1, "B": True, "C": 1.5, "D": None}})
    )
    assert got.headers[:3] == [("A", "1"), ("B", "true"), ("C", "1.5")]


def test_status_code_as_text_or_whole_float_is_taken() -> None:
    assert response_v2(answer({"statusCode": "404"})).status == 404
    assert response_v2(answer({"statusCode": 302.0})).status == 302


def test_a_number_body_is_sent_as_its_text() -> None:
    assert response_v2(answer({"statusCode": 200, "body": 12})).body == b"12"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "not JSON"),
        (b"", "not JSON"),
        (b'{"statusCode": NaN}', "not JSON"),
        (b"\xff\xfe\xfd", "not JSON"),
        (answer({"statusCode": "abc"}), "statusCode must be an integer, got string"),
        (answer({"statusCode": True}), "statusCode must be an integer, got boolean"),
        (answer({"statusCode": 200.5}), "statusCode must be an integer, got number"),
        (answer({"statusCode": [200]}), "statusCode must be an integer, got array"),
        (answer({"statusCode": 99}), "not an HTTP status"),
        (answer({"statusCode": 600}), "not an HTTP status"),
        (answer({"statusCode": 200, "headers": ["a"]}), "headers must be an object"),
        (answer({"statusCode": 200, "headers": {"a": {"b": 1}}}), "a value must be a string"),
        (answer({"statusCode": 200, "headers": {"a b": "c"}}), "not a valid HTTP header name"),
        (answer({"statusCode": 200, "headers": {"a": "b\r\nX: y"}}), "line break"),
        (answer({"statusCode": 200, "cookies": "a=1"}), "cookies must be an array of strings"),
        (answer({"statusCode": 200, "cookies": [1]}), "cookies must be an array of strings"),
        (answer({"statusCode": 200, "cookies": ["a\n"]}), "line break"),
        (answer({"statusCode": 200, "body": {"a": 1}}), "body must be a string, got object"),
        (
            answer({"statusCode": 200, "isBase64Encoded": "yes"}),
            "isBase64Encoded must be a boolean",
        ),
        (answer({"statusCode": 200, "isBase64Encoded": True, "body": "@@@"}), "not base64"),
        (answer({"statusCode": 200, "isBase64Encoded": True, "body": "YWJj\n"}), "not base64"),
    ],
)
def test_v2_invalid_answers_are_refused_with_the_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(InvalidResponse) as caught:
        response_v2(payload)
    assert reason in str(caught.value)


def test_invalid_response_is_a_value_error() -> None:
    assert issubclass(InvalidResponse, ValueError)


# --- responses, payload 1.0 --------------------------------------------------------------------


def test_v1_merges_headers_and_multi_value_headers_sending_a_shared_pair_once() -> None:
    got = response_v1(
        answer(
            {
                "statusCode": 200,
                "headers": {"Content-Type": "application/json", "X-Custom": "one", "X-Solo": "s"},
                "multiValueHeaders": {"x-custom": ["one", "two"], "Set-Cookie": ["a=1", "b=2"]},
                "body": "{}",
            }
        )
    )
    assert got == HttpResponse(
        200,
        [
            ("x-custom", "one"),
            ("x-custom", "two"),
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2"),
            ("Content-Type", "application/json"),
            ("X-Solo", "s"),
        ],
        b"{}",
    )


def test_v1_keeps_a_header_value_not_in_multi_value_headers() -> None:
    got = response_v1(
        answer({"statusCode": 200, "headers": {"X": "a"}, "multiValueHeaders": {"X": ["b"]}})
    )
    assert got.headers[:2] == [("X", "b"), ("X", "a")]


def test_v1_ignores_cookies_and_defaults_content_type() -> None:
    got = response_v1(answer({"statusCode": 200, "cookies": ["a=1"], "body": "hi"}))
    assert got == HttpResponse(200, [("content-type", DEFAULT_CONTENT_TYPE)], b"hi")


def test_v1_base64_body_is_decoded() -> None:
    got = response_v1(answer({"statusCode": 200, "isBase64Encoded": True, "body": "AAE="}))
    assert got.body == b"\x00\x01"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'"Hello"', "must be a JSON object, got string"),
        (b"[]", "must be a JSON object, got array"),
        (answer({"body": "x"}), "needs a statusCode"),
        (answer({"statusCode": 200, "multiValueHeaders": {"a": "b"}}), "must be an array"),
        (answer({"statusCode": 200, "multiValueHeaders": []}), "must be an object"),
        (answer({"statusCode": 200, "multiValueHeaders": {"a": [{}]}}), "a value must be a string"),
        (answer({"statusCode": 200, "body": []}), "body must be a string"),
        (b"{", "not JSON"),
    ],
)
def test_v1_invalid_answers_are_refused_with_the_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(InvalidResponse) as caught:
        response_v1(payload)
    assert reason in str(caught.value)
