"""A small HTTP/1.1 client for the ``http`` target: POST a body, read the whole answer.

Why not aiohttp: the target posts one small body and reads one small answer per
invocation, and aiohttp's general machinery (request and response objects, payload
registry, stream readers, helpers per request) was about half of the bridge's CPU per
unbatched invocation (docs/benchmarks.md). This client writes each request with one
``transport.write`` and parses the answer in the protocol's ``data_received``.

What it does, and what it does not:

- ``http://`` and ``https://`` (TLS with the system's trust store, or a given
  ``ssl.SSLContext``); no proxies, no redirects (a 3xx is an answer), no compression
  (it sends no ``Accept-Encoding``), no ``Expect: 100-continue`` (a ``1xx`` answer is
  skipped all the same).
- Answers framed by ``Content-Length``, by ``Transfer-Encoding: chunked`` (trailers are
  read and dropped), or by the end of the connection; ``204``, ``304`` and ``1xx`` have no
  body.
- Keep-alive: a connection goes back to the pool after a complete answer unless either
  side said ``Connection: close`` (or the server spoke HTTP/1.0 without keep-alive, or
  the body ran to the end of the connection). A connection the server closed while idle
  is dropped before it is reused. Nothing is sent twice: a request that fails on a
  connection is an error for the caller (the engine's retry policy decides), never
  retried here, since the function may have run.
- Timeouts: ``connect_timeout`` to connect (and for TLS, to shake hands), then
  ``read_timeout`` without any byte of the answer: a slow answer that keeps sending is
  not cut, one that stops is.
- Answers are held in memory whole, so their bodies are capped at ``max_body`` bytes
  (``post``'s argument): a longer one fails with ``BodyTooLarge`` as soon as its
  ``Content-Length`` or its bytes pass the cap, and its connection is closed.
- Errors are ``Http1Error`` (an ``OSError``): refused or lost connections, malformed
  answers, ``BodyTooLarge``; timeouts are ``TimeoutError``.

``Http1Pool`` does not limit concurrency itself: the target's semaphore does. It keeps at
most ``max_idle`` idle connections.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

from bridge import __version__

__all__ = ["BodyTooLarge", "Http1Error", "Http1Pool", "Response"]

MAX_HEAD = 64 * 1024  # status line and headers
USER_AGENT = f"User-Agent: trigger-bridge/{__version__}"  # unless the caller sends one
NO_BODY = frozenset({204, 304})


class Http1Error(OSError):
    """The request failed: no connection, a lost connection or a malformed answer."""


class BodyTooLarge(Http1Error):
    """The answer's body is longer than the caller's cap (``size``: what was known of it
    when it was refused, ``limit``: the cap; ``status`` and ``headers``: the answer's)."""

    def __init__(self, size: int, limit: int, status: int, headers: dict[str, str]) -> None:
        super().__init__(f"response body of {size} bytes or more, over the {limit}-byte limit")
        self.size, self.limit, self.status, self.headers = size, limit, status, headers


class Response:
    """A complete answer: status, headers (names in lower case; the last of repeated
    names) and body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body


class _Connection(asyncio.Protocol):
    """One connection, one request at a time: ``send`` writes it, ``answer`` is the
    future of its response."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.answer: asyncio.Future[Response] | None = None
        self.reusable = False
        self._buf = bytearray()
        self._last_data = 0.0
        self._timeout = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._max_body: int | None = None
        self._reset()

    def _reset(self) -> None:
        self._status = 0
        self._headers: dict[str, str] = {}
        self._length: int | None = None  # body bytes still expected (Content-Length)
        self._chunked = False
        self._chunk_left = -1  # -1: at a chunk's size line; -2: at trailers
        self._to_close = False  # the body runs to the end of the connection
        self._body = bytearray()
        self._in_body = False

    # ------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        answer = self.answer
        if answer is None or answer.done():
            return
        if self._to_close and self._in_body and exc is None:
            self._finish(keep=False)  # the body ran to the end of the connection
            return
        why = f": {exc}" if exc else ""
        answer.set_exception(Http1Error(f"the server closed the connection{why}"))

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost decides what it means

    def data_received(self, data: bytes) -> None:
        self._last_data = self.loop.time()
        if self.answer is None or self.answer.done():
            self.reusable = False  # bytes nobody asked for: the connection is done
            self.close()
            return
        self._buf += data
        try:
            self._parse()
        except Http1Error as exc:
            self.answer.set_exception(exc)
            self.close()

    # ------------------------------------------------------------ use

    def send(
        self, head: bytes, body: bytes, timeout: float, max_body: int | None = None
    ) -> asyncio.Future[Response]:
        """Write the request; the answer's future fails with TimeoutError once ``timeout``
        seconds passed without a byte of it, and with BodyTooLarge once its body is known
        to be longer than ``max_body``."""
        assert self.transport is not None
        self._reset()
        self._max_body = max_body
        self._buf.clear()
        self.reusable = False
        self.answer = self.loop.create_future()
        self._last_data = self.loop.time()
        self._timeout = timeout
        self._timer = self.loop.call_later(timeout, self._check_timeout)
        if len(body) < 65536:
            self.transport.write(head + body)
        else:  # no copy of a large body
            self.transport.writelines([head, body])
        return self.answer

    def _check_timeout(self) -> None:
        answer = self.answer
        if answer is None or answer.done():
            return
        quiet = self.loop.time() - self._last_data
        if quiet >= self._timeout:
            answer.set_exception(TimeoutError(f"no answer for {self._timeout:g}s"))
            self.close()
        else:
            self._timer = self.loop.call_later(self._timeout - quiet, self._check_timeout)

    def transport_closing(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def close(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None:
            self.transport.close()

    # ------------------------------------------------------------ parsing

    def _parse(self) -> None:
        while self.answer is not None and not self.answer.done():
            if not self._in_body:
                end = self._buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self._buf) > MAX_HEAD:
                        raise Http1Error(f"response headers longer than {MAX_HEAD} bytes")
                    return
                head = bytes(self._buf[:end]).decode("latin-1")
                del self._buf[: end + 4]
                if self._head(head):
                    continue  # a 1xx: the real answer follows
                self._in_body = True
                if self._status in NO_BODY or self._length == 0:
                    self._finish(keep=True)
                    return
            if not self._read_body():
                return

    def _head(self, head: str) -> bool:
        """Parse a status line and headers; True for an informational (1xx) answer."""
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise Http1Error(f"not an HTTP/1.x response: {lines[0][:100]!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise Http1Error(f"malformed response header: {line[:100]!r}")
            headers[name.strip().lower()] = value.strip()
        if 100 <= status < 200:
            return True
        self._status, self._headers = status, headers
        connection = headers.get("connection", "").lower()
        keep = "close" not in connection and (parts[0] != "HTTP/1.0" or "keep-alive" in connection)
        self.reusable = keep
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._chunked = True
        elif "content-length" in headers:
            text = headers["content-length"]
            if not text.isdigit():
                raise Http1Error(f"malformed Content-Length: {text[:50]!r}")
            self._length = int(text)
            if self._max_body is not None and self._length > self._max_body:
                raise BodyTooLarge(self._length, self._max_body, status, headers)
        elif status not in NO_BODY:
            self._to_close = True
            self.reusable = False
        return False

    def _read_body(self) -> bool:
        """Take what the buffer holds of the body; True once the answer is complete."""
        buf = self._buf
        if self._length is not None:
            take = min(self._length, len(buf))
            self._body += buf[:take]
            del buf[:take]
            self._length -= take
            if self._length:
                return False
            self._finish(keep=True)
            return True
        if self._to_close:
            self._body += buf
            buf.clear()
            self._check_size()
            return False
        while True:  # chunked
            if self._chunk_left == -1:
                end = buf.find(b"\r\n")
                if end < 0:
                    return False
                size_text = bytes(buf[:end]).split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise Http1Error(f"malformed chunk size: {size_text[:20]!r}") from None
                del buf[: end + 2]
                if self._max_body is not None and len(self._body) + size > self._max_body:
                    raise self._too_large(len(self._body) + size)
                self._chunk_left = size if size else -2
            elif self._chunk_left == -2:  # trailers, up to an empty line
                end = buf.find(b"\r\n")
                if end < 0:
                    return False
                del buf[: end + 2]
                if end == 0:
                    self._finish(keep=True)
                    return True
            else:
                if len(buf) < self._chunk_left + 2:
                    return False
                self._body += buf[: self._chunk_left]
                self._check_size()
                if buf[self._chunk_left : self._chunk_left + 2] != b"\r\n":
                    raise Http1Error("malformed chunk: no CRLF after its data")
                del buf[: self._chunk_left + 2]
                self._chunk_left = -1

    def _check_size(self) -> None:
        if self._max_body is not None and len(self._body) > self._max_body:
            raise self._too_large(len(self._body))

    def _too_large(self, size: int) -> BodyTooLarge:
        assert self._max_body is not None
        return BodyTooLarge(size, self._max_body, self._status, self._headers)

    def _finish(self, *, keep: bool) -> None:
        answer = self.answer
        assert answer is not None
        self.reusable = self.reusable and keep and not self._buf and not self.closed
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        answer.set_result(Response(self._status, self._headers, bytes(self._body)))


class Http1Pool:
    """Connections to one origin (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        max_idle: int = 10,
        connect_timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        default_port = self.port == (443 if self.tls else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._authority = host if default_port else f"{host}:{self.port}"
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._ssl = (ssl_context or ssl.create_default_context()) if self.tls else None
        self.max_idle = max_idle
        self.connect_timeout = connect_timeout
        self._idle: list[_Connection] = []

    def head(self, headers: Mapping[str, str], length: int) -> bytes:
        """The request line and headers of a POST of ``length`` bytes."""
        lines = [f"POST {self.target} HTTP/1.1"]
        names = {k.lower() for k in headers}
        if "host" not in names:
            lines.append(f"Host: {self._authority}")
        if "user-agent" not in names:
            lines.append(USER_AGENT)
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines += [f"Content-Length: {length}", "", ""]
        return "\r\n".join(lines).encode("latin-1")

    async def post(
        self,
        body: bytes,
        headers: Mapping[str, str],
        *,
        read_timeout: float,
        max_body: int | None = None,
    ) -> Response:
        """POST ``body``; the complete answer, whatever its status, its body no longer
        than ``max_body`` bytes (else BodyTooLarge)."""
        conn = await self._connection()
        answer = conn.send(self.head(headers, len(body)), body, read_timeout, max_body)
        try:
            response = await answer
        except BaseException:
            conn.close()  # cancelled or failed: its state is unknown
            raise
        if conn.reusable and len(self._idle) < self.max_idle:
            conn.answer = None
            self._idle.append(conn)
        else:
            conn.close()
        return response

    async def _connection(self) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if conn.reusable and not conn.closed and not conn.transport_closing():
                return conn
            conn.close()
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(loop),
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self.tls else None,
                ),
                self.connect_timeout,
            )
        except TimeoutError:
            raise TimeoutError(
                f"connecting to {self.host}:{self.port} took over {self.connect_timeout:g}s"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            raise Http1Error(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        return conn

    def close(self) -> None:
        """Close the idle connections (those in use close when their request ends)."""
        for conn in self._idle:
            conn.close()
        self._idle.clear()
