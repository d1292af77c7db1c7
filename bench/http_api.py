"""HTTP API front door (issue #15): requests/s and latency of ``GET /hello`` through the
bridge's HTTP API (payload format 2.0) to a handler that answers ``200 ok``
(``bench/functions/ok``) under awslambdaric, against the same handler called directly, all
in one run. The paths, measured one after the other in this order:

- ``floor``: a bare aiohttp server answering ``ok`` (:mod:`bench.http_floor`, a process of
  its own): one HTTP hop on this machine with the same client, nothing behind it;
- ``direct (RIE)``: the handler behind aws-lambda-rie, FUNCTION_CONCURRENCY instances (the
  emulator serves one invocation at a time, so as many instances as the runtime target
  has processes). The load generator POSTs the 2.0 event the bridge would build (built by
  the bridge's own code) to ``/2015-03-31/functions/function/invocations``, at most one in
  flight per instance; the wait for a free instance counts, as the wait for a free
  runtime process counts behind the bridge;
- ``bridge -> runtime``: the HTTP API -> the ``runtime`` target, FUNCTION_CONCURRENCY
  awslambdaric processes started by the bridge (``python -m bridge run``, a subprocess);
- ``bridge -> lambda (RIE)``: the HTTP API -> the ``lambda`` target (``emulator: true``)
  -> the same RIE instances as ``direct (RIE)``.

Load: a closed loop of ``concurrency`` clients (default 16) sharing one aiohttp
ClientSession (keep-alive) in the bench process; each sends its next request when its last
one is answered. After a warm-up, the requests answered within a fixed window (default
10 s) count: requests/s, and p50/p99 of their latency (from before the request, including
any wait for a connection or an RIE instance, to the body read). Each response is checked
(status 200, body ``ok``).

CPU in the window, from ``/proc``: the bench process (the load generator), the bridge
process alone, and what answers behind it (the floor server; RIE and its awslambdaric;
the bridge's awslambdaric children), per request; and how busy the whole machine was.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from bench._common import (
    FUNCTIONS,
    PYTHON,
    ROOT,
    BridgeProcess,
    Report,
    cpu_seconds,
    free_port,
    percentile,
    runtime_function,
    services_env,
    workdir,
)

__all__ = ["run"]

HANDLER = "ok"  # bench/functions/ok
FUNCTION_CONCURRENCY = 4  # runtime processes behind the bridge = RIE instances
WARMUP_SECONDS = 2.0
RIE_INVOKE = "/2015-03-31/functions/function/invocations"
ACCOUNT_ID = "123456789012"


# ------------------------------------------------------------------ CPU from /proc


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        out[int(stat.rpartition(")")[2].split()[1])].append(int(entry.name))
    return out


def _tree(roots: Iterable[int]) -> list[int]:
    """``roots`` and all their live descendants."""
    children = _children()
    out, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def _descendants(pid: int) -> list[int]:
    return [p for p in _tree([pid]) if p != pid]


def _cpu(pids: Iterable[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += cpu_seconds(pid)
    return total


def _machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # without guest time, which is counted in user already
    return total - idle, total


def _sample(groups: dict[str, list[int]]) -> dict[str, float]:
    sample = {name: _cpu(pids) for name, pids in groups.items()}
    sample["client"] = time.process_time()
    sample["machine busy"], sample["machine total"] = _machine_busy()
    return sample


# ------------------------------------------------------------------ the load generator


class _BadResponse(Exception):
    pass


Request = Callable[[aiohttp.ClientSession], Awaitable[None]]


async def closed_loop(
    request: Request,
    *,
    concurrency: int,
    warmup: float,
    seconds: float,
    groups: Callable[[], dict[str, list[int]]],
) -> dict[str, Any]:
    """``concurrency`` clients, each sending ``request`` as soon as its last one was
    answered, on one keep-alive session; the requests answered in the ``seconds`` after
    ``warmup`` count. ``groups`` names the processes whose CPU is measured."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    done: list[tuple[float, float, bool]] = []  # (sent, answered, ok)
    first_error: list[str] = []
    stop = False
    async with aiohttp.ClientSession(connector=connector) as session:
        await request(session)  # fails here, loudly, if the path does not work at all

        async def client() -> None:
            while not stop:
                sent = time.perf_counter()
                ok = True
                try:
                    await request(session)
                except (aiohttp.ClientError, _BadResponse, TimeoutError) as exc:
                    ok = False
                    if not first_error:
                        first_error.append(f"{type(exc).__name__}: {exc}")
                    await asyncio.sleep(0.01)
                done.append((sent, time.perf_counter(), ok))

        tasks = [asyncio.create_task(client()) for _ in range(concurrency)]
        try:
            await asyncio.sleep(warmup)
            measured = groups()
            before = _sample(measured)
            start = time.perf_counter()
            await asyncio.sleep(seconds)
            end = time.perf_counter()
            after = _sample(measured)
        finally:
            stop = True
            await asyncio.gather(*tasks, return_exceptions=True)
    window = [(s, a, ok) for s, a, ok in done if start <= a <= end]
    latencies = [(a - s) * 1000 for s, a, ok in window if ok]
    answered = len(latencies)
    per_request = max(answered, 1)
    cpu = {
        name: (after[name] - before[name]) / per_request * 1e6
        for name in before
        if not name.startswith("machine")
    }
    busy = (after["machine busy"] - before["machine busy"]) / max(
        after["machine total"] - before["machine total"], 1
    )
    return {
        "requests": answered,
        "errors": len(window) - answered,
        "first_error": first_error[0] if first_error else None,
        "seconds": end - start,
        "requests_per_s": answered / (end - start),
        "p50_ms": percentile(latencies, 0.50),
        "p90_ms": percentile(latencies, 0.90),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies, default=float("nan")),
        "mean_ms": sum(latencies) / per_request,
        "cpu_us_per_request": cpu,
        "machine_busy": busy,
    }


