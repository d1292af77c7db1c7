"""The daemon's worker processes: started, told what to run, watched, restarted.

:class:`WorkerPool` keeps one :class:`Worker` per worker index of the placement
(:mod:`bridge.placement`). Each runs ``python -m bridge.worker`` (:mod:`bridge.worker`)
and is told, on every start and every reload, which configuration to run. A worker that
dies (a crash, ``kill -9``, the OOM killer) is started again with backoff (1 s doubling
to 60 s, reset after a minute of health) and its mappings resume from their checkpoints
(at-least-once: what it had in flight is delivered again); the other workers and the
daemon go on meanwhile, so one mapping's crash or CPU stalls only the mappings of its
own worker. A worker that does not apply a configuration within
``shutdown_timeout_seconds`` + 10 s (applying drains what changed) is hung: it is killed,
and started again with that configuration.

What the workers report (their mappings' views and totals) is asked for by
:meth:`WorkerPool.refresh` when someone looks (``/metrics``, ``/status``, the progress
lines): nothing is sent while nobody asks. Totals only grow: a worker's counts for a
mapping are kept when the mapping moves to another worker, and a dead worker's last
reported counts are carried over to its next life (counts of its last moments, after
the last report, are lost with it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
import time
from dataclasses import replace
from typing import Any

from bridge.config import BridgeConfig
from bridge.logs import JsonFormatter
from bridge.metrics import MappingStats, MappingView, publish
from bridge.placement import Placement
from bridge.worker import read_frame, write_frame

__all__ = ["Worker", "WorkerPool"]

log = logging.getLogger(__name__)

MAX_RESTART_DELAY = 60.0
APPLY_GRACE = 10.0  # seconds beyond shutdown_timeout_seconds a worker may take to apply
REPORT_TIMEOUT = 2.0  # a worker that does not answer ``views`` in this time shows its last
_RANK = {"failed": 0, "restarting": 1, "starting": 2, "stopped": 3, "standby": 4, "running": 5}


class Worker:
    """One worker process, kept running with ``config`` until :meth:`stop`."""

    def __init__(self, index: int, config: BridgeConfig, members: dict[str, int]) -> None:
        self.index = index
        self.config = config
        self.members = members  # which member of each parallel mapping it runs
        self.state = "starting"  # running, restarting (after it died), failed (apply)
        self.error: str | None = None
        self.error_at: float | None = None
        self.pid: int | None = None
        self.views: list[MappingView] = []
        self.stats: dict[str, MappingStats] = {}  # this life's totals, as last reported
        self.carried: dict[str, MappingStats] = {}  # totals of its earlier lives
        self._writer: asyncio.StreamWriter | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = 0
        self._up = asyncio.Event()  # set while a process is there and was told its config
        self._closing = False
        self._task = asyncio.create_task(self._run(), name=f"worker:{index}")

    # ------------------------------------------------------------ requests

    async def apply(self, config: BridgeConfig, members: dict[str, int] | None = None) -> None:
        """Run ``config`` (now, or when the process is next started)."""
        self.config = config
        self.members = self.members if members is None else members
        if self._up.is_set():
            await self._apply()

    async def refresh(self) -> None:
        """Ask for the views and totals (keep the last ones when it does not answer)."""
        if not self._up.is_set():
            return
        try:
            answer = await self._request({"op": "views"}, timeout=REPORT_TIMEOUT)
        except (TimeoutError, ConnectionError):
            return
        self._take_report(answer)

    async def stop(self, timeout: float) -> None:
        """Drain and end the process (killed after ``timeout`` seconds)."""
        self._closing = True
        if self._up.is_set():
            with contextlib.suppress(TimeoutError, ConnectionError):
                self._take_report(await self._request({"op": "stop"}, timeout=timeout))
            with contextlib.suppress(TimeoutError):  # it exits once it answered
                await asyncio.wait_for(asyncio.shield(self._task), 5.0)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def totals(self) -> dict[str, MappingStats]:
        """Every mapping's totals in this worker, over all its lives."""
        out: dict[str, MappingStats] = {}
        for part in (self.carried, self.stats):
            for name, stats in part.items():
                out.setdefault(name, MappingStats()).add(stats)
        return out

    # ------------------------------------------------------------ the process

    async def _run(self) -> None:
        delay = 1.0
        while not self._closing:
            started = time.monotonic()
            try:
                code = await self._life()
            except Exception as exc:  # cannot start it: said, and tried again
                self._died(f"worker {self.index} cannot start: {exc}")
            else:
                if self._closing:
                    return
                self._died(f"worker {self.index} exited with code {code}")
            if time.monotonic() - started > MAX_RESTART_DELAY:
                delay = 1.0
            log.error("%s; restarting it in %.0f s", self.error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RESTART_DELAY)

    async def _life(self) -> int | None:
        """Start the process, tell it its config, serve its answers until it ends."""
        ours, theirs = socket.socketpair()
        root = logging.getLogger()
        json_logs = any(isinstance(h.formatter, JsonFormatter) for h in root.handlers)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bridge.worker",
                str(theirs.fileno()),
                str(self.index),
                str(root.level),
                "json" if json_logs else "text",
                pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        self.pid, self._process = process.pid, process
        reader, self._writer = await asyncio.open_connection(sock=ours)
        answers = asyncio.create_task(self._answers(reader))
        try:
            self._up.set()
            await self._apply()
            await answers  # until the process closes its end: it exited
            return await process.wait()
        finally:
            self._up.clear()
            answers.cancel()
            self._fail_pending()
            self._writer.close()
            if process.returncode is None:  # cancelled (stop timed out): no orphans
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()

    async def _apply(self) -> None:
        message = {"op": "apply", "config": self.config, "members": self.members}
        # applying may drain mappings, which takes up to shutdown_timeout_seconds
        limit = self.config.shutdown_timeout_seconds + APPLY_GRACE
        try:
            answer = await self._request(message, timeout=limit)
        except ConnectionError:
            return  # it died meanwhile: the next life applies it
        except TimeoutError:  # hung: killed, and its next life applies the config
            log.error(
                "worker %d did not apply its configuration in %.0f s: killing it", self.index, limit
            )
            if self._process is not None and self._process.returncode is None:
                self._process.kill()
            return
        if answer.get("error"):
            self.state, self.error = "failed", f"worker {self.index}: {answer['error']}"
            self.error_at = time.time()
        else:
            self.state = "running"
        await self.refresh()

    async def _answers(self, reader: asyncio.StreamReader) -> None:
        while (message := await read_frame(reader)) is not None:
            future = self._pending.pop(message.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(message)
        self._fail_pending()  # the process is gone: nobody will answer

    def _fail_pending(self) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError(f"worker {self.index} is gone"))
        self._pending.clear()

    async def _request(self, message: dict[str, Any], *, timeout: float | None) -> dict[str, Any]:
        if self._writer is None or not self._up.is_set():
            raise ConnectionError(f"worker {self.index} is not running")
        self._ids += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        request_id = self._ids
        self._pending[request_id] = future
        write_frame(self._writer, {**message, "id": request_id})
        try:
            async with asyncio.timeout(timeout):
                return await future
        finally:
            self._pending.pop(request_id, None)  # answered, given up on, or cancelled

    def _take_report(self, answer: dict[str, Any]) -> None:
        if "views" in answer:
            self.views = list(answer["views"])
            self.stats = dict(answer["stats"])

    def _died(self, error: str) -> None:
        for name, stats in self.stats.items():
            self.carried.setdefault(name, MappingStats()).add(stats)
        self.stats = {}
        self.views = []
        self.pid = None
        self.state, self.error, self.error_at = "restarting", error, time.time()


