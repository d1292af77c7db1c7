"""A listening port that speaks plain HTTP and TLS at once.

API Gateway's WebSocket samples post to ``https://{domainName}/{stage}/@connections/...``
while browsers and test clients connect with ``ws://``. So one port serves both: each
new connection's first byte says which (a TLS handshake starts with ``0x16``, an HTTP
request with a letter), and the connection is handed to the aiohttp server as it is, or
through TLS. Nothing is read from a connection before that: the byte is peeked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import weakref
from collections.abc import Callable

__all__ = ["Listener"]

_log = logging.getLogger(__name__)

_TLS_HANDSHAKE = 0x16
_FIRST_BYTE_TIMEOUT = 30.0  # seconds a new connection may stay silent before it is dropped
_HANDSHAKE_TIMEOUT = 10.0


class Listener:
    """Accepts connections on ``host:port`` and gives each to ``protocol_factory`` (an
    aiohttp ``web.Server``), through TLS with ``tls`` when the client starts a TLS
    handshake (``tls`` may be set after ``start()``, when the port is known). ``start()``
    binds (raises ``OSError``: a port in use...) and returns the ``host:port`` clients
    reach it at (127.0.0.1 for a wildcard host; IPv6 in brackets);
    ``aclose()`` stops accepting (connections already handed over belong to the
    server); ``abort()``, once the server has shut down, drops any connection it left
    open (a TLS peer that never answered close_notify, a keep-alive client)."""

    def __init__(
        self,
        protocol_factory: Callable[[], asyncio.Protocol],
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._factory = protocol_factory
        self._host = host
        self._port = port
        self.tls = tls
        self._sockets: list[socket.socket] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._acceptors: list[asyncio.Task[None]] = []
        self._transports: weakref.WeakSet[asyncio.Transport] = weakref.WeakSet()

    async def start(self) -> str:
        infos = await asyncio.get_running_loop().getaddrinfo(
            self._host, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, _, _, _, address = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(address)
            sock.listen(512)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sockets.append(sock)
        self._acceptors.append(asyncio.create_task(self._accept(sock)))
        host, port = str(sock.getsockname()[0]), int(sock.getsockname()[1])
        reachable = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        return f"[{reachable}]:{port}" if ":" in reachable else f"{reachable}:{port}"

    async def aclose(self) -> None:
        for task in [*self._acceptors, *self._tasks]:
            task.cancel()
        await asyncio.gather(*self._acceptors, *self._tasks, return_exceptions=True)
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()

    def abort(self) -> None:
        for transport in list(self._transports):
            transport.abort()  # also one closing: TLS waits for a close_notify up to 30 s
        self._transports.clear()

    async def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(sock)
            except OSError as exc:  # EMFILE and friends: say it, breathe, go on
                _log.warning("front door: accept failed on %s: %s", sock.getsockname(), exc)
                await asyncio.sleep(0.1)
                continue
            task = asyncio.create_task(self._hand_over(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _hand_over(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            first = await asyncio.wait_for(_peek(conn), _FIRST_BYTE_TIMEOUT)
            if not first:
                conn.close()  # closed before it said anything
                return
            use_tls = self.tls is not None and first[0] == _TLS_HANDSHAKE
            transport, _ = await loop.connect_accepted_socket(
                self._factory,
                conn,
                ssl=self.tls if use_tls else None,
                ssl_handshake_timeout=_HANDSHAKE_TIMEOUT if use_tls else None,
            )
            self._transports.add(transport)
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            _log.debug("front door: a connection was dropped before its first request: %s", exc)
            with contextlib.suppress(OSError):
                conn.close()
        except asyncio.CancelledError:
            with contextlib.suppress(OSError):
                conn.close()
            raise


async def _peek(conn: socket.socket) -> bytes:
    """The first byte waiting on ``conn``, left there; b"" if the peer closed."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            return conn.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            pass
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(conn.fileno(), _settle, ready)
        try:
            await ready
        finally:
            loop.remove_reader(conn.fileno())


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
