"""The ``lambda`` target against a real loopback server shaped like the Invoke API.

``emulator_like`` serves both the Runtime Interface Emulator's quirks (errors without
``X-Amz-Function-Error``, the timeout text, one invocation at a time) and the real
service's answers (the header, throttling, service errors).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from bridge.errors import FunctionError, TargetRejected, TargetUnavailable
from bridge.targets.base import MAX_RESPONSE_SIZE, Target
from bridge.targets.lambda_invoke import LambdaInvokeTarget
from tests.targets.emulator_like import (
    FakeLambda,
    RecordedRequest,
    aws_error,
    closed_port_url,
    serve_function,
)

MakeTarget = Callable[..., LambdaInvokeTarget]


@pytest.fixture
async def make_target() -> AsyncIterator[MakeTarget]:
    """Builds targets (``server=`` is shorthand for ``endpoints=[server.url]``)."""
    targets: list[LambdaInvokeTarget] = []

    def make(server: FakeLambda | None = None, **options: Any) -> LambdaInvokeTarget:
        if server is not None:
            options.setdefault("endpoints", [server.url])
        target = LambdaInvokeTarget(options.pop("name", "fn"), **options)
        targets.append(target)
        return target

    yield make
    for target in targets:
        await target.aclose()


async def invoke(target: LambdaInvokeTarget, payload: bytes, request_id: str = "r-1") -> bytes:
    return await target.invoke(payload, request_id=request_id, timeout=None)


def fail(exc: Exception) -> Callable[[Any], Any]:
    def handler(event: Any) -> Any:
        raise exc

    return handler


async def slow_echo(event: Any) -> Any:
    await asyncio.sleep(0.02)
    return event


# --- the fake itself ---------------------------------------------------------------------


async def test_the_fake_emulator_drops_a_second_concurrent_request() -> None:
    # The concurrency tests below rely on this: without it they could not fail.
    async with serve_function(slow_echo) as server, httpx.AsyncClient() as client:
        url = f"{server.url}/2015-03-31/functions/f/invocations"
        results = await asyncio.gather(
            client.post(url, content=b"1"), client.post(url, content=b"2"), return_exceptions=True
        )

    assert sum(isinstance(r, httpx.Response) and r.status_code == 200 for r in results) == 1
    assert sum(isinstance(r, httpx.RemoteProtocolError) for r in results) == 1
    assert server.refused == 1
    assert server.high_water == 1


# --- success: bytes, URL, headers ----------------------------------------------------------


async def test_success_returns_the_exact_response_bytes_and_sends_the_exact_payload(
    make_target: MakeTarget,
) -> None:
    answer = '{"ok" : true, "text": "h\u00e9llo \u2713"}\n'.encode()
    payload = ' {"Records": [{"body": "caf\u00e9"}],   "n": 1.50}\n'.encode()
    async with serve_function(lambda event: answer) as server:
        target = make_target(server, emulator=True)
        await target.start()

        response = await invoke(target, payload)

    assert response == answer
    assert [r.body for r in server.requests] == [payload]
    assert isinstance(target, Target)


@pytest.mark.parametrize(
    ("function_name", "qualifier", "raw_path"),
    [
        ("fn", None, "/2015-03-31/functions/fn/invocations"),
        ("my-func_1", "live", "/2015-03-31/functions/my-func_1/invocations?Qualifier=live"),
        (
            "arn:aws:lambda:us-east-1:123456789012:function:my-fn",
            "$LATEST",
            "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction"
            "%3Amy-fn/invocations?Qualifier=%24LATEST",
        ),
        ("a/b c", "7", "/2015-03-31/functions/a%2Fb%20c/invocations?Qualifier=7"),
    ],
)
async def test_url_has_the_encoded_name_and_qualifier(
    make_target: MakeTarget,
    function_name: str,
    qualifier: str | None,
    raw_path: str,
) -> None:
    async with serve_function(mode="aws") as server:
        target = make_target(server, function_name=function_name, qualifier=qualifier)
        await invoke(target, b"{}")

    [request] = server.requests
    assert request.raw_path == raw_path
    assert request.name == function_name
    assert request.query == ({"Qualifier": qualifier} if qualifier else {})


async def test_function_name_defaults_to_the_target_name(make_target: MakeTarget) -> None:
    async with serve_function(mode="aws") as server:
        await invoke(make_target(server, name="orders-handler"), b"{}")

    assert server.names == ["orders-handler"]


async def test_request_headers(make_target: MakeTarget) -> None:
    async with serve_function(mode="aws") as server:
        await invoke(make_target(server), b"{}")

    [request] = server.requests
    assert request.method == "POST"
    assert request.headers.getall("X-Amz-Invocation-Type") == ["RequestResponse"]
    assert request.headers["Content-Type"] == "application/json"


# --- emulator mode: errors without the header ------------------------------------------------


async def test_emulator_error_body_without_header_is_a_function_error(
    make_target: MakeTarget,
) -> None:
    async with serve_function(fail(KeyError("order-17"))) as server:
        target = make_target(server, emulator=True)
        with pytest.raises(FunctionError) as caught:
            await invoke(target, b'{"id": 17}')

    [sent] = server.responses
    document = json.loads(sent)
    assert document["errorType"] == "KeyError"
    assert set(document) == {"errorMessage", "errorType", "requestId", "stackTrace"}
    error = caught.value
    assert error.error_type == "KeyError"
    assert str(error) == document["errorMessage"] == "'order-17'"
    assert error.payload == sent
    assert error.status_code == 200


async def test_emulator_timeout_text_is_a_sandbox_timeout(make_target: MakeTarget) -> None:
    async with serve_function(times_out_after=1.0) as server:
        target = make_target(server, emulator=True)
        with pytest.raises(FunctionError) as caught:
            await invoke(target, b"{}")

    assert server.responses == [b"Task timed out after 1.00 seconds"]
    error = caught.value
    assert error.error_type == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in str(error)
    document = json.loads(error.payload)
    assert document["errorType"] == "Sandbox.Timedout"
    assert document["errorMessage"] == "Task timed out after 1.00 seconds"


@pytest.mark.parametrize(
    "answer",
    [
        b'{"errorType": "Validation", "errorMessage": "none", "orderId": 17}',
        b'{"errorType": "Validation", "count": 3}',
        b'{"status": "ok", "errorType": null}',
        b'[{"errorType": "X", "errorMessage": "y"}]',
        b'"errorType"',
        b"Task finished after 1.00 seconds",
    ],
)
async def test_emulator_success_that_merely_mentions_errors_is_a_success(
    make_target: MakeTarget, answer: bytes
) -> None:
    async with serve_function(lambda event: answer) as server:
        response = await invoke(make_target(server, emulator=True), b"{}")

    assert response == answer


async def test_without_emulator_flag_only_the_header_marks_an_error(
    make_target: MakeTarget,
) -> None:
    # The real service always sets the header; an error-shaped body alone is a result.
    async with serve_function(fail(ValueError("bad"))) as server:
        response = await invoke(make_target(server, emulator=False), b"{}")

    assert response == server.responses[0]
    assert json.loads(response)["errorType"] == "ValueError"


# --- emulator mode: one invocation at a time per endpoint -------------------------------------


async def test_emulator_mode_serializes_invocations_on_one_endpoint(
    make_target: MakeTarget,
) -> None:
    async with serve_function(slow_echo) as server:
        target = make_target(server, emulator=True, concurrency=10)
        payloads = [json.dumps({"n": i}).encode() for i in range(5)]

        responses = await asyncio.gather(
            *(invoke(target, p, request_id=f"r-{i}") for i, p in enumerate(payloads))
        )

    assert [json.loads(r) for r in responses] == [{"n": i} for i in range(5)]
    assert len(server.requests) == 5
    assert server.refused == 0
    assert server.high_water == 1


async def test_emulator_mode_spreads_over_endpoints_one_at_a_time_each(
    make_target: MakeTarget,
) -> None:
    async with serve_function(slow_echo) as first, serve_function(slow_echo) as second:
        target = make_target(endpoints=[first.url, second.url + "/"], emulator=True)
        responses = await asyncio.gather(
            *(invoke(target, json.dumps({"n": i}).encode(), f"r-{i}") for i in range(6))
        )

    assert [json.loads(r) for r in responses] == [{"n": i} for i in range(6)]
    assert len(first.requests) >= 1
    assert len(second.requests) >= 1
    assert len(first.requests) + len(second.requests) == 6
    assert (first.refused, second.refused) == (0, 0)
    assert (first.high_water, second.high_water) == (1, 1)
    # the trailing slash of the second endpoint does not leak into the path
    assert {r.raw_path for r in first.requests + second.requests} == {
        "/2015-03-31/functions/fn/invocations"
    }


async def test_without_emulator_flag_concurrent_requests_crash_the_emulator(
    make_target: MakeTarget,
) -> None:
    # What the emulator flag prevents; the dropped connection is TargetUnavailable.
    async with serve_function(slow_echo) as server:
        target = make_target(server, emulator=False, concurrency=5)
        results = await asyncio.gather(
            *(invoke(target, b"{}", f"r-{i}") for i in range(5)), return_exceptions=True
        )

    assert server.refused >= 1
    unavailable = [r for r in results if isinstance(r, TargetUnavailable)]
    assert len(unavailable) == server.refused


async def test_aws_mode_sends_concurrently_up_to_the_limit(make_target: MakeTarget) -> None:
    async with serve_function(slow_echo, mode="aws") as server:
        target = make_target(server, concurrency=3)
        await asyncio.gather(*(invoke(target, b"{}", f"r-{i}") for i in range(9)))

    assert len(server.requests) == 9
    assert server.high_water == 3


# --- AWS mode: the service's answers ------------------------------------------------------


async def test_aws_function_error_header_is_a_function_error(make_target: MakeTarget) -> None:
    async with serve_function(fail(ZeroDivisionError("division by zero")), mode="aws") as server:
        with pytest.raises(FunctionError) as caught:
            await invoke(make_target(server), b"{}")

    error = caught.value
    assert error.error_type == "ZeroDivisionError"
    assert str(error) == "division by zero"
    assert error.payload == server.responses[0]
    assert json.loads(error.payload)["stackTrace"]


async def test_aws_function_error_with_a_non_json_body_uses_the_header(
    make_target: MakeTarget,
) -> None:
    async with serve_function(mode="aws") as server:
        server.reply(200, b"runtime crashed", {"X-Amz-Function-Error": "Unhandled"})
        with pytest.raises(FunctionError) as caught:
            await invoke(make_target(server), b"{}")

    assert caught.value.error_type == "Unhandled"
    assert caught.value.payload == b"runtime crashed"


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [(7, 7.0), (0.5, 0.5), (None, None)],
)
async def test_aws_throttle_is_unavailable_with_retry_after(
    make_target: MakeTarget, retry_after: float | None, expected: float | None
) -> None:
    async with serve_function(mode="aws") as server:
        server.queue(
            aws_error(429, "TooManyRequestsException", "Rate Exceeded.", retry_after=retry_after)
        )
        with pytest.raises(TargetUnavailable) as caught:
            await invoke(make_target(server), b"{}")

    assert caught.value.retry_after == expected
    assert "429" in str(caught.value)


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (500, "ServiceException"),
        (502, "EC2UnexpectedException"),
        (503, "ServiceUnavailableException"),
        (404, "ResourceNotFoundException"),
        (403, "AccessDeniedException"),
        (401, "UnrecognizedClientException"),
    ],
)
async def test_aws_service_errors_are_unavailable(
    make_target: MakeTarget, status: int, error_type: str
) -> None:
    async with serve_function(mode="aws") as server:
        server.queue(aws_error(status, error_type, "nope"))
        with pytest.raises(TargetUnavailable) as caught:
            await invoke(make_target(server), b"{}")

    assert f"HTTP {status}" in str(caught.value)
    assert caught.value.retry_after is None


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (413, "RequestTooLargeException"),
        (400, "InvalidRequestContentException"),
        (415, "UnsupportedMediaTypeException"),
    ],
)
async def test_aws_request_errors_are_rejected(
    make_target: MakeTarget, status: int, error_type: str
) -> None:
    async with serve_function(mode="aws") as server:
        server.queue(aws_error(status, error_type, "request refused"))
        with pytest.raises(TargetRejected) as caught:
            await invoke(make_target(server), b"{}")

    assert caught.value.status == status
    assert "request refused" in str(caught.value)


async def test_an_answer_over_lambda_s_limit_is_the_function_s_failure(
    make_target: MakeTarget,
) -> None:
    # an endpoint that is not Lambda may answer any amount: capped as Lambda caps it
    async with serve_function(mode="aws") as server:
        target = make_target(server)
        server.reply(200, b"x" * MAX_RESPONSE_SIZE)
        assert len(await invoke(target, b"{}")) == MAX_RESPONSE_SIZE
        server.reply(200, b"x" * (MAX_RESPONSE_SIZE + 1))
        with pytest.raises(FunctionError) as too_large:
            await invoke(target, b"{}")
        server.reply(502, b"<html>" + b"x" * MAX_RESPONSE_SIZE)  # a proxy's page
        with pytest.raises(TargetUnavailable) as bad_gateway:
            await invoke(target, b"{}")
        server.reply(200, b'"ok"')
        assert await invoke(target, b"{}") == b'"ok"'

    assert too_large.value.error_type == "Function.ResponseSizeTooLarge"
    # the runtime target's error, as Lambda words it, with its error document
    message = "Response payload size exceeded maximum allowed payload size (6291556 bytes)."
    assert str(too_large.value) == message
    assert json.loads(too_large.value.payload) == {
        "errorMessage": message,
        "errorType": "Function.ResponseSizeTooLarge",
    }
    assert "HTTP 502" in str(bad_gateway.value) and "6291556-byte limit" in str(bad_gateway.value)


async def test_after_a_canned_error_the_function_runs_again(make_target: MakeTarget) -> None:
    async with serve_function(mode="aws") as server:
        server.queue(aws_error(429, "TooManyRequestsException", "Rate Exceeded.", retry_after=1))
        target = make_target(server)
        with pytest.raises(TargetUnavailable):
            await invoke(target, b'{"a": 1}')

        assert await invoke(target, b'{"a": 2}') == b'{"a": 2}'


async def test_connection_refused_is_unavailable_naming_the_url(make_target: MakeTarget) -> None:
    endpoint = closed_port_url()
    target = make_target(endpoints=[endpoint], function_name="gone")

    with pytest.raises(TargetUnavailable) as caught:
        await invoke(target, b"{}")

    assert f"{endpoint}/2015-03-31/functions/gone/invocations" in str(caught.value)


# --- SigV4 signing ----------------------------------------------------------------------

_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)"
    r"/lambda/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<sig>[0-9a-f]{64})$"
)


def expected_signature(
    request: RecordedRequest, base_url: str, credentials: Credentials, region: str, signed: str
) -> str:
    """Recompute the signature server-side from what was actually received."""
    headers = {name: request.headers[name] for name in signed.split(";")}
    aws_request = AWSRequest(
        method=request.method, url=base_url + request.raw_path, data=request.body, headers=headers
    )
    aws_request.context["timestamp"] = request.headers["X-Amz-Date"]
    auth = SigV4Auth(credentials, "lambda", region)
    canonical = auth.canonical_request(aws_request)
    return str(auth.signature(auth.string_to_sign(aws_request, canonical), aws_request))


@pytest.mark.parametrize("token", [None, "session-token-1"])
async def test_signed_requests_carry_a_valid_sigv4_authorization(
    make_target: MakeTarget, token: str | None
) -> None:
    payload = b'{"Records": [{"k": "v"}]}'
    async with serve_function(mode="aws") as server:
        target = make_target(
            server,
            function_name="arn:aws:lambda:eu-west-1:123456789012:function:f",
            qualifier="prod",
            region="eu-west-1",
            sign_requests=True,
            credentials=("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token),
        )
        assert await invoke(target, payload) == payload

    [request] = server.requests
    match = _AUTH.match(request.headers["Authorization"])
    assert match, request.headers["Authorization"]
    assert match["key"] == "AKIDEXAMPLE"
    assert match["region"] == "eu-west-1"
    assert re.fullmatch(r"\d{8}T\d{6}Z", request.headers["X-Amz-Date"])
    assert request.headers["X-Amz-Date"].startswith(match["date"])
    signed = match["signed"].split(";")
    assert {"host", "x-amz-date", "x-amz-invocation-type", "content-type"} <= set(signed)
    if token:
        assert request.headers["X-Amz-Security-Token"] == token
        assert "x-amz-security-token" in signed
    else:
        assert "X-Amz-Security-Token" not in request.headers
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    assert match["sig"] == expected_signature(
        request, server.url, credentials, "eu-west-1", match["signed"]
    )


async def test_unsigned_by_default_when_an_endpoint_is_given(make_target: MakeTarget) -> None:
    async with serve_function(mode="aws") as server:
        target = make_target(server, credentials=("AKIDEXAMPLE", "secret", None))
        await invoke(target, b"{}")

    [request] = server.requests
    assert "Authorization" not in request.headers
    assert "X-Amz-Date" not in request.headers


def test_signed_by_default_against_aws() -> None:
    target = LambdaInvokeTarget("fn", region="ap-south-1")

    assert target.sign is True
    assert target.endpoints == ["https://lambda.ap-south-1.amazonaws.com"]


async def test_an_answer_that_does_not_decode_is_unavailable_not_a_crash(
    make_target: MakeTarget,
) -> None:
    async with serve_function(mode="aws") as server:
        server.reply(200, b"this is not gzip", {"Content-Encoding": "gzip"})
        target = make_target(server)
        with pytest.raises(TargetUnavailable, match="unreadable answer"):
            await invoke(target, b'{"a": 1}')
        assert await invoke(target, b'{"a": 2}') == b'{"a": 2}'


async def test_refreshing_credentials_does_not_block_the_event_loop(
    make_target: MakeTarget,
) -> None:
    """botocore refreshes credentials with blocking calls (STS, the instance metadata
    service); a refresh that takes a while must not stall every other mapping."""
    import time
    from datetime import UTC, datetime, timedelta

    from botocore.credentials import RefreshableCredentials

    def fetch() -> dict[str, str]:
        time.sleep(0.3)  # what a slow STS or IMDS call does to the calling thread
        expiry = datetime.now(UTC) + timedelta(hours=1)
        return {
            "access_key": "AKIDREFRESHED",
            "secret_key": "secret",
            "token": "token",
            "expiry_time": expiry.isoformat(),
        }

    expired = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    credentials = RefreshableCredentials.create_from_metadata(
        metadata={"access_key": "AKIDOLD", "secret_key": "s", "token": "t", "expiry_time": expired},
        refresh_using=fetch,
        method="test",
    )
    gaps = [0.0]

    async def tick() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    async with serve_function(mode="aws") as server:
        target = make_target(server, sign_requests=True)
        target._credentials = credentials
        ticker = asyncio.create_task(tick())
        try:
            assert await invoke(target, b'{"a": 1}') == b'{"a": 1}'
        finally:
            ticker.cancel()
        assert len(gaps) > 10 and max(gaps) < 0.2  # the loop ran through the 0.3 s refresh
        assert "AKIDREFRESHED" in server.requests[0].headers["Authorization"]
