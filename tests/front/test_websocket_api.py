"""WebSocket APIs end to end: real `websockets` clients, handlers under awslambdaric (the
runtime target) and under aws-lambda-rie (the lambda target), boto3's
`apigatewaymanagementapi` calling back over https://{domainName}/{stage}."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import pytest
import websockets
from websockets.asyncio.client import ClientConnection, connect

from bridge.front.tls import LocalCA
from tests.front.conftest import FUNCTIONS, RIC, Start, api_address

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}


def management(address: str, state: Path, stage: str = "dev") -> Any:
    """boto3's client for the @connections API, as a handler builds it (https, the domain
    name and stage from the event), trusting the bridge's authority."""
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=f"https://{address}/{stage}",
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
        verify=str(LocalCA.in_state_dir(state).bundle_path),
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )


async def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110 - files and sockets, no event to wait on
            await asyncio.sleep(0.02)


async def receive_all(client: ClientConnection, n: int, timeout: float = 10.0) -> list[str]:
    out = []
    async with asyncio.timeout(timeout):
        for _ in range(n):
            message = await client.recv()
            out.append(message if isinstance(message, str) else message.decode())
    return out


def chat_config(tmp_path: Path, function: str) -> str:
    return f"""
        functions:
          {function}
        apis:
          - name: chat
            type: websocket
            stage: dev
            route_selection_expression: $request.body.action
            two_way: false
            routes:
              $connect: chat
              $disconnect: chat
              sendmessage: chat
    """


@pytest.fixture(params=["runtime", "lambda"])
async def chat(
    request: pytest.FixtureRequest, tmp_path: Path, start_bridge: Start
) -> tuple[str, Path, Path]:
    """AWS's chat sample behind a WebSocket API: (address, connections folder, state_dir)."""
    folder = tmp_path / "connections"
    folder.mkdir()
    state = tmp_path / "state"
    env = {"CHAT_CONNECTIONS": str(folder), **CREDENTIALS}
    if request.param == "runtime":
        function = (
            f"chat: {{type: runtime, command: {RIC}, cwd: {FUNCTIONS / 'chat'}, "
            f"env: {json.dumps(env)}, concurrency: 2, timeout: 10}}"
        )
    else:
        LocalCA.in_state_dir(state).ensure()  # the emulator's environment names it
        make = request.getfixturevalue("lambda_function_factory")
        trust = {"AWS_CA_BUNDLE": str(LocalCA.in_state_dir(state).bundle_path)}
        emulator = make(
            FUNCTIONS / "chat",
            env={**env, **trust},
            probe_event={"requestContext": {"routeKey": "$disconnect", "connectionId": "probe"}},
        )
        function = (
            "chat: {type: lambda, function_name: function, emulator: true, "
            f"endpoint_url: {emulator.base_url}}}"
        )
    supervisor = await start_bridge(chat_config(tmp_path, function))
    return await api_address(supervisor, "chat"), folder, state


async def test_a_chat_of_three_through_the_handlers_callbacks(chat: tuple[str, Path, Path]) -> None:
    """Three clients connect, one sends, everyone receives it through the handler's
    post_to_connection calls; one leaves, and posting to it is 410 GoneException."""
    address, folder, state = chat
    url = f"ws://{address}/dev"
    async with connect(url) as a, connect(url) as b, connect(url) as c:
        await wait_until(lambda: len(list(folder.iterdir())) == 3)
        ids = sorted(p.name for p in folder.iterdir())
        await a.send(json.dumps({"action": "sendmessage", "data": "hello from a"}))
        for client in (a, b, c):
            assert await receive_all(client, 1) == ["hello from a"]
        before = set(ids)
        await c.close()
        await wait_until(lambda: len(list(folder.iterdir())) == 2)  # $disconnect ran
        gone = (before - {p.name for p in folder.iterdir()}).pop()
        api = management(address, state)
        with pytest.raises(api.exceptions.GoneException):
            await asyncio.to_thread(api.post_to_connection, ConnectionId=gone, Data=b"hi")
        await b.send(json.dumps({"action": "sendmessage", "data": "still here"}))
        for client in (a, b):
            assert await receive_all(client, 1) == ["still here"]
    lines = (state.parent / "disconnects.jsonl").read_text().splitlines()
    disconnects = [
        e for e in map(json.loads, lines) if e["requestContext"]["connectionId"] != "probe"
    ]
    assert disconnects[0]["requestContext"]["connectionId"] == gone
    assert disconnects[0]["requestContext"]["disconnectStatusCode"] == 1000


EchoApi = Callable[..., Any]


