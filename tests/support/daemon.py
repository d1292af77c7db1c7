"""A real daemon (``python -m bridge run``) in a process of its own for end-to-end tests:
starting it, reading its admin API's ``/status``, waiting until it is ready with its
workers, and an HTTP function that records every event it is sent."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bridge.admin import read_admin_file

__all__ = ["Recorder", "daemon_status", "http_recorder", "start_daemon", "wait_daemon_up"]

REPO = Path(__file__).resolve().parents[2]


class Recorder:
    """An HTTP function that keeps every event it is sent."""

    def __init__(self, delay: float = 0.0) -> None:
        self.events: list[dict[str, Any]] = []
        self.url = ""
        self.delay = delay  # seconds per invocation

    def got(self) -> list[str]:
        """The object key of every record received, in order of arrival."""
        return [r["s3"]["object"]["key"] for e in self.events for r in e.get("Records", [])]

    async def handle(self, request: web.Request) -> web.Response:
        event = await request.json()
        await asyncio.sleep(self.delay)
        self.events.append(event)
        return web.json_response({})


@contextlib.asynccontextmanager
async def http_recorder(delay: float = 0.0) -> AsyncIterator[Recorder]:
    recorder = Recorder(delay)
    app = web.Application()
    app.router.add_post("/", recorder.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    recorder.url = f"http://127.0.0.1:{port}/"
    try:
        yield recorder
    finally:
        await runner.cleanup()


def start_daemon(config: Path, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "bridge", "run", "--config", str(config), "--no-reload"]
    with log.open("ab") as out:
        return subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)


async def daemon_status(state: Path) -> dict[str, Any]:
    found = read_admin_file(state)
    assert found is not None, "no admin.json: the daemon is not up"
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{found['address']}/status") as response,
    ):
        doc: dict[str, Any] = await response.json()
        return doc


async def wait_daemon_up(state: Path, workers: int) -> dict[str, Any]:
    doc: dict[str, Any] = {}

    async def ready() -> bool:
        nonlocal doc
        if read_admin_file(state) is None:
            return False
        doc = await daemon_status(state)
        return bool(doc["ready"]) and len(doc.get("workers", {})) == workers

    deadline = time.monotonic() + 60
    while not await ready():
        assert time.monotonic() < deadline, f"the daemon never got ready: {doc}"
        await asyncio.sleep(0.2)
    return doc
