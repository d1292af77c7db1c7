"""The admin HTTP server of a running bridge, and the progress lines.

Endpoints (``admin: {host, port}``, 127.0.0.1:9470 by default):

``GET /healthz``                 200 while the process serves at all
``GET /readyz``                  200 when every enabled mapping runs and every API and event
                                 bus listens; 503 with the reasons (one per line) otherwise
``GET /metrics``                 Prometheus text format (see :mod:`bridge.metrics`)
``GET /status``                  JSON: each mapping's state, counts, lag, last delivery and
                                 last error; APIs and buses with their addresses
``POST /mappings/{name}/pause``  stop a mapping and keep it stopped (see
                                 ``Supervisor.pause``); ``/resume`` undoes it
``POST /reload``                 read the config file again and apply it (as an edit would)

Endpoints that change something take ``Authorization: Bearer <auth_token>`` when the
config sets ``admin.auth_token``. The server writes its address to
``<state_dir>/admin.json`` (with the process id) once it listens, so the command line
finds it, and removes the file when it stops. A port that cannot be bound is logged
(``admin.failed``) and tried again every :data:`RETRY_SECONDS`; the mappings run on
regardless. A reload that changes the ``admin`` settings restarts the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from bridge import __version__, telemetry
from bridge.config import AdminConfig, BridgeConfig
from bridge.metrics import Collector, snapshot, stats_for
from bridge.supervisor import Supervisor

__all__ = ["ADMIN_FILE", "AdminServer", "progress_loop", "read_admin_file"]

log = logging.getLogger(__name__)

ADMIN_FILE = "admin.json"
RETRY_SECONDS = 30.0

Reload = Callable[[], Awaitable[str | None]]  # None when applied, else why not


class AdminServer:
    """Serves the endpoints above for ``supervisor``; ``reload`` re-reads the config."""

    def __init__(self, supervisor: Supervisor, *, config_path: str, reload: Reload) -> None:
        self._supervisor = supervisor
        self._config_path = config_path
        self._reload = reload
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(Collector(supervisor))
        self._settings: AdminConfig | None = None
        self._state_dir: Path | None = None
        self._runner: web.AppRunner | None = None
        self._task: asyncio.Task[None] | None = None
        self.address: str | None = None  # host:port while listening

    async def apply(self, config: BridgeConfig) -> None:
        """Serve with ``config``'s admin settings (restarting if they changed)."""
        settings, state_dir = config.admin, Path(config.state_dir)
        if settings == self._settings and state_dir == self._state_dir:
            return
        await self.aclose()
        self._settings, self._state_dir = settings, state_dir
        if settings.enabled:
            self._task = asyncio.create_task(self._serve(settings), name="admin")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.address is not None and self._state_dir is not None:
            with contextlib.suppress(OSError):
                (self._state_dir / ADMIN_FILE).unlink()
        self.address = None

    async def _serve(self, settings: AdminConfig) -> None:
        app = web.Application()
        app.add_routes(
            [
                web.get("/healthz", self._healthz),
                web.get("/readyz", self._readyz),
                web.get("/metrics", self._metrics),
                web.get("/status", self._status),
                web.post("/mappings/{name}/{action:pause|resume}", self._pause_resume),
                web.post("/reload", self._reload_now),
            ]
        )
        warned = False
        while True:
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, settings.host, settings.port, reuse_address=True)
            try:
                await site.start()
            except OSError as exc:
                await runner.cleanup()
                telemetry.emit(
                    telemetry.ADMIN_FAILED,
                    address=f"{settings.host}:{settings.port}",
                    error=str(exc),
                    retry_in=RETRY_SECONDS,
                    level=logging.DEBUG if warned else logging.WARNING,
                )
                warned = True
                await asyncio.sleep(RETRY_SECONDS)
                continue
            self._runner = runner
            bound = runner.addresses
            port = int(bound[0][1]) if bound else settings.port
            host = "127.0.0.1" if settings.host in ("0.0.0.0", "", "::") else settings.host
            self.address = f"{host}:{port}"
            self._write_admin_file()
            telemetry.emit(telemetry.ADMIN_STARTED, address=self.address)
            return

    def _write_admin_file(self) -> None:
        assert self._state_dir is not None
        doc = {"address": self.address, "pid": os.getpid(), "config": self._config_path}
        path = self._state_dir / ADMIN_FILE
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(doc))
            os.replace(tmp, path)
        except OSError as exc:
            log.warning(
                "cannot write %s (the command line will not find this bridge): %s", path, exc
            )

    # ------------------------------------------------------------ handlers

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _request: web.Request) -> web.Response:
        await self._supervisor.refresh()
        problems = self._supervisor.readiness()
        if problems:
            return web.Response(status=503, text="".join(f"{p}\n" for p in problems))
        return web.Response(text="ready\n")

    async def _metrics(self, _request: web.Request) -> web.Response:
        await self._supervisor.refresh()
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _status(self, _request: web.Request) -> web.Response:
        await self._supervisor.refresh()
        return web.json_response(self.status_document(), dumps=_dumps)

    def status_document(self) -> dict[str, Any]:
        problems = self._supervisor.readiness()
        return {
            "version": __version__,
            "pid": os.getpid(),
            "config": self._config_path,
            "ready": not problems,
            "problems": problems,
            "mappings": snapshot(self._supervisor.mapping_views()),
            "apis": self._supervisor.apis,
            "event_buses": self._supervisor.buses,
            "workers": self._supervisor.worker_pids,
        }

    def _authorized(self, request: web.Request) -> bool:
        token = self._settings.auth_token if self._settings else None
        return token is None or request.headers.get("Authorization") == f"Bearer {token}"

    async def _pause_resume(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response(
                {"error": "a valid Authorization: Bearer token is required"}, status=401
            )
        name, action = request.match_info["name"], request.match_info["action"]
        change = self._supervisor.pause if action == "pause" else self._supervisor.resume
        try:
            changed = await change(name)
        except KeyError:
            known = [v.name for v in self._supervisor.mapping_views()]
            return web.json_response(
                {"error": f"no mapping named {name!r}", "mappings": known}, status=404
            )
        except OSError as exc:
            return web.json_response({"error": f"cannot keep the state: {exc}"}, status=500)
        return web.json_response({"mapping": name, "action": action, "changed": changed})

    async def _reload_now(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response(
                {"error": "a valid Authorization: Bearer token is required"}, status=401
            )
        telemetry.emit(telemetry.CONFIG_RELOAD_ASKED, via="admin")
        error = await self._reload()
        if error is not None:
            return web.json_response({"applied": False, "error": error}, status=409)
        return web.json_response({"applied": True})


def _dumps(doc: Any) -> str:
    return json.dumps(doc, default=str)


def read_admin_file(state_dir: str | Path) -> dict[str, Any] | None:
    """The running bridge's ``admin.json`` in ``state_dir``; None when there is none or
    the process that wrote it is gone."""
    path = Path(state_dir) / ADMIN_FILE
    try:
        doc = json.loads(path.read_text())
        pid = int(doc["pid"])
        address = str(doc["address"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    return {"address": address, "pid": pid}


async def progress_loop(supervisor: Supervisor, interval: Callable[[], float]) -> None:
    """Every ``interval()`` seconds (0: check again later), one ``mapping.progress`` INFO
    line per mapping that has a backlog (records in flight, offset lag or pending
    changes): records delivered per second since the last line, in flight, lag."""
    last: dict[str, tuple[float, int]] = {}
    while True:
        seconds = interval()
        await asyncio.sleep(seconds or 5.0)
        if not seconds:
            continue
        await supervisor.refresh()
        now = time.monotonic()
        for view in supervisor.mapping_views():
            stats = stats_for(view.name)
            before = last.get(view.name)
            last[view.name] = (now, stats.delivered)
            lag = sum(view.offset_lag.values()) if view.offset_lag else None
            backlog = view.in_flight or lag or view.pending
            if not backlog or view.state != "running":
                continue
            rate = (
                (stats.delivered - before[1]) / (now - before[0])
                if before and now > before[0]
                else 0.0
            )
            fields: dict[str, Any] = {
                "mapping": view.name,
                "records_per_second": round(rate, 1),
                "in_flight": view.in_flight,
            }
            if lag is not None:
                fields["offset_lag"] = lag
            if view.pending is not None:
                fields["pending"] = view.pending
            if stats.iterator_age is not None:
                fields["iterator_age_seconds"] = round(stats.iterator_age, 1)
            telemetry.emit(telemetry.MAPPING_PROGRESS, level=logging.INFO, **fields)
