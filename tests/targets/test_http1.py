"""``bridge.targets._http1``: the http target's HTTP/1.1 client, against raw loopback
servers that answer byte by byte as a test scripts them (framing, keep-alive, a server
that closes, lies or stops), and against a TLS server whose certificate comes from the
bridge's own authority (``bridge.front.tls.LocalCA``)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from bridge import __version__
from bridge.front.tls import LocalCA
from bridge.targets._http1 import BodyTooLarge, Http1Error, Http1Pool

Answer = Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]  # False: close after


class _Server:
    """A raw HTTP/1.1 server: reads each request (head and Content-Length body) and lets
    ``answer`` write whatever bytes it likes."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []
        self.url = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                if not await self.answer(head + body, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def _serve(answer: Answer, tls: ssl.SSLContext | None = None) -> AsyncIterator[_Server]:
    server = _Server(answer)
    srv = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=tls)
    port = srv.sockets[0].getsockname()[1]
    server.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/hook?x=1"
    async with srv:
        yield server


def _fixed(data: bytes, *, keep: bool = True, pieces: int = 1) -> Answer:
    async def answer(request: bytes, writer: asyncio.StreamWriter) -> bool:
        step = max(1, len(data) // pieces)
        for i in range(0, len(data), step):
            writer.write(data[i : i + step])
            await writer.drain()
            if pieces > 1:
                await asyncio.sleep(0.001)
        return keep

    return answer


async def _post(pool: Http1Pool, body: bytes = b'{"a":1}', timeout: float = 5) -> tuple[int, bytes]:
    response = await pool.post(body, {"Content-Type": "application/json"}, read_timeout=timeout)
    return response.status, response.body


async def test_the_request_is_one_well_formed_post_and_connections_are_reused() -> None:
    async with _serve(_fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")) as server:
        pool = Http1Pool(server.url)
        for _ in range(5):
            assert await _post(pool) == (200, b"ok")
        pool.close()
    assert server.connections == 1  # keep-alive
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /hook?x=1 HTTP/1.1"
    port = server.url.split(":")[2].split("/")[0]
    assert f"Host: 127.0.0.1:{port}" in lines
    assert "Content-Length: 7" in lines and "Content-Type: application/json" in lines
    assert f"User-Agent: trigger-bridge/{__version__}" in lines
    assert body == b'{"a":1}'


@pytest.mark.parametrize("pieces", [1, 1000])  # all at once, and nearly byte by byte
async def test_chunked_answers_with_extensions_and_trailers(pieces: int) -> None:
    data = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n1\r\n \r\nc\r\nworld, again\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    async with _serve(_fixed(data, pieces=pieces)) as server:
        pool = Http1Pool(server.url)
        assert await _post(pool) == (200, b"hello world, again")
        assert await _post(pool) == (200, b"hello world, again")
        pool.close()
    assert server.connections == 1


async def test_a_body_up_to_the_end_of_the_connection_and_http_1_0() -> None:
    async with _serve(_fixed(b"HTTP/1.1 200 OK\r\n\r\nuntil the end", keep=False)) as server:
        pool = Http1Pool(server.url)
        assert await _post(pool) == (200, b"until the end")
        assert await _post(pool) == (200, b"until the end")
        pool.close()
    assert server.connections == 2  # not reusable
    answer = _fixed(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nold")
    async with _serve(answer) as server:
        pool = Http1Pool(server.url)
        assert await _post(pool) == (200, b"old")
        assert await _post(pool) == (200, b"old")
        pool.close()
    assert server.connections == 2  # HTTP/1.0 without keep-alive closes


async def test_connection_close_1xx_and_empty_statuses() -> None:
    data = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
    async with _serve(_fixed(data)) as server:
        pool = Http1Pool(server.url)
        assert await _post(pool) == (204, b"")
        assert await _post(pool) == (204, b"")
        pool.close()
    assert server.connections == 2  # Connection: close was heeded


async def test_statuses_headers_and_large_bodies_pass_through() -> None:
    big = bytes(range(256)) * 4096  # 1 MiB, every byte value
    answer = _fixed(
        b"HTTP/1.1 429 Too Many\r\nRetry-After: 3\r\nContent-Length: %d\r\n\r\n" % len(big) + big
    )
    async with _serve(answer) as server:
        pool = Http1Pool(server.url)
        response = await pool.post(big, {}, read_timeout=5)
        pool.close()
    assert (response.status, response.headers["retry-after"]) == (429, "3")
    assert response.body == big
    assert server.requests[0].endswith(big)


async def test_an_idle_connection_the_server_closed_is_not_reused() -> None:
    async with _serve(_fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1")) as server:
        pool = Http1Pool(server.url)
        assert await _post(pool) == (200, b"1")
        server.answer = _fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2", keep=False)
        assert await _post(pool) == (200, b"2")  # then the server closes it
        await asyncio.sleep(0.05)
        assert await _post(pool) == (200, b"2")  # a new connection, no error
        pool.close()
    assert server.connections == 2


async def test_bytes_after_an_answer_retire_its_connection() -> None:
    """Bytes past the answer's end, at once or later on an idle connection, are nobody's
    answer: the connection is not used again, and the next request gets a clean one."""

    async def late_junk(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\njunk")
        return True

    async with _serve(late_junk) as server:
        pool = Http1Pool(server.url)
        assert await _post(pool) == (200, b"1")
        await asyncio.sleep(0.15)  # the junk arrives while the connection is idle
        server.answer = _fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2x")
        assert await _post(pool) == (200, b"2")  # "x" is past the end: retired too
        server.answer = _fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n3")
        assert await _post(pool) == (200, b"3")
        pool.close()
    assert server.connections == 3


async def test_a_configured_host_or_user_agent_header_replaces_the_default() -> None:
    async with _serve(_fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")) as server:
        pool = Http1Pool(server.url)
        await pool.post(b"", {"Host": "fn.example", "user-agent": "mine/1"}, read_timeout=5)
        pool.close()
    lines = server.requests[0].decode().split("\r\n")
    assert [x for x in lines if x.lower().startswith("host:")] == ["Host: fn.example"]
    assert [x for x in lines if x.lower().startswith("user-agent:")] == ["user-agent: mine/1"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"SMTP ready\r\n\r\n", "not an HTTP/1.x response"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed response header"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: lots\r\n\r\n", "malformed Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "malformed chunk"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "closed the connection"),
        (b"", "closed the connection"),
    ],
)
async def test_broken_answers_are_errors_naming_what_is_wrong(data: bytes, message: str) -> None:
    async with _serve(_fixed(data, keep=False)) as server:
        pool = Http1Pool(server.url)
        with pytest.raises(Http1Error, match=message):
            await _post(pool)
        pool.close()


async def test_headers_without_end_are_refused_past_their_limit() -> None:
    async with _serve(_fixed(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000)) as server:
        pool = Http1Pool(server.url)
        with pytest.raises(Http1Error, match="longer than"):
            await _post(pool)
        pool.close()


def _then_hang(data: bytes) -> Answer:
    """Write ``data``, then keep the connection open and send nothing more."""

    async def answer(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(data)
        await writer.drain()
        await asyncio.sleep(30)
        return False

    return answer


@pytest.mark.parametrize(
    "data",
    [
        # refused on the head alone: the body is never waited for
        b"HTTP/1.1 200 OK\r\nContent-Length: 1001\r\n\r\n",
        # refused on a chunk's size line, before its data
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n",
        # small chunks, refused once they add up past the cap
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"64\r\n"
        + b"x" * 100
        + b"\r\n"
        + (b"64\r\n" + b"x" * 100 + b"\r\n") * 10,
        # a body up to the end of the connection, refused once it passes the cap
        b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 1001,
    ],
    ids=["content-length", "chunk-size", "chunks", "until-close"],
)
async def test_answers_over_the_body_cap_are_refused_at_once_however_framed(data: bytes) -> None:
    async with _serve(_then_hang(data)) as server:
        pool = Http1Pool(server.url)
        began = asyncio.get_running_loop().time()
        with pytest.raises(BodyTooLarge, match="over the 1000-byte limit") as caught:
            await pool.post(b"{}", {}, read_timeout=10, max_body=1000)
        assert asyncio.get_running_loop().time() - began < 2  # not the server's 30 s
        assert caught.value.size > 1000 and caught.value.limit == 1000
        assert pool._idle == []  # its connection is closed, not pooled
        pool.close()


async def test_an_answer_at_the_body_cap_passes() -> None:
    answer = _fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"y" * 1000)
    async with _serve(answer) as server:
        pool = Http1Pool(server.url)
        response = await pool.post(b"{}", {}, read_timeout=5, max_body=1000)
        assert response.body == b"y" * 1000
        pool.close()


async def test_the_read_timeout_counts_from_the_last_byte_received() -> None:
    """An answer that keeps coming (a byte every 0.1 s for 0.6 s) is not cut by a 0.3 s
    timeout; one that stops is, after 0.3 s without data, and its connection is closed."""
    async with _serve(
        _fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nslowly", pieces=6)
    ) as server:

        async def trickle(request: bytes, writer: asyncio.StreamWriter) -> bool:
            head = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n"
            writer.write(head)
            for byte in b"slowly":
                await asyncio.sleep(0.1)
                writer.write(bytes([byte]))
            return True

        server.answer = trickle
        pool = Http1Pool(server.url)
        assert await _post(pool, timeout=0.3) == (200, b"slowly")

        async def stall(request: bytes, writer: asyncio.StreamWriter) -> bool:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsl")
            await asyncio.sleep(5)
            return False

        server.answer = stall
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            await _post(pool, timeout=0.3)
        assert 0.25 < loop.time() - started < 2
        pool.close()


async def test_refused_connections_and_bad_urls() -> None:
    with pytest.raises(ValueError, match="not an http"):
        Http1Pool("ftp://host/x")
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    pool = Http1Pool(f"http://127.0.0.1:{port}/")
    with pytest.raises(Http1Error, match=f"cannot connect to 127.0.0.1:{port}"):
        await _post(pool)


async def test_a_cancelled_request_closes_its_connection() -> None:
    async def slow(request: bytes, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.5)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate")
        return True

    async with _serve(slow) as server:
        pool = Http1Pool(server.url)
        task = asyncio.create_task(_post(pool))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        server.answer = _fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nnew")
        assert await _post(pool) == (200, b"new")  # not the late answer of the first
        pool.close()
    assert server.connections == 2


async def test_https_verifies_the_server_and_keeps_its_connection(tmp_path: Path) -> None:
    ca = LocalCA(tmp_path / "ca")  # the bridge's own authority, made for the test
    ca.ensure()
    server_tls = ca.server_context(["127.0.0.1"])
    answer = _fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecret")
    async with _serve(answer, tls=server_tls) as server:
        trusting = ssl.create_default_context(cafile=str(ca.cert_path))
        pool = Http1Pool(server.url, ssl_context=trusting)
        assert await _post(pool) == (200, b"secret")
        assert await _post(pool) == (200, b"secret")
        pool.close()
        default = Http1Pool(server.url)  # the system's trust store: not this certificate
        with pytest.raises(Http1Error, match="cannot connect"):
            await _post(default)
    assert server.connections == 1  # the refused handshake never reached the server's handler