@pytest.fixture
def echo(tmp_path: Path, start_bridge: Start) -> EchoApi:
    """``await echo(**api_options)``: the wsecho handler behind a WebSocket API; returns
    (address, a function giving the $disconnect events seen so far)."""

    async def make(**options: Any) -> tuple[str, Callable[[], list[dict[str, Any]]]]:
        log = tmp_path / "disconnects.jsonl"
        routes = {"$connect": "echo", "$disconnect": "echo", "$default": "echo"}
        api = {"name": "ws", "type": "websocket", "stage": "dev", "routes": routes, **options}
        function = {
            "type": "runtime",
            "command": RIC,
            "cwd": str(FUNCTIONS / "wsecho"),
            "env": {"WS_LOG": str(log)},
            "concurrency": 2,
            "timeout": 10,
        }
        supervisor = await start_bridge({"functions": {"echo": function}, "apis": [api]})

        def disconnects() -> list[dict[str, Any]]:
            lines = log.read_text().splitlines() if log.exists() else []
            return [json.loads(line) for line in lines]

        return await api_address(supervisor, "ws"), disconnects

    return make


async def test_the_events_carry_api_gateways_request_context(echo: EchoApi) -> None:
    address, disconnects = await echo()
    url = f"ws://{address}/dev?room=1"
    async with connect(url, user_agent_header="test-agent/1") as client:
        await client.send('{"hello": "world"}')
        [answer] = await receive_all(client, 1)
    event = json.loads(answer)
    context = event["requestContext"]
    assert context["routeKey"] == "$default" and context["eventType"] == "MESSAGE"
    assert context["stage"] == "dev" and context["domainName"] == address
    assert context["messageDirection"] == "IN" and context["identity"]["sourceIp"] == "127.0.0.1"
    assert context["identity"]["userAgent"] == "test-agent/1"
    assert len(context["apiId"]) == 10 and context["messageId"]
    assert event["body"] == '{"hello": "world"}' and event["isBase64Encoded"] is False
    await wait_until(lambda: len(disconnects()) == 1)
    [gone] = disconnects()
    assert gone["requestContext"]["connectionId"] == context["connectionId"]
    assert gone["requestContext"]["eventType"] == "DISCONNECT"
    assert gone["requestContext"]["disconnectStatusCode"] == 1000


@pytest.mark.parametrize("status", [401, 403])
async def test_connect_refused_by_the_function_gives_its_status(echo: EchoApi, status: int) -> None:
    address, disconnects = await echo()
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with connect(f"ws://{address}/dev?status={status}"):
            pass
    assert refused.value.response.status_code == status
    await asyncio.sleep(0.3)
    assert disconnects() == []  # never connected: no $disconnect


async def test_connect_whose_function_fails_is_a_502(echo: EchoApi) -> None:
    address, _ = await echo()
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with connect(f"ws://{address}/dev?boom=1"):
            pass
    assert refused.value.response.status_code == 502


async def test_the_subprotocol_the_function_chose_is_echoed(echo: EchoApi) -> None:
    address, _ = await echo()
    url = f"ws://{address}/dev?protocol=chat.v2"
    async with connect(url, subprotocols=["chat.v1", "chat.v2"]) as client:  # type: ignore[list-item]
        assert client.subprotocol == "chat.v2"


async def test_a_failing_handler_and_a_missing_route_answer_as_api_gateway(
    echo: EchoApi,
) -> None:
    address, _ = await echo()
    async with connect(f"ws://{address}/dev") as client:
        await client.send('{"do": "raise"}')
        [failed] = await receive_all(client, 1)
        await client.send('{"do": "garbage"}')
        [invalid] = await receive_all(client, 1)
    assert failed.startswith('{"message": "Internal server error", "connectionId":"')
    assert invalid.startswith('{"message": "Internal server error", "connectionId":"')
    assert json.loads(failed)["requestId"]


async def test_the_integration_timeout_answers_endpoint_request_timed_out(
    echo: EchoApi,
) -> None:
    address, _ = await echo(timeout_in_millis=300)
    async with connect(f"ws://{address}/dev") as client:
        await client.send('{"do": "sleep", "seconds": 2}')
        [answer] = await receive_all(client, 1)
    assert answer.startswith('{"message": "Endpoint request timed out", "connectionId":"')
    assert json.loads(answer)["requestId"]


async def test_no_default_route_is_forbidden(tmp_path: Path, start_bridge: Start) -> None:
    function = {"type": "runtime", "command": RIC, "cwd": str(FUNCTIONS / "wsecho")}
    api = {"name": "ws", "type": "websocket", "routes": {"sendmessage": "echo"}}
    supervisor = await start_bridge({"functions": {"echo": function}, "apis": [api]})
    address = await api_address(supervisor, "ws")
    async with connect(f"ws://{address}/dev") as client:
        await client.send('{"action": "other"}')
        [answer] = await receive_all(client, 1)
        await client.send('{"action": "sendmessage"}')
        [routed] = await receive_all(client, 1)
    assert answer.startswith('{"message": "Forbidden", "connectionId":"')
    assert json.loads(routed)["requestContext"]["routeKey"] == "sendmessage"