def _get(url: str) -> Request:
    async def get(session: aiohttp.ClientSession) -> None:
        async with session.get(url) as response:
            body = await response.read()
            if response.status != 200 or body != b"ok":
                raise _BadResponse(f"{response.status} {body[:200]!r}")

    return get


class _FairPool:
    """Free items handed out first come, first served. (An ``asyncio.Queue`` is not fair:
    a client that puts an item back and asks again at once takes it before the waiter
    that was woken for it runs, so a few clients keep the items and the others starve.)"""

    def __init__(self, items: Iterable[str]) -> None:
        self._free = deque(items)
        self._waiters: deque[asyncio.Future[str]] = deque()

    async def take(self) -> str:
        if self._free and not self._waiters:
            return self._free.popleft()
        waiter: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return await waiter

    def give_back(self, item: str) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(item)  # handed over: nobody can take it in between
                return
        self._free.append(item)


def _invoke_rie(urls: list[str], event: bytes) -> Request:
    """POST ``event`` to the RIE instances, at most one invocation in flight on each; a
    client waits its turn for a free instance (first come, first served)."""
    pool = _FairPool(url + RIE_INVOKE for url in urls)
    headers = {"Content-Type": "application/json"}

    async def invoke(session: aiohttp.ClientSession) -> None:
        url = await pool.take()
        try:
            async with session.post(url, data=event, headers=headers) as response:
                body = await response.read()
        finally:
            pool.give_back(url)
        if response.status != 200 or b'"ok"' not in body:
            raise _BadResponse(f"{response.status} {body[:200]!r}")

    return invoke


