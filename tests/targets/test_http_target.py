"""The ``http`` target against a real loopback webhook server."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import pytest

from bridge.errors import FunctionError, TargetRejected, TargetUnavailable
from bridge.targets.base import MAX_RESPONSE_SIZE, Target
from bridge.targets.http import CLOUDEVENT_TYPE, HttpTarget
from tests.targets.emulator_like import FakeLambda, closed_port_url, serve_function

MakeTarget = Callable[..., HttpTarget]

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


@pytest.fixture
async def make_target() -> AsyncIterator[MakeTarget]:
    """Builds targets posting to ``server.url + path``; closes them after the test."""
    targets: list[HttpTarget] = []

    def make(server: FakeLambda, path: str = "/hook", **options: Any) -> HttpTarget:
        target = HttpTarget(options.pop("name", "hook"), url=server.url + path, **options)
        targets.append(target)
        return target

    yield make
    for target in targets:
        await target.aclose()


async def invoke(target: HttpTarget, payload: bytes, request_id: str = "r-1", **kw: Any) -> bytes:
    kw.setdefault("timeout", None)
    return await target.invoke(payload, request_id=request_id, **kw)


# --- success ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body"),
    [(200, b'{"ok": true}'), (201, "cr\u00e9\u00e9".encode()), (202, b"queued"), (204, b"")],
)
async def test_2xx_body_is_the_result(make_target: MakeTarget, status: int, body: bytes) -> None:
    async with serve_function(mode="http") as server:
        server.reply(status, body)
        target = make_target(server)
        await target.start()

        assert await invoke(target, b"{}") == body

    assert isinstance(target, Target)


async def test_payload_and_path_are_sent_unchanged(make_target: MakeTarget) -> None:
    payload = ' {"Records":[{"s3":{"object":{"key":"caf\u00e9.txt"}}}],  "x": 1.50}\n'.encode()
    async with serve_function(lambda event: {"got": event}, mode="http") as server:
        response = await invoke(make_target(server, path="/function/orders?x=1"), payload)

    [request] = server.requests
    assert request.method == "POST"
    assert request.raw_path == "/function/orders?x=1"
    assert request.body == payload
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(response) == {"got": json.loads(payload)}


# --- the status table ---------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 429, 502, 503, 504])
async def test_transient_statuses_are_unavailable(make_target: MakeTarget, status: int) -> None:
    async with serve_function(mode="http") as server:
        server.reply(status, b"busy")
        with pytest.raises(TargetUnavailable) as caught:
            await invoke(make_target(server), b"{}")

    assert f"HTTP {status}" in str(caught.value)
    assert caught.value.retry_after is None


@pytest.mark.parametrize(("header", "expected"), [("3", 3.0), ("0", 0.0), ("soon", None)])
async def test_429_carries_retry_after(
    make_target: MakeTarget, header: str, expected: float | None
) -> None:
    async with serve_function(mode="http") as server:
        server.reply(429, b"slow down", {"Retry-After": header})
        with pytest.raises(TargetUnavailable) as caught:
            await invoke(make_target(server), b"{}")

    assert caught.value.retry_after == expected


@pytest.mark.parametrize("status", [500, 501, 507])
async def test_other_5xx_are_function_errors(make_target: MakeTarget, status: int) -> None:
    async with serve_function(mode="http") as server:
        server.reply(status, b'{"error": "handler blew up"}')
        with pytest.raises(FunctionError) as caught:
            await invoke(make_target(server), b"{}")

    error = caught.value
    assert error.error_type == "HttpError"
    assert error.status_code == status
    assert error.payload == b'{"error": "handler blew up"}'
    assert "handler blew up" in str(error)


async def test_a_raising_handler_is_a_function_error(make_target: MakeTarget) -> None:
    def handler(event: Any) -> Any:
        raise RuntimeError("boom in handler")

    async with serve_function(handler, mode="http") as server:
        with pytest.raises(FunctionError) as caught:
            await invoke(make_target(server), b"{}")

    assert caught.value.status_code == 500
    assert caught.value.payload == b"boom in handler"


async def test_an_answer_over_lambda_s_limit_is_the_function_s_failure(
    make_target: MakeTarget,
) -> None:
    # as Lambda: the function ran, and its answer is too large to be its result
    async with serve_function(mode="http") as server:
        target = make_target(server)
        server.reply(200, b"x" * MAX_RESPONSE_SIZE)
        assert len(await invoke(target, b"{}")) == MAX_RESPONSE_SIZE
        server.reply(200, b"x" * (MAX_RESPONSE_SIZE + 1))
        with pytest.raises(FunctionError) as caught:
            await invoke(target, b"{}")
        server.reply(502, b"<html>" + b"x" * MAX_RESPONSE_SIZE)  # a proxy's page
        with pytest.raises(TargetUnavailable) as bad_gateway:
            await invoke(target, b"{}")
        server.reply(200, b"ok")
        assert await invoke(target, b"{}") == b"ok"  # a fresh connection, no leftovers

    assert "HTTP 502" in str(bad_gateway.value) and "6291556-byte limit" in str(bad_gateway.value)
    assert caught.value.error_type == "Function.ResponseSizeTooLarge"
    # the runtime target's error, as Lambda words it, with its error document
    message = "Response payload size exceeded maximum allowed payload size (6291556 bytes)."
    assert str(caught.value) == message
    assert json.loads(caught.value.payload) == {
        "errorMessage": message,
        "errorType": "Function.ResponseSizeTooLarge",
    }


@pytest.mark.parametrize("status", [413, 400, 401, 404, 422])
async def test_4xx_are_rejected(make_target: MakeTarget, status: int) -> None:
    async with serve_function(mode="http") as server:
        server.reply(status, b"refused")
        with pytest.raises(TargetRejected) as caught:
            await invoke(make_target(server), b"{}")

    assert caught.value.status == status


async def test_connection_refused_is_unavailable(make_target: MakeTarget) -> None:
    url = closed_port_url() + "/hook"
    target = HttpTarget("hook", url=url)
    try:
        with pytest.raises(TargetUnavailable) as caught:
            await invoke(target, b"{}")
    finally:
        await target.aclose()

    assert url in str(caught.value)


async def test_a_slow_handler_times_out_as_unavailable(make_target: MakeTarget) -> None:
    release = asyncio.Event()

    async def handler(event: Any) -> Any:
        await release.wait()
        return event

    async with serve_function(handler, mode="http") as server:
        try:
            with pytest.raises(TargetUnavailable):
                await invoke(make_target(server, timeout=30.0), b"{}", timeout=0.05)
        finally:
            release.set()


# --- headers ------------------------------------------------------------------------------


async def test_custom_headers_are_sent(make_target: MakeTarget) -> None:
    headers = {"Authorization": "Bearer t0ken", "X-Tenant": "acme"}
    async with serve_function(mode="http") as server:
        await invoke(make_target(server, headers=headers), b"{}")

    [request] = server.requests
    assert request.headers.getall("Authorization") == ["Bearer t0ken"]
    assert request.headers.getall("X-Tenant") == ["acme"]
    assert request.headers.getall("Content-Type") == ["application/json"]
    assert not [name for name in request.headers if name.lower().startswith("ce-")]


@pytest.mark.parametrize("name", ["Content-Type", "content-type", "CONTENT-TYPE"])
async def test_a_custom_content_type_replaces_the_default(
    make_target: MakeTarget, name: str
) -> None:
    async with serve_function(mode="http") as server:
        response = await invoke(
            make_target(server, headers={name: "application/vnd.acme+json"}), b'{"a": 1}'
        )

    assert response == b'{"a": 1}'
    [request] = server.requests
    assert request.headers.getall("Content-Type") == ["application/vnd.acme+json"]


async def test_cloudevents_binary_mode(make_target: MakeTarget) -> None:
    payload = b'{"Records": [{"eventName": "ObjectCreated:Put"}]}'
    async with serve_function(mode="http") as server:
        target = make_target(server, name="thumbnails", cloudevents=True)
        before = time.time()
        response = await invoke(target, payload, request_id="5f0c-req-42")
        after = time.time()

    assert response == payload
    [request] = server.requests
    assert request.body == payload
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers.getall("ce-specversion") == ["1.0"]
    assert request.headers.getall("ce-id") == ["5f0c-req-42"]
    assert request.headers.getall("ce-type") == [CLOUDEVENT_TYPE]
    [source] = request.headers.getall("ce-source")
    assert "thumbnails" in source
    [ce_time] = request.headers.getall("ce-time")
    assert _RFC3339.match(ce_time), ce_time
    stamp = datetime.fromisoformat(ce_time).timestamp()
    assert before - 0.01 <= stamp <= after + 0.01


async def test_cloudevents_id_follows_each_request(make_target: MakeTarget) -> None:
    async with serve_function(mode="http") as server:
        target = make_target(server, cloudevents=True)
        for i in range(3):
            await invoke(target, b"{}", request_id=f"id-{i}")

    assert [r.headers["ce-id"] for r in server.requests] == ["id-0", "id-1", "id-2"]


# --- concurrency --------------------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_concurrency_limit_is_respected(make_target: MakeTarget, concurrency: int) -> None:
    async def handler(event: Any) -> Any:
        await asyncio.sleep(0.02)
        return event

    async with serve_function(handler, mode="http") as server:
        target = make_target(server, concurrency=concurrency)
        responses = await asyncio.gather(
            *(invoke(target, json.dumps({"n": i}).encode(), f"r-{i}") for i in range(8))
        )

    assert [json.loads(r) for r in responses] == [{"n": i} for i in range(8)]
    assert len(server.requests) == 8
    # never above the limit, and the limit is actually used
    assert server.high_water == concurrency
