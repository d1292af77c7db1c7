"""HTTP APIs end to end: httpx as the client, handlers under awslambdaric (the runtime
target) and under aws-lambda-rie (the lambda target), unmodified web-framework adapters
(Mangum with Starlette, apig-wsgi)."""

from __future__ import annotations

import asyncio
import base64
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bridge.config import parse_config
from bridge.errors import ConfigError
from tests.front.conftest import FUNCTIONS, RIC, Start, api_address

Serve = Callable[..., Awaitable[str]]


def runtime(folder: str, **options: Any) -> dict[str, Any]:
    return {
        "type": "runtime",
        "command": RIC,
        "cwd": str(FUNCTIONS / folder),
        "concurrency": 2,
        "timeout": 10,
        **options,
    }


@pytest.fixture
def serve(start_bridge: Start) -> Serve:
    """``await serve(routes, function=..., **api_options)``: an HTTP API named ``web`` whose
    routes all name the function ``fn``; returns its ``http://host:port``."""

    async def make(
        routes: list[str], function: dict[str, Any] | None = None, **options: Any
    ) -> str:
        api = {"name": "web", "type": "http", "routes": dict.fromkeys(routes, "fn"), **options}
        config = {"functions": {"fn": function or runtime("httpecho")}, "apis": [api]}
        supervisor = await start_bridge(config)
        return f"http://{await api_address(supervisor, 'web')}"

    return make