def fragments(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


async def test_a_message_over_128_kb_closes_the_connection_1009(echo: EchoApi) -> None:
    address, disconnects = await echo()
    async with connect(f"ws://{address}/dev", max_size=None) as client:
        await client.send(fragments("x" * (128 * 1024 + 1), 16 * 1024))  # frames within 32 KB
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await client.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    await wait_until(lambda: len(disconnects()) == 1)
    assert disconnects()[0]["requestContext"]["disconnectStatusCode"] == 1009


async def test_a_message_in_frames_of_32_kb_passes_and_a_bigger_frame_is_1009(
    echo: EchoApi,
) -> None:
    """API Gateway takes messages of up to 128 KB in frames of up to 32 KB each."""
    address, disconnects = await echo()
    message = json.dumps({"pad": "p" * (120 * 1024)})
    async with connect(f"ws://{address}/dev", max_size=None) as client:
        await client.send(fragments(message, 32 * 1024))
        [answer] = await receive_all(client, 1)
        assert json.loads(answer)["body"] == message
        await client.send("y" * (32 * 1024 + 1))  # one frame just over
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await client.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    await wait_until(lambda: len(disconnects()) == 1)
    assert disconnects()[0]["requestContext"]["disconnectStatusCode"] == 1009


async def test_a_binary_frame_closes_the_connection_1003(echo: EchoApi) -> None:
    address, _ = await echo()
    async with connect(f"ws://{address}/dev") as client:
        await client.send(b"\x00\x01")
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await client.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003


async def test_an_idle_connection_is_closed_going_away(echo: EchoApi) -> None:
    address, disconnects = await echo(idle_timeout_seconds=0.5)
    async with connect(f"ws://{address}/dev") as client:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(client.recv(), 5)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1001, "Going away")
    await wait_until(lambda: len(disconnects()) == 1)
    context = disconnects()[0]["requestContext"]
    assert (context["disconnectStatusCode"], context["disconnectReason"]) == (1001, "Going away")


async def test_a_connection_ends_after_its_maximum_duration_even_when_busy(
    echo: EchoApi,
) -> None:
    address, _ = await echo(max_connection_seconds=1.0)
    async with connect(f"ws://{address}/dev") as client:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            for _ in range(100):
                await client.send('{"n": 1}')
                await client.recv()
                await asyncio.sleep(0.05)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001


async def test_get_and_delete_through_the_connections_api(echo: EchoApi, tmp_path: Path) -> None:
    address, disconnects = await echo()
    api = management(address, tmp_path / "state")
    async with connect(f"ws://{address}/dev", user_agent_header="agent-x") as client:
        await client.send("{}")
        [answer] = await receive_all(client, 1)
        connection = json.loads(answer)["requestContext"]["connectionId"]
        info = await asyncio.to_thread(api.get_connection, ConnectionId=connection)
        assert info["Identity"] == {"SourceIp": "127.0.0.1", "UserAgent": "agent-x"}
        assert info["ConnectedAt"] <= info["LastActiveAt"]
        await asyncio.to_thread(api.post_to_connection, ConnectionId=connection, Data=b"pushed")
        assert await receive_all(client, 1) == ["pushed"]
        too_big = b"x" * (128 * 1024 + 1)
        with pytest.raises(api.exceptions.PayloadTooLargeException):
            await asyncio.to_thread(api.post_to_connection, ConnectionId=connection, Data=too_big)
        await asyncio.to_thread(api.delete_connection, ConnectionId=connection)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await client.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    await wait_until(lambda: len(disconnects()) == 1)
    context = disconnects()[0]["requestContext"]
    assert context["disconnectReason"] == "Connection Closed Normally"
    for call in (api.get_connection, api.delete_connection):
        with pytest.raises(api.exceptions.GoneException):
            await asyncio.to_thread(call, ConnectionId=connection)


async def test_one_way_routes_send_nothing_back(echo: EchoApi) -> None:
    address, _ = await echo(two_way=False)
    async with connect(f"ws://{address}/dev") as client:
        await client.send("{}")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.recv(), 1.0)


async def test_messages_wait_for_the_slow_one_only_up_to_the_limit(echo: EchoApi) -> None:
    """Messages of one connection are invoked concurrently (as API Gateway does): a slow
    handler does not hold up a quick one sent after it."""
    address, _ = await echo()
    async with connect(f"ws://{address}/dev") as client:
        await client.send('{"do": "sleep", "seconds": 2}')
        await client.send('{"quick": 1}')
        first = json.loads((await receive_all(client, 1, timeout=1.5))[0])
    assert json.loads(first["body"]) == {"quick": 1}


async def test_a_stopping_bridge_says_going_away_and_invokes_disconnect(
    tmp_path: Path, start_bridge: Start
) -> None:
    log = tmp_path / "disconnects.jsonl"
    function = {
        "type": "runtime",
        "command": RIC,
        "cwd": str(FUNCTIONS / "wsecho"),
        "env": {"WS_LOG": str(log)},
    }
    routes = {"$connect": "echo", "$disconnect": "echo", "$default": "echo"}
    api = {"name": "ws", "type": "websocket", "routes": routes}
    supervisor = await start_bridge({"functions": {"echo": function}, "apis": [api]})
    address = await api_address(supervisor, "ws")
    async with connect(f"ws://{address}/dev") as client:
        await client.send("{}")
        await receive_all(client, 1)
        await supervisor.aclose()
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await client.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    [gone] = [json.loads(line) for line in log.read_text().splitlines()]
    assert gone["requestContext"]["disconnectStatusCode"] == 1001