def _event(port: int) -> bytes:
    """The 2.0 event the bridge builds for this load generator's ``GET /hello``, built by
    the bridge's own code, for the direct path."""
    from bridge.events import dumps
    from bridge.front.config import api_id
    from bridge.front.http_events import ApiContext, HttpRequest, event_v2
    from bridge.front.invoke import new_request_id
    from bridge.front.routing import RouteTable

    request = HttpRequest(
        method="GET",
        raw_path="/hello",
        raw_query="",
        headers=[
            ("Host", f"127.0.0.1:{port}"),
            ("Accept", "*/*"),
            ("Accept-Encoding", "gzip, deflate"),
            ("User-Agent", f"Python/3.11 aiohttp/{aiohttp.__version__}"),
        ],
        body=b"",
        source_ip="127.0.0.1",
        protocol="HTTP/1.1",
    )
    match = RouteTable({"GET /hello": "fn"}).match("GET", "/hello")
    context = ApiContext(
        api_id=api_id("web"),
        stage="$default",
        domain_name=f"127.0.0.1:{port}",
        account_id=ACCOUNT_ID,
        stage_variables=None,
    )
    event = event_v2(request, match, context, request_id=new_request_id(), now=time.time())
    return dumps(event)


# ------------------------------------------------------------------ the servers


async def _answers(method: str, url: str, what: str, payload: Any = None) -> None:
    """Wait (60 s at most) until ``method url`` answers 200."""
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
        while True:
            try:
                response = await client.request(method, url, json=payload)
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text[:200]}"
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} did not answer in 60 s: {last}")
            await asyncio.sleep(0.1)


class _Processes:
    """Plain child processes of the bench (the floor server, RIE instances), each in a
    session of its own; TERM then KILL to the whole group at the end."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **kwargs,
            )
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            with contextlib.suppress(ProcessLookupError):  # an awslambdaric left behind
                os.killpg(proc.pid, signal.SIGKILL)


def _rie_args(binary: str, port: int) -> list[str]:
    return [
        binary,
        "--runtime-interface-emulator-address",
        f"127.0.0.1:{port}",
        "--runtime-api-address",
        f"127.0.0.1:{free_port()}",
        PYTHON,
        "-m",
        "awslambdaric",
        "app.handler",
    ]


def _rie_env(folder: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": "30",
        "AWS_LAMBDA_FUNCTION_NAME": folder.name,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "LAMBDA_TASK_ROOT": str(folder),
    }


def _config(tmp: Path, port: int, rie_urls: list[str]) -> str:
    return f"""
state_dir: {tmp}/state
shutdown_timeout_seconds: 10
functions:
{runtime_function(HANDLER, FUNCTION_CONCURRENCY)}
  rie:
    type: lambda
    function_name: function
    endpoint_url: {json.dumps(rie_urls)}
    emulator: true
    timeout: 30
apis:
  - name: web
    type: http
    host: 127.0.0.1
    port: {port}
    payload_format_version: "2.0"
    routes:
      "GET /hello": fn
      "GET /hello-rie": rie