class WorkerPool:
    """The worker processes of a placement; see the module's docstring."""

    def __init__(self) -> None:
        self._workers: dict[int, Worker] = {}
        self._placement = Placement()
        self._retired: dict[str, MappingStats] = {}  # totals of workers no longer needed

    @property
    def pids(self) -> dict[int, int | None]:
        return {i: w.pid for i, w in sorted(self._workers.items())}

    async def apply(self, config: BridgeConfig, placement: Placement, *, timeout: float) -> None:
        """Make the workers run ``placement``'s share of ``config``. A mapping that moves
        is stopped where it ran (drained) before it starts where it goes, so it is never
        read by two processes at once."""
        old = self._placement
        self._placement = placement
        for index, worker in list(self._workers.items()):
            if index >= placement.workers:
                await self._retire(index, timeout)
                continue
            staying = set(old.of_worker(index)) & set(placement.of_worker(index))
            if staying != set(old.of_worker(index)):  # something leaves: stop it first
                mine = worker.config.mappings
                await worker.apply(
                    worker.config.model_copy(
                        update={"mappings": [m for m in mine if m.name in staying]}
                    )
                )
        for index in range(placement.workers):
            wanted = placement.worker_config(index, config)
            members = placement.members_of(index)
            current = self._workers.get(index)
            if current is None:
                self._workers[index] = Worker(index, wanted, members)
            elif wanted != current.config or members != current.members:
                await current.apply(wanted, members)

    async def reapply(self, mapping: str) -> None:
        """Have the workers running ``mapping`` apply their config again (it was paused
        or resumed: they read ``paused.json`` anew)."""
        hosts = self._placement.hosts.get(mapping, [])
        await asyncio.gather(*(w.apply(w.config) for i, w in self._workers.items() if i in hosts))

    async def refresh(self) -> None:
        """Ask every worker for its views and totals; publish the totals."""
        await asyncio.gather(*(w.refresh() for w in self._workers.values()))
        totals: dict[str, MappingStats] = {}
        for part in [self._retired, *(w.totals() for w in self._workers.values())]:
            for name, stats in part.items():
                totals.setdefault(name, MappingStats()).add(stats)
        for name in self._placement.hosts:
            if not self._placement.in_daemon(name):
                publish(name, totals.get(name, MappingStats()))

    def view(self, base: MappingView) -> MappingView:
        """The view of mapping ``base.name`` that its workers give (members merged):
        the least healthy member's state, in flight and pending added up, lag joined."""
        members = []
        for index in self._placement.hosts.get(base.name, []):
            worker = self._workers.get(index)
            if worker is None:
                continue
            found = next((v for v in worker.views if v.name == base.name), None)
            if found is None or worker.state != "running":
                state = worker.state if worker.state != "running" else "starting"
                found = replace(base, state=state, error=worker.error, error_at=worker.error_at)
            members.append(found)
        if not members:
            return replace(base, state="starting")
        worst = min(members, key=lambda v: _RANK.get(v.state, 0))
        errors = [v for v in members if v.error is not None]
        last = max(errors, key=lambda v: v.error_at or 0.0) if errors else None
        ages = [v.oldest_age for v in members if v.oldest_age is not None]
        pending = [v.pending for v in members if v.pending is not None]
        lag: dict[str, int] = {}
        for v in members:
            lag.update(v.offset_lag)
        return replace(
            base,
            state=worst.state,
            in_flight=sum(v.in_flight for v in members),
            oldest_age=max(ages) if ages else None,
            offset_lag=lag,
            pending=sum(pending) if pending else None,
            error=last.error if last else None,
            error_at=last.error_at if last else None,
        )

    async def aclose(self, timeout: float) -> None:
        await asyncio.gather(*(self._retire(i, timeout) for i in list(self._workers)))

    async def _retire(self, index: int, timeout: float) -> None:
        worker = self._workers.pop(index)
        await worker.stop(timeout)
        for name, stats in worker.totals().items():
            self._retired.setdefault(name, MappingStats()).add(stats)