@pytest.fixture(params=["runtime", "lambda"])
def echo_function(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The httpecho handler under awslambdaric (runtime target) or aws-lambda-rie."""
    if request.param == "runtime":
        return runtime("httpecho")
    make = request.getfixturevalue("lambda_function_factory")
    emulator = make(FUNCTIONS / "httpecho", probe_event={"rawPath": "/plain"})
    return {
        "type": "lambda",
        "function_name": "function",
        "emulator": True,
        "endpoint_url": emulator.base_url,
    }


async def test_a_payload_2_0_request_and_response(serve: Serve, echo_function: Any) -> None:
    base = await serve(["GET /items/{id}"], function=echo_function)
    async with httpx.AsyncClient() as client:
        answer = await client.get(
            f"{base}/items/42?a=1&a=2&b=%20x",
            headers={"User-Agent": "agent/1", "X-Many": "one", "Cookie": "s=1; t=2"},
            params=None,
        )
        cookies = await client.get(f"{base}/items/7?cookie=1&status=201")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    event = answer.json()
    assert event["version"] == "2.0" and event["routeKey"] == "GET /items/{id}"
    assert event["rawPath"] == "/items/42" and event["rawQueryString"] == "a=1&a=2&b=%20x"
    assert event["queryStringParameters"] == {"a": "1,2", "b": " x"}
    assert event["pathParameters"] == {"id": "42"}
    assert event["cookies"] == ["s=1", "t=2"] and "cookie" not in event["headers"]
    assert event["headers"]["x-many"] == "one" and event["headers"]["user-agent"] == "agent/1"
    context = event["requestContext"]
    assert context["http"] == {
        "method": "GET",
        "path": "/items/42",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "agent/1",
    }
    assert context["requestId"] == answer.headers["apigw-requestid"]
    assert context["stage"] == "$default" and len(context["apiId"]) == 10
    assert context["domainName"] == base.removeprefix("http://")
    assert isinstance(context["timeEpoch"], int) and event["isBase64Encoded"] is False
    assert "body" not in event  # a GET has none
    assert cookies.status_code == 201
    assert cookies.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; HttpOnly"]


async def test_a_payload_1_0_request_and_response(serve: Serve) -> None:
    base = await serve(["ANY /items/{id}"], payload_format_version="1.0")
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            f"{base}/items/9?cookie=1&q=a&q=b",
            content=b'{"x": 1}',
            headers={"X-A": "1", "Content-Type": "application/json"},
        )
    assert answer.status_code == 200
    event = answer.json()
    assert event["version"] == "1.0" and event["resource"] == "/items/{id}"
    assert event["path"] == "/items/9" and event["httpMethod"] == "POST"
    assert event["queryStringParameters"] == {"cookie": "1", "q": "b"}
    assert event["multiValueQueryStringParameters"] == {"cookie": ["1"], "q": ["a", "b"]}
    assert event["headers"]["X-A"] == "1" and event["multiValueHeaders"]["X-A"] == ["1"]
    assert event["body"] == '{"x": 1}' and event["isBase64Encoded"] is False
    assert event["requestContext"]["httpMethod"] == "POST"
    assert answer.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; HttpOnly"]


async def test_binary_bodies_travel_as_base64(serve: Serve) -> None:
    base = await serve(["POST /upload", "GET /binary"])
    payload = bytes(range(256)) * 4
    async with httpx.AsyncClient() as client:
        sent = await client.post(
            f"{base}/upload",
            content=payload,
            headers={"Content-Type": "application/octet-stream"},
        )
        got = await client.get(f"{base}/binary")
    event = sent.json()
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == payload
    assert got.status_code == 200 and got.content == bytes(range(256))
    assert got.headers["content-type"] == "application/octet-stream"


async def test_a_2_0_answer_without_status_code_is_a_200_json(serve: Serve) -> None:
    base = await serve(["GET /plain"])
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{base}/plain")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"hello": "world", "n": [1, 2]}


async def test_routes_match_as_api_gateway_matches_them(serve: Serve) -> None:
    base = await serve(["GET /items/{id}", "GET /items/special", "ANY /files/{proxy+}", "$default"])
    async with httpx.AsyncClient() as client:

        async def route(method: str, path: str) -> tuple[str, Any]:
            event = (await client.request(method, f"{base}{path}")).json()
            return event["routeKey"], event.get("pathParameters")

        assert await route("GET", "/items/special") == ("GET /items/special", None)
        assert await route("GET", "/items/5") == ("GET /items/{id}", {"id": "5"})
        assert await route("DELETE", "/files/a/b/c.txt") == (
            "ANY /files/{proxy+}",
            {"proxy": "a/b/c.txt"},
        )
        assert await route("POST", "/items/5") == ("$default", None)
        assert await route("GET", "/elsewhere") == ("$default", None)


async def test_nothing_matching_is_a_404_not_found(serve: Serve) -> None:
    base = await serve(["GET /items/{id}"])
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{base}/orders/1")
    assert answer.status_code == 404 and answer.json() == {"message": "Not Found"}
    assert answer.headers["apigw-requestid"]


@pytest.mark.parametrize("what", ["raise", "garbage"])
async def test_a_failing_or_invalid_function_is_a_500(
    serve: Serve, echo_function: Any, what: str
) -> None:
    base = await serve(["GET /{what}"], function=echo_function)
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{base}/{what}")
    assert answer.status_code == 500
    assert answer.json() == {"message": "Internal Server Error"}


async def test_the_integration_timeout_is_a_503(serve: Serve) -> None:
    base = await serve(["GET /sleep", "GET /ok"], timeout_in_millis=300)
    async with httpx.AsyncClient(timeout=10) as client:
        slow = await client.get(f"{base}/sleep?seconds=2")
        assert slow.status_code == 503
        assert slow.json() == {"message": "Service Unavailable"}
        # the function is free again afterwards
        quick = await client.get(f"{base}/ok")
    assert quick.status_code == 200


async def test_requests_beyond_the_functions_concurrency_are_throttled_with_a_429(
    serve: Serve,
) -> None:
    """Concurrency 1 (the function's reserved concurrency), each request takes 0.8 s: of
    three requests at once one runs, the two that find the only instance busy are
    throttled at once, as Lambda throttles a synchronous invocation (API Gateway: 429);
    once it is free again, the next request is served."""
    function = runtime("httpecho", concurrency=1)
    base = await serve(["GET /sleep"], function=function, timeout_in_millis=5000)
    async with httpx.AsyncClient(timeout=10) as client:
        await client.get(f"{base}/sleep?seconds=0")  # an instance is up
        begin = time.monotonic()
        answers = await asyncio.gather(*(client.get(f"{base}/sleep?seconds=0.8") for _ in range(3)))
        throttled_in = time.monotonic() - begin
        after = await client.get(f"{base}/sleep?seconds=0")
    assert sorted(a.status_code for a in answers) == [200, 429, 429]
    assert [a.json() for a in answers if a.status_code == 429] == [
        {"message": "Too Many Requests"}
    ] * 2
    assert throttled_in >= 0.8 and after.status_code == 200


async def test_a_body_over_10_mb_is_a_413(serve: Serve) -> None:
    base = await serve(["POST /upload"])
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await client.post(f"{base}/upload", content=b"x" * (10 * 1024 * 1024 + 1))

        async def chunks() -> Any:  # no Content-Length: refused as it streams
            for _ in range(11):
                yield b"y" * (1024 * 1024)

        streamed = await client.post(f"{base}/upload", content=chunks())
    assert answer.status_code == 413
    assert answer.json() == {"message": "Request Entity Too Large"}
    assert streamed.status_code == 413


async def test_throttling_answers_429_past_the_burst(serve: Serve) -> None:
    base = await serve(["GET /ok"], throttling_burst_limit=2, throttling_rate_limit=0.01)
    async with httpx.AsyncClient() as client:
        answers = [await client.get(f"{base}/ok") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 429, 429]
    assert answers[2].json() == {"message": "Too Many Requests"}


async def test_cors_preflight_and_responses(serve: Serve) -> None:
    cors = {
        "allow_origins": ["https://shop.example"],
        "allow_methods": ["GET", "POST"],
        "allow_headers": ["content-type", "x-token"],
        "expose_headers": ["x-handler"],
        "max_age": 300,
    }
    base = await serve(["GET /ok"], cors=cors)
    async with httpx.AsyncClient() as client:
        preflight = await client.options(
            f"{base}/ok",
            headers={
                "Origin": "https://shop.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-token",
            },
        )
        stranger = await client.options(
            f"{base}/ok",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        simple = await client.get(f"{base}/ok", headers={"Origin": "https://shop.example"})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://shop.example"
    assert preflight.headers["access-control-allow-methods"] == "GET,POST"
    assert preflight.headers["access-control-allow-headers"] == "content-type,x-token"
    assert preflight.headers["access-control-max-age"] == "300"
    assert "access-control-allow-origin" not in stranger.headers
    assert simple.status_code == 200
    assert simple.headers["access-control-allow-origin"] == "https://shop.example"
    assert simple.headers["access-control-expose-headers"] == "x-handler"


@pytest.mark.parametrize("version", ["1.0", "2.0"])
async def test_a_starlette_app_behind_mangum(serve: Serve, version: str) -> None:
    base = await serve(["ANY /{proxy+}"], function=runtime("asgi"), payload_format_version=version)
    async with httpx.AsyncClient(cookies={"session": "s1"}) as client:
        item = await client.get(f"{base}/items/42?q=a&q=b")
        created = await client.post(f"{base}/items", json={"name": "pen"})
        missing = await client.get(f"{base}/nowhere")
    assert item.status_code == 200 and item.headers["x-framework"] == "starlette"
    assert item.json() == {"id": "42", "q": ["a", "b"], "cookie": "s1", "method": "GET"}
    assert created.status_code == 201 and created.json() == {"created": {"name": "pen"}}
    assert created.headers["set-cookie"].startswith("seen=yes")
    assert missing.status_code == 404 and missing.text == "nothing here"


@pytest.mark.parametrize("version", ["1.0", "2.0"])
async def test_a_wsgi_app_behind_apig_wsgi(serve: Serve, version: str) -> None:
    base = await serve(["ANY /{proxy+}"], function=runtime("wsgi"), payload_format_version=version)
    async with httpx.AsyncClient() as client:
        answer = await client.put(
            f"{base}/things/1?x=1&y=2", content="hello", headers={"User-Agent": "agent/2"}
        )
    assert answer.status_code == 200 and answer.headers["x-framework"] == "wsgi"
    assert answer.json() == {
        "method": "PUT",
        "path": "/things/1",
        "query": {"x": ["1"], "y": ["2"]},
        "body": "hello",
        "agent": "agent/2",
    }


async def test_an_edited_api_is_served_at_once(tmp_path: Path, start_bridge: Start) -> None:
    def config(routes: dict[str, str]) -> str:
        api = {"name": "web", "type": "http", "routes": routes}
        functions = {"fn": runtime("httpecho"), "other": runtime("httpecho")}
        state = str(tmp_path / "state")
        return yaml.safe_dump({"state_dir": state, "functions": functions, "apis": [api]})

    supervisor = await start_bridge(config({"GET /a": "fn"}))
    base = f"http://{await api_address(supervisor, 'web')}"
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{base}/b")).status_code == 404
        edited = config({"GET /a": "fn", "GET /b": "other"})
        await supervisor.apply(parse_config(edited, "bridge.yaml", {}))
        base = f"http://{await api_address(supervisor, 'web')}"
        answer = await client.get(f"{base}/b")
    assert answer.status_code == 200 and answer.headers["x-handler"] == "other"


@pytest.mark.parametrize(
    ("apis", "message"),
    [
        ('[{name: web, type: http, routes: {"GET /a": nope}}]', "nope"),
        ('[{name: web, type: http, routes: {"GETT /a": fn}}]', "GETT"),
        ('[{name: web, type: http, routes: {"GET /a/{x}/{x}": fn}}]', "{x}"),
        (
            "[{name: a, type: http, port: 8123, routes: {$default: fn}},"
            " {name: b, type: http, port: 8123, routes: {$default: fn}}]",
            "8123",
        ),
        ("[{name: w, type: websocket, routes: {$other: fn}}]", "$other"),
    ],
)
def test_a_bad_api_is_a_config_error_naming_it(apis: str, message: str) -> None:
    text = f"functions:\n  fn: {{type: http, url: 'http://127.0.0.1:9/'}}\napis: {apis}\n"
    with pytest.raises(ConfigError) as error:
        parse_config(text, "bridge.yaml", {})
    assert message in str(error.value) and str(error.value).startswith("bridge.yaml:3: apis[")


async def test_a_port_in_use_is_said_and_tried_again_until_it_is_free(
    start_bridge: Start, caplog: pytest.LogCaptureFixture
) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    api = {"name": "web", "type": "http", "port": port, "routes": {"GET /ok": "fn"}}
    supervisor = await start_bridge({"functions": {"fn": runtime("httpecho")}, "apis": [api]})
    async with asyncio.timeout(5):
        while "api.failed" not in caplog.text:  # noqa: ASYNC110 - a log line, no event
            await asyncio.sleep(0.02)
    assert f"cannot listen on 127.0.0.1:{port}" in caplog.text
    assert supervisor.apis == {"web": None}
    holder.close()
    address = await api_address(supervisor, "web", timeout=10)
    assert address == f"127.0.0.1:{port}"
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"http://{address}/ok")).status_code == 200