"""


# ------------------------------------------------------------------ the scenario


def _row(path: str, result: dict[str, Any], direct: dict[str, Any] | None) -> dict[str, Any]:
    cpu = result["cpu_us_per_request"]
    row: dict[str, Any] = {
        "path": path,
        "requests/s": result["requests_per_s"],
        "p50 ms": result["p50_ms"],
        "p99 ms": result["p99_ms"],
        "ratio to direct (RIE)": (
            result["requests_per_s"] / direct["requests_per_s"] if direct else ""
        ),
        "errors": result["errors"],
        "client CPU µs/req": cpu["client"],
        "bridge CPU µs/req": cpu.get("bridge", ""),
        "behind CPU µs/req": cpu.get("behind", ""),
        "machine busy %": result["machine_busy"] * 100,
    }
    return row


async def run(
    *, quick: bool, label: str, concurrency: int = 16, seconds: float | None = None
) -> Report:
    seconds = seconds or (5.0 if quick else 10.0)
    warmup = 1.0 if quick else WARMUP_SECONDS
    rie_bin = os.environ.get("TB_RIE_BIN") or services_env("rie")["TB_RIE_BIN"]
    folder = FUNCTIONS / HANDLER
    report = Report("http-api", quick, label)
    results: dict[str, dict[str, Any]] = {}
    async with workdir("http-api") as tmp:
        floor_port, bridge_port = free_port(), free_port()
        rie_ports = [free_port() for _ in range(FUNCTION_CONCURRENCY)]
        rie_urls = [f"http://127.0.0.1:{p}" for p in rie_ports]
        event = _event(bridge_port)
        report.params = {
            "clients (closed loop, one keep-alive session)": concurrency,
            "seconds": seconds,
            "warm-up s": warmup,
            "function concurrency (runtime processes = RIE instances)": FUNCTION_CONCURRENCY,
            "payload format": "2.0",
            "2.0 event bytes": len(event),
            "bridge": "python -m bridge run (subprocess)",
        }
        procs = _Processes(tmp)
        try:
            floor = procs.start(
                "floor", [PYTHON, "-m", "bench.http_floor", "--port", str(floor_port)], cwd=ROOT
            )
            rie = [
                procs.start(
                    f"rie-{port}", _rie_args(rie_bin, port), cwd=folder, env=_rie_env(folder)
                )
                for port in rie_ports
            ]
            await _answers("GET", f"http://127.0.0.1:{floor_port}/hello", "the floor")
            for url in rie_urls:
                await _answers("POST", url + RIE_INVOKE, f"aws-lambda-rie at {url}", payload={})
            async with BridgeProcess(_config(tmp, bridge_port, rie_urls), tmp) as bridge:
                assert bridge.proc is not None
                bridge_pid = bridge.proc.pid
                base = f"http://127.0.0.1:{bridge_port}"
                try:
                    await _answers("GET", base + "/hello", "the bridge's HTTP API")
                    await _answers("GET", base + "/hello-rie", "the bridge's HTTP API -> RIE")
                except TimeoutError:
                    bridge.check_alive()
                    raise

                def rie_tree() -> list[int]:
                    return _tree(p.pid for p in rie)

                paths: list[tuple[str, Request, Callable[[], dict[str, list[int]]]]] = [
                    (
                        "floor: bare aiohttp server",
                        _get(f"http://127.0.0.1:{floor_port}/hello"),
                        lambda: {"behind": [floor.pid]},
                    ),
                    (
                        "direct (RIE): POST invocations",
                        _invoke_rie(rie_urls, event),
                        lambda: {"behind": rie_tree()},
                    ),
                    (
                        "bridge HTTP API -> runtime target",
                        _get(base + "/hello"),
                        lambda: {"bridge": [bridge_pid], "behind": _descendants(bridge_pid)},
                    ),
                    (
                        "bridge HTTP API -> lambda target (RIE)",
                        _get(base + "/hello-rie"),
                        lambda: {"bridge": [bridge_pid], "behind": rie_tree()},
                    ),
                ]
                for name, request, groups in paths:
                    results[name] = await closed_loop(
                        request,
                        concurrency=concurrency,
                        warmup=warmup,
                        seconds=seconds,
                        groups=groups,
                    )
                    bridge.check_alive()
        finally:
            procs.stop()
    direct = results["direct (RIE): POST invocations"]
    for name, result in results.items():
        report.rows.append(_row(name, result, direct))
    report.targets = [
        {
            "path": name,
            "requests": r["requests"],
            "mean ms": r["mean_ms"],
            "p90 ms": r["p90_ms"],
            "max ms": r["max_ms"],
            "p50 over direct ms": r["p50_ms"] - direct["p50_ms"],
            "first error": r["first_error"] or "",
        }
        for name, r in results.items()
    ]
    report.series = {"paths": results}
    report.notes += [
        "ratio to direct (RIE): requests/s of the path / requests/s of the handler called "
        "through aws-lambda-rie without the bridge, in this run",
        "CPU µs/req over the window: client = the bench process (the load generator); "
        "bridge = the bridge process alone; behind = what answers behind it (the floor "
        "server; RIE + its awslambdaric; the bridge's awslambdaric processes); "
        "machine busy = all CPUs, every process",
    ]
    report.write()
    return report
