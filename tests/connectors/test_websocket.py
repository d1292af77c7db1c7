"""The websocket source end to end: real feeds (websocketd serving a program's lines, and
servers written with the `websockets` library), the bridge's spool, and a handler under
awslambdaric that records what it got."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import signal
import ssl
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from bridge.front.tls import LocalCA
from bridge.spool import Spool
from tests.e2e.harness import RunningBridge, wait_for
from tests.support.jsonl import read_jsonl

FEED_FUNCTION = Path(__file__).parent / "functions" / "feed"


def bridge_config(tmp: Path, source: dict[str, Any], **mapping: Any) -> str:
    env = {"RECORDER_OUT": str(tmp / "calls.jsonl"), "BLOCK": str(tmp / "block")}
    function = {
        "type": "runtime",
        "command": "python -m awslambdaric app.handler",
        "cwd": str(FEED_FUNCTION),
        "env": env,
        "concurrency": 2,
        "timeout": 20,
    }
    mapping = {"name": "feed", "function": "f", "source": source, **mapping}
    config = {
        "state_dir": str(tmp / "state"),
        "retry_backoff": {"initial_seconds": 0.01, "max_seconds": 0.05},
        "shutdown_timeout_seconds": 5,
        "functions": {"f": function},
        "mappings": [mapping],
    }
    return json.dumps(config)


def invocations(tmp: Path) -> list[dict[str, Any]]:
    return read_jsonl(tmp / "calls.jsonl")


def delivered(tmp: Path) -> list[dict[str, Any]]:
    """Every record delivered, in invocation order (a record of a failed invocation too)."""
    return [r for call in invocations(tmp) for r in call["records"]]


def bodies(records: list[dict[str, Any]]) -> list[Any]:
    return [json.loads(r["data"]) for r in records]


Handler = Callable[[ServerConnection], Awaitable[None]]


@pytest.fixture
async def feed() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """``await feed(handler)``: a websockets server running ``handler`` per connection;
    its ``ws://127.0.0.1:port``."""
    servers: list[Any] = []

    async def start(handler: Handler, **options: Any) -> str:
        server = await serve(handler, "127.0.0.1", 0, **options)
        servers.append(server)
        port = next(iter(server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


PRINTER = textwrap.dedent(
    """
    import json, sys, time
    for n in range(1, 301):
        print(json.dumps({"n": n, "sym": "ABC"[n % 3]}), flush=True)
    time.sleep(60)
    """
)


async def test_a_websocketd_feed_is_delivered_in_order_per_partition(
    tmp_path: Path, websocketd_factory: Any
) -> None:
    server = websocketd_factory([sys.executable, "-c", PRINTER])
    source = {"type": "websocket", "url": server.url + "?token=secret", "partition_key": "sym"}
    async with RunningBridge(bridge_config(tmp_path, source, batch_size=25)):
        await wait_for(lambda: len(delivered(tmp_path)) >= 300, 30)
    records = delivered(tmp_path)
    assert len(records) == 300
    assert sorted(int(r["sequenceNumber"]) for r in records) == list(range(1, 301))
    for sym in "ABC":
        mine = [b["n"] for b in bodies(records) if b["sym"] == sym]
        assert mine == sorted(mine) and len(mine) == 100
    first = invocations(tmp_path)[0]
    assert first["event"] == {
        "eventSource": "trigger-bridge:websocket",
        "eventSourceUrl": server.url,  # no query string: it may hold a token
    }
    record = records[0]
    assert set(record) == {
        "sequenceNumber",
        "partitionKey",
        "approximateArrivalTimestamp",
        "connection",
        "frameType",
        "data",
        "isBase64Encoded",
    }
    assert record["partitionKey"] == json.loads(record["data"])["sym"]
    assert record["frameType"] == "text" and record["connection"] == 1
    assert all(
        len({r["partitionKey"] for r in call["records"]}) == 1 for call in invocations(tmp_path)
    )


async def test_headers_subprotocols_and_a_refused_handshake(
    tmp_path: Path, feed: Any, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[tuple[str | None, str | None]] = []

    async def handler(ws: ServerConnection) -> None:
        seen.append((ws.request.headers.get("Authorization"), ws.subprotocol))
        await ws.send('{"hello": 1}')
        await ws.wait_closed()

    def check(ws: ServerConnection, request: Any) -> Any:
        if request.headers.get("Authorization") != "Bearer good":
            return ws.respond(401, "who are you?\n")
        return None

    url = await feed(handler, process_request=check, subprotocols=["feed.v2"])
    source = {
        "type": "websocket",
        "url": url,
        "headers": {"Authorization": "Bearer bad"},
        "subprotocols": ["feed.v2"],
        "reconnect_initial_seconds": 0.1,
    }
    async with RunningBridge(bridge_config(tmp_path / "bad", source)):
        await wait_for(lambda: "handshake was refused: 401" in caplog.text, 10)
    assert delivered(tmp_path / "bad") == [] and seen == []
    source["headers"] = {"Authorization": "Bearer good"}
    async with RunningBridge(bridge_config(tmp_path / "good", source)):
        await wait_for(lambda: len(delivered(tmp_path / "good")) == 1, 20)
    assert seen == [("Bearer good", "feed.v2")]


async def test_a_close_is_said_and_the_feed_reconnects_with_resume(
    tmp_path: Path, feed: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The feed numbers its messages and starts after the ``from`` asked for; it closes
    the connection (1011) every 7 messages. Every message arrives once, in order, and the
    connection number says which connection brought it."""
    caplog.set_level(logging.INFO, logger="bridge")
    asked: list[str] = []

    async def handler(ws: ServerConnection) -> None:
        hello = json.loads(await ws.recv())
        asked.append(hello["from"])
        start = int(hello["from"]) + 1
        for seq in range(start, min(start + 7, 36)):
            await ws.send(json.dumps({"seq": seq}))
        if start + 7 <= 35:
            await ws.close(1011, "rotating")
        else:
            await ws.wait_closed()

    url = await feed(handler)
    source = {
        "type": "websocket",
        "url": url,
        "open_messages": ['{"op": "subscribe", "from": "{resume}"}'],
        "resume": {"field": "seq", "initial": "0"},
        "reconnect_initial_seconds": 0.05,
        "reconnect_max_seconds": 0.1,
    }
    async with RunningBridge(bridge_config(tmp_path, source, batch_size=10)):
        await wait_for(lambda: len(delivered(tmp_path)) >= 35, 30)
    async with RunningBridge(bridge_config(tmp_path, source, batch_size=10)):
        await wait_for(lambda: len(asked) == 6, 30)  # a restart resumes where it was
    records = delivered(tmp_path)
    assert [b["seq"] for b in bodies(records)] == list(range(1, 36))
    assert asked == ["0", "7", "14", "21", "28", "35"]
    assert [r["connection"] for r in records] == [1 + (n - 1) // 7 for n in range(1, 36)]
    assert "closed by the feed: code 1011 (rotating)" in caplog.text
    assert "source.unavailable" in caplog.text and "source.recovered" in caplog.text


async def test_binary_frames_are_base64_and_filters_see_json_data(
    tmp_path: Path, feed: Any
) -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send(b"\x00\xffraw")
        await ws.send(json.dumps({"kind": "trade", "n": 1}).encode())  # JSON in binary
        await ws.send(json.dumps({"kind": "quote", "n": 2}))
        await ws.send("not json")
        await ws.send(json.dumps({"kind": "trade", "n": 3}))
        await ws.wait_closed()

    url = await feed(handler)
    source = {"type": "websocket", "url": url}
    pattern = {"data": {"kind": ["trade"]}}
    config = bridge_config(
        tmp_path, source, filter_criteria={"filters": [{"pattern": json.dumps(pattern)}]}
    )
    async with RunningBridge(config):
        await wait_for(lambda: len(delivered(tmp_path)) >= 2, 20)
        await asyncio.sleep(0.5)
    records = delivered(tmp_path)
    assert [r["sequenceNumber"] for r in records] == ["2", "5"]
    assert records[0]["isBase64Encoded"] is True and records[0]["frameType"] == "binary"
    assert json.loads(base64.b64decode(records[0]["data"])) == {"kind": "trade", "n": 1}
    spool = Spool(tmp_path / "state" / "spool" / "feed")
    await spool.open()
    assert spool.acked == 5  # the filtered ones are settled too
    await spool.aclose()


async def test_a_failing_partition_holds_up_only_itself(tmp_path: Path, feed: Any) -> None:
    """Partition A's first message poisons it (retried forever) and 3,000 more of A's
    follow, each next to one of B's: B's 3,000, far more than the read-ahead, are all
    delivered meanwhile, while A's wait in the spool."""

    async def handler(ws: ServerConnection) -> None:
        await ws.send(json.dumps({"sym": "A", "poison": True}))
        for n in range(3000):
            await ws.send(json.dumps({"sym": "A", "n": n}))
            await ws.send(json.dumps({"sym": "B", "n": n}))
        await ws.wait_closed()

    url = await feed(handler)
    source = {"type": "websocket", "url": url, "partition_key": "sym"}
    async with RunningBridge(bridge_config(tmp_path, source, batch_size=10)) as bridge:
        await wait_for(
            lambda: sum(r["partitionKey"] == "B" for r in delivered(tmp_path)) >= 3000, 60
        )
        lanes = bridge.supervisor._runners["feed"]._pipeline.lanes  # type: ignore[union-attr]
        held, share = lanes.by_partition["A"].count, lanes.share()[0]
        assert 0 < held <= share < 3000  # A holds its share; the rest waits in the spool
        position = tmp_path / "state" / "spool" / "feed" / "position.json"

        def stored() -> dict[str, Any]:  # read as the bridge left it, while it runs
            return json.loads(position.read_text()) if position.exists() else {}

        # B's last commit follows its last invocation
        await wait_for(lambda: stored().get("note", {}).get("committed", {}).get("B") == 6001)
        assert stored()["acked"] == 0  # A's message is not settled: nothing may be deleted
    b = [x["n"] for x in bodies(delivered(tmp_path)) if x["sym"] == "B"]
    assert b == list(range(3000))


async def test_a_full_spool_pushes_back_on_the_feed_and_loses_nothing(
    tmp_path: Path, feed: Any
) -> None:
    """A function that does not answer: the spool (64 KiB) fills, the bridge stops
    reading, the feed's sends block (20 MB: more than the sockets' buffers hold); once
    the function answers, every message is delivered, in order."""
    (tmp_path / "block").touch()
    sent: list[int] = []
    total = 20000

    async def handler(ws: ServerConnection) -> None:
        for n in range(total):
            await ws.send(json.dumps({"n": n, "pad": "x" * 1000}))
            sent.append(n)
        await ws.wait_closed()

    url = await feed(handler, write_limit=1024)
    source = {
        "type": "websocket",
        "url": url,
        "spool": {"max_bytes": 65536},
        "heartbeat_seconds": 120,
    }
    async with RunningBridge(bridge_config(tmp_path, source, batch_size=50)):
        await asyncio.sleep(3)
        stalled = len(sent)
        cpu = time.process_time()
        await asyncio.sleep(1)
        assert len(sent) == stalled < total  # the feed is held back
        assert time.process_time() - cpu < 0.3  # and the bridge waits, it does not spin
        spool_size = sum(
            p.stat().st_size for p in (tmp_path / "state" / "spool" / "feed").glob("*.log")
        )
        assert spool_size < 65536 + 16384
        (tmp_path / "block").unlink()
        await wait_for(lambda: len(delivered(tmp_path)) >= total, 120)
    assert [b["n"] for b in bodies(delivered(tmp_path))] == list(range(total))


async def test_a_partition_that_recovers_gets_its_waiting_messages_in_order(
    tmp_path: Path, feed: Any
) -> None:
    """A fails while a file exists: B goes on, A's messages wait in the spool beyond its
    share; once A recovers they are read again from the spool, in order, none lost."""
    stop = tmp_path / "a-fails"
    stop.touch()

    async def handler(ws: ServerConnection) -> None:
        for n in range(2000):
            await ws.send(json.dumps({"sym": "A", "n": n, "fail_while": str(stop)}))
            await ws.send(json.dumps({"sym": "B", "n": n}))
        await ws.wait_closed()

    url = await feed(handler)
    source = {"type": "websocket", "url": url, "partition_key": "sym"}
    async with RunningBridge(bridge_config(tmp_path, source, batch_size=10)):
        await wait_for(
            lambda: sum(r["partitionKey"] == "B" for r in delivered(tmp_path)) >= 2000, 60
        )
        stop.unlink()
        await wait_for(lambda: len({r["sequenceNumber"] for r in delivered(tmp_path)}) >= 4000, 60)
    first_seen: dict[int, None] = {}
    for body in bodies(delivered(tmp_path)):
        if body["sym"] == "A":
            first_seen.setdefault(body["n"], None)
    assert list(first_seen) == list(range(2000))


def _bridge_process(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "bridge", "run", "--config", str(config), "--no-reload"],
            cwd=Path(__file__).resolve().parents[2],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def test_kill_9_loses_no_message_that_was_read(tmp_path: Path, feed: Any) -> None:
    """A real `bridge run` spools the feed while its function is held up, and is killed
    with SIGKILL. Every message in the spool at that moment is delivered after a restart,
    in order per partition; the feed sends nothing again (it has no replay)."""
    (tmp_path / "block").touch()
    sent: list[int] = []

    async def handler(ws: ServerConnection) -> None:
        if not sent:  # the first connection only: a feed without replay
            for n in range(3000):
                await ws.send(json.dumps({"sym": "AB"[n % 2], "n": n}))
                sent.append(n)
        await ws.wait_closed()

    url = await feed(handler)
    source = {"type": "websocket", "url": url, "partition_key": "sym"}
    config = tmp_path / "bridge.yaml"
    config.write_text(bridge_config(tmp_path, source, batch_size=50))
    first = _bridge_process(config, tmp_path / "bridge.log")
    try:
        await wait_for(lambda: len(sent) == 3000, 30)
        await asyncio.sleep(1.0)  # let the bridge read what is on its way
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    spool = Spool(tmp_path / "state" / "spool" / "feed")
    await spool.open()
    spooled = [json.loads(e.payload) for e in spool.entries(spool.acked, spool.last_seq)]
    await spool.aclose()
    assert len(spooled) == 3000  # everything sent was read (and nothing committed)
    (tmp_path / "block").unlink()
    second = _bridge_process(config, tmp_path / "bridge.log")
    try:
        await wait_for(lambda: len({r["sequenceNumber"] for r in delivered(tmp_path)}) >= 3000, 60)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
    for sym in "AB":
        first_seen: dict[int, None] = {}
        for body in bodies(delivered(tmp_path)):
            if body["sym"] == sym:
                first_seen.setdefault(body["n"], None)
        assert list(first_seen) == [b["n"] for b in spooled if b["sym"] == sym]


async def test_wss_with_a_private_authority_and_a_client_certificate(
    tmp_path: Path, feed: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """TLS as the Kafka source has it: the server's certificate checked against ca_file
    (and its name), the bridge's own certificate checked by the server."""
    ca = LocalCA(tmp_path / "ca")
    ca.ensure()
    server_tls = ca.server_context(["localhost"])
    server_tls.verify_mode = ssl.CERT_REQUIRED
    server_tls.load_verify_locations(ca.cert_path)
    client_key, client_cert = _client_certificate(ca, tmp_path)
    peers: list[Any] = []

    async def handler(ws: ServerConnection) -> None:
        peers.append(ws.transport.get_extra_info("peercert"))
        await ws.send('{"secure": true}')
        await ws.wait_closed()

    port = (await feed(handler, ssl=server_tls)).rsplit(":", 1)[1]
    tls = {"ca_file": str(ca.cert_path), "cert_file": client_cert, "key_file": client_key}
    source = {"type": "websocket", "url": f"wss://localhost:{port}/", "tls": tls}
    async with RunningBridge(bridge_config(tmp_path / "ok", source)):
        await wait_for(lambda: len(delivered(tmp_path / "ok")) == 1, 20)
    assert peers and peers[0] is not None  # the server saw the client's certificate
    # the certificate names localhost only
    wrong_name = {**source, "url": f"wss://127.0.0.1:{port}/", "reconnect_initial_seconds": 5}
    async with RunningBridge(bridge_config(tmp_path / "name", wrong_name)):
        await wait_for(lambda: "source.unavailable" in caplog.text, 10)
    assert delivered(tmp_path / "name") == []
    assert "certificate" in caplog.text.lower()
    unchecked = {**wrong_name, "tls": {**tls, "check_hostname": False}}
    async with RunningBridge(bridge_config(tmp_path / "unchecked", unchecked)):
        await wait_for(lambda: len(delivered(tmp_path / "unchecked")) == 1, 20)


def _client_certificate(ca: LocalCA, tmp: Path) -> tuple[str, str]:
    """A client certificate signed by ``ca`` (PEM files: key, certificate)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_key = serialization.load_pem_private_key(ca.key_path.read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_path.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bridge")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    key_path, cert_path = tmp / "client.key", tmp / "client.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(key_path), str(cert_path)


async def test_a_feed_that_stops_answering_pings_is_reconnected(
    tmp_path: Path, feed: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The first connection goes silent (its server stops reading: no pong); the
    heartbeat finds it and the bridge connects again."""
    connections: list[ServerConnection] = []

    async def handler(ws: ServerConnection) -> None:
        connections.append(ws)
        await ws.send(json.dumps({"connection": len(connections)}))
        if len(connections) == 1:
            ws.transport.pause_reading()  # no pong will ever come back
        await ws.wait_closed()

    url = await feed(handler)
    source = {
        "type": "websocket",
        "url": url,
        "heartbeat_seconds": 0.5,
        "reconnect_initial_seconds": 0.05,
    }
    async with RunningBridge(bridge_config(tmp_path, source)):
        await wait_for(lambda: len(delivered(tmp_path)) == 2, 20)
    assert [r["connection"] for r in delivered(tmp_path)] == [1, 2]
    assert "source.unavailable" in caplog.text


async def test_a_message_older_than_the_age_limit_is_dead_lettered_and_settled(
    tmp_path: Path, feed: Any
) -> None:
    """The spool's age bound: messages whose function could not take them within
    maximum_record_age_seconds go to the on-failure destination, and the spool moves on."""
    stop = tmp_path / "fails"
    stop.touch()

    async def handler(ws: ServerConnection) -> None:
        for n in range(5):
            await ws.send(json.dumps({"n": n, "fail_while": str(stop)}))
        await ws.wait_closed()

    url = await feed(handler)
    source = {"type": "websocket", "url": url}
    failures = tmp_path / "failures.jsonl"
    config = bridge_config(
        tmp_path,
        source,
        maximum_record_age_seconds=2,
        on_failure=f"file://{failures}",
    )
    async with RunningBridge(config):
        await wait_for(lambda: failures.exists() and failures.read_text().strip() != "", 30)
        await asyncio.sleep(0.5)
    [failure] = [json.loads(line) for line in failures.read_text().splitlines()]
    assert failure["requestContext"]["condition"] == "RecordAgeExceeded"
    info = failure["WebSocketBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"]) == ("1", "5")
    assert info["url"] == url and info["batchSize"] == 5
    spool = Spool(tmp_path / "state" / "spool" / "feed")
    await spool.open()
    assert spool.acked == 5
    await spool.aclose()


async def test_a_new_partition_key_does_not_skip_what_the_old_partitions_had_not_settled(
    tmp_path: Path, feed: Any
) -> None:
    """Run 1 partitions by ``sym``: A fails, B settles far past the spool's acknowledged
    position. Run 2 partitions by ``desk``, whose values are named like run 1's: A's
    messages must not be taken for settled by the new partition "B"."""
    stop = tmp_path / "a-fails"
    stop.touch()
    sent = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        if not sent.is_set():
            for n in range(50):
                await ws.send(
                    json.dumps({"sym": "A", "desk": "B", "n": n, "fail_while": str(stop)})
                )
                await ws.send(json.dumps({"sym": "B", "desk": "A", "n": n}))
            sent.set()
        await ws.wait_closed()

    url = await feed(handler)
    source = {"type": "websocket", "url": url, "partition_key": "sym"}
    async with RunningBridge(bridge_config(tmp_path, source, batch_size=10)):
        await wait_for(lambda: sum(r["partitionKey"] == "B" for r in delivered(tmp_path)) >= 50)
    stop.unlink()
    (tmp_path / "calls.jsonl").unlink()
    source["partition_key"] = "desk"
    async with RunningBridge(bridge_config(tmp_path, source, batch_size=10)):
        await wait_for(
            lambda: (
                {b["n"] for b in bodies(delivered(tmp_path)) if b["sym"] == "A"} == set(range(50))
            )
        )


async def test_a_full_partition_waits_for_room_without_spinning(tmp_path: Path, feed: Any) -> None:
    """One partition, a function that does not answer: the engine's read-ahead fills long
    before the spool does; the reader then waits for room, burning no CPU."""
    (tmp_path / "block").touch()

    async def handler(ws: ServerConnection) -> None:
        for n in range(20000):
            await ws.send(json.dumps({"n": n}))
        await ws.wait_closed()

    url = await feed(handler)
    source = {"type": "websocket", "url": url}
    async with RunningBridge(bridge_config(tmp_path, source, batch_size=10)):
        spool = tmp_path / "state" / "spool" / "feed"
        await wait_for(lambda: sum(p.stat().st_size for p in spool.glob("*.log")) > 500_000)
        await asyncio.sleep(1)
        cpu = time.process_time()
        await asyncio.sleep(1)
        assert time.process_time() - cpu < 0.3
        (tmp_path / "block").unlink()
        await wait_for(lambda: len(delivered(tmp_path)) >= 20000, 60)
    assert [b["n"] for b in bodies(delivered(tmp_path))] == list(range(20000))
