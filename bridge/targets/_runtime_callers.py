"""Who may use the Runtime API the bridge serves.

The Runtime API has no authentication of its own: whoever long-polls
``/invocation/next`` gets the event. So every connection is admitted or refused once, by
a :class:`Gate`, before any of its requests is served:

- :class:`WorkerGate` guards the endpoint of one function process the bridge runs. It
  admits a connection only if the kernel says a process of that worker's session (the
  process and what it started) holds its client socket. There is nothing to guess or
  leak: another process, even of the same user, is refused.
- :class:`SharedGate` guards the address served when the bridge runs no processes (the
  user runs the runtime). A connection is admitted if its requests carry the target's
  key (``AWS_LAMBDA_RUNTIME_API=host:port/<key>``; 128 random bits, written to a file
  only the owner can read), or, unless ``require_key``, if the kernel says the client
  socket belongs to a local process of the bridge's own user, which could read that file
  anyway. That keeps ``host:port`` working for runtime clients that cannot carry a path
  (awslambdaric reports init errors with ``http.client``, which can't).

"The kernel says" is Linux's ``/proc/net/tcp`` and ``/proc/net/tcp6`` (each socket's
addresses, owner uid and inode) and ``/proc/<pid>/fd`` (the sockets a process holds). Where
they are missing (not Linux) callers cannot be told apart: see :func:`callers_known`.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import os
import secrets
import sys
import time
import weakref
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

__all__ = ["Gate", "SharedGate", "WorkerGate", "callers_known", "new_key"]

_log = logging.getLogger(__name__)

_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
_REFUSAL_LOG_EVERY = 60.0  # seconds: refusals are logged once, then at most this often

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def callers_known() -> bool:
    """Whether this system tells which process is at the other end of a connection."""
    return os.path.exists(_TABLES[0])


def new_key() -> str:
    """A key for a shared address: 128 random bits, URL-safe."""
    return secrets.token_urlsafe(16)


@dataclass(frozen=True)
class _Socket:
    uid: int
    inode: int


class _WorkerLike(Protocol):
    @property
    def pid(self) -> int | None: ...


class Gate:
    """Admits or refuses connections to one endpoint; each connection is judged once."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._admitted: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()
        self._refusals = 0
        self._logged_at = -_REFUSAL_LOG_EVERY

    async def admits(self, request: web.Request) -> bool:
        transport = request.transport
        if transport is None:
            return False
        if transport in self._admitted:
            return True
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        admitted = await self._judge(request, peer, local)
        if admitted:
            self._admitted.add(transport)
        else:
            self._refused(peer)
        return admitted

    async def _judge(self, request: web.Request, peer: object, local: object) -> bool:
        raise NotImplementedError

    def _refused(self, peer: object) -> None:
        self._refusals += 1
        now = time.monotonic()
        if now - self._logged_at >= _REFUSAL_LOG_EVERY:
            self._logged_at = now
            _log.warning(
                "runtime.caller_refused %s peer=%s refused=%d (a process that may not "
                "take this function's invocations)",
                self._what,
                _show(peer),
                self._refusals,
            )


class WorkerGate(Gate):
    """Admits only connections made by a process of ``worker``'s session."""

    def __init__(self, what: str, worker: _WorkerLike) -> None:
        super().__init__(what)
        self._worker = worker

    async def _judge(self, request: web.Request, peer: object, local: object) -> bool:
        if not callers_known():
            return True  # told once at start (see callers_known)
        pid = self._worker.pid
        if pid is None:
            return False
        return await asyncio.to_thread(_held_by_session, peer, local, pid)


class SharedGate(Gate):
    """Admits connections that carry ``key`` in their path, and unless ``require_key``
    those of local processes of the bridge's own user."""

    def __init__(self, what: str, key: str, *, require_key: bool) -> None:
        super().__init__(what)
        self.key = key
        self._require_key = require_key

    async def admits(self, request: web.Request) -> bool:
        if self.carries_key(request.path):
            return True  # judged per request: a connection may mix keyed and bare paths
        return await super().admits(request)

    def carries_key(self, path: str) -> bool:
        segment = path[1:].partition("/")[0]
        return hmac.compare_digest(segment.encode(), self.key.encode())

    async def _judge(self, request: web.Request, peer: object, local: object) -> bool:
        if self._require_key or not callers_known():
            return False
        socket = await asyncio.to_thread(_client_socket, peer, local)
        return socket is not None and socket.uid in (os.getuid(), 0)


def _held_by_session(peer: object, local: object, session: int) -> bool:
    """(Blocking.) Whether a process of ``session`` holds the client end of the connection
    ``peer`` -> ``local``."""
    socket = _client_socket(peer, local)
    if socket is None:
        return False  # not a local process (another host or network namespace)
    link = f"socket:[{socket.inode}]"
    for pid in _session_members(session):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == link:
                    return True
            except OSError:
                continue
    return False


def _session_members(session: int) -> list[int]:
    """The pids of session ``session``, its leader first (almost always the one)."""
    members = [session]
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == session:
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()  # after "pid (comm) "
        if len(fields) > 3 and fields[3] == str(session).encode():  # state ppid pgrp session
            members.append(int(name))
    return members


def _client_socket(peer: object, local: object) -> _Socket | None:
    """(Blocking.) The socket at the client end of the connection ``peer`` -> ``local`` if
    a process of this host (this network namespace) holds it."""
    try:
        want_peer = (_address(peer[0]), peer[1])  # type: ignore[index]
        want_local = (_address(local[0]), local[1])  # type: ignore[index]
    except (TypeError, IndexError, ValueError):
        return None  # a Unix socket or something else without an IP address
    for table in _TABLES:
        try:
            f = open(table)  # noqa: SIM115 - closed below; missing tables are skipped
        except OSError:
            continue
        with f:
            next(f, None)
            for line in f:
                fields = line.split()
                if len(fields) < 10:
                    continue
                mine, theirs = fields[1], fields[2]
                if int(mine[-4:], 16) != want_peer[1] or int(theirs[-4:], 16) != want_local[1]:
                    continue
                if _from_hex(mine[:-5]) == want_peer[0] and _from_hex(theirs[:-5]) == want_local[0]:
                    return _Socket(uid=int(fields[7]), inode=int(fields[9]))
    return None


def _address(text: str) -> Address:
    address = ipaddress.ip_address(text.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _from_hex(text: str) -> Address:
    """An address as the kernel prints it in /proc/net/tcp*: 32-bit words in host order."""
    raw = bytes.fromhex(text)
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(raw)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _show(peer: object) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = peer[0], peer[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(peer)
