"""What every scenario shares: the real test services, Kafka helpers, the minimal function
endpoint process, the bridge process (``python -m bridge run``, as in production, with its
RSS sampled from /proc), the two ceilings (bare consumer, bare HTTP client), result files
and plots."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CoordinatorLoadInProgressError, GroupCoordinatorNotAvailableError

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
FUNCTIONS = ROOT / "bench" / "functions"
PYTHON = sys.executable


# ------------------------------------------------------------------ services & machine


def services_env(*names: str) -> dict[str, str]:
    """Start the named test services if they are down and return their environment."""
    script = str(ROOT / "scripts" / "test-services")
    subprocess.run([script, "up", *names], check=True, stdout=subprocess.DEVNULL)
    out = subprocess.run([script, "env", *names], check=True, capture_output=True, text=True)
    env = {}
    for line in out.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            env[key.strip()] = value.strip()
    return env


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (and of its waited-for children), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # after "pid (comm)": fields[11..14] are utime, stime, cutime, cstime in clock ticks
    ticks = sum(int(f) for f in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def bridge_pids(pid: int) -> list[int]:
    """The bridge ``pid`` and its worker processes (``python -m bridge.worker``, children
    of it): what the bridge costs is what they cost together (its function processes,
    if any, are the function's cost, not counted)."""
    pids = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parent = int(stat.read_text().rpartition(")")[2].split()[1])
            if parent == pid and b"bridge.worker" in (stat.parent / "cmdline").read_bytes():
                pids.append(int(stat.parent.name))
    return pids


def _summed(pids: list[int], measure: Callable[[int], float]) -> float:
    total = 0.0
    for p in pids:
        with contextlib.suppress(OSError):  # a worker that just exited
            total += measure(p)
    return total


def _over_bridge(pid: int, measure: Callable[[int], float]) -> float:
    return _summed(bridge_pids(pid), measure)


def bridge_cpu_seconds(pid: int) -> float:
    """CPU seconds of the bridge ``pid`` and its live workers (:func:`bridge_pids`)."""
    return _over_bridge(pid, cpu_seconds)


def bridge_rss_mib(pid: int) -> float:
    """RSS of the bridge ``pid`` and its live workers, MiB."""
    return _over_bridge(pid, rss_mib)


def unique(prefix: str) -> str:
    return f"bench-{prefix}-{uuid.uuid4().hex[:8]}"


# ------------------------------------------------------------------ Kafka


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def delete_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    except Exception:  # best effort: the run's figures do not depend on it
        pass
    finally:
        await admin.close()


def small_value(i: int) -> bytes:
    return b'{"i":%d,"pad":"xxxxxxxxxxxxxxxx"}' % i


async def fill_topic(
    bootstrap: str,
    topic: str,
    count: int,
    partitions: int,
    value: Callable[[int], bytes],
    keys: int = 0,
) -> float:
    """Produce ``count`` records round-robin over the partitions, with ``keys`` distinct
    keys (record i: ``key-<i mod keys>``; 0: no keys); return records/s."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=256 * 1024, acks=1
    )
    await producer.start()
    started = time.monotonic()
    try:
        pending: list[asyncio.Future[Any]] = []
        for i in range(count):
            key = f"key-{i % keys}".encode() if keys else None
            pending.append(await producer.send(topic, value(i), key=key, partition=i % partitions))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return count / (time.monotonic() - started)


class OffsetWatch:
    """Polls a consumer group's committed offsets (the bridge's progress, as Kafka sees
    it) into a time series of (seconds since start, records committed)."""

    def __init__(self, bootstrap: str, group: str) -> None:
        self.bootstrap = bootstrap
        self.group = group
        self.series: list[tuple[float, int]] = []
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)

    async def __aenter__(self) -> OffsetWatch:
        await self._admin.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._admin.close()

    async def committed(self) -> int:
        """Records committed by the group so far; 0 while a fresh broker has no group
        coordinator yet (its offsets topic is still being created)."""
        try:
            offsets = await self._admin.list_consumer_group_offsets(self.group)
        except (GroupCoordinatorNotAvailableError, CoordinatorLoadInProgressError):
            return 0
        return sum(max(0, meta.offset) for meta in offsets.values())

    async def wait_for(
        self, total: int, *, timeout: float, interval: float = 0.25, t0: float | None = None
    ) -> float:
        """Wait until ``total`` records are committed; return the monotonic time it happened."""
        t0 = time.monotonic() if t0 is None else t0
        deadline = time.monotonic() + timeout
        while True:
            done = await self.committed()
            now = time.monotonic()
            self.series.append((now - t0, done))
            if done >= total:
                return now
            if now > deadline:
                raise TimeoutError(f"group {self.group}: {done}/{total} committed in {timeout}s")
            await asyncio.sleep(interval)


async def bare_consumer(
    bootstrap: str, topic: str, total: int, *, min_seconds: float = 0.0
) -> dict[str, Any]:
    """Source ceiling: a bare aiokafka consumer (fresh group, getmany(500) as the connector
    does) reading the ``total`` records of ``topic``; records/s and CPU from the first record
    to the last. With ``min_seconds`` the topic is read again from the beginning until that
    long has passed: aiokafka prefetches, so a small backlog is in memory after a fetch or
    two and one pass times little more than a loop over it."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=unique("ceiling"),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    seen, first, last, cpu, passes = 0, 0.0, 0.0, 0.0, 0
    try:
        while not passes or last - first < min_seconds:
            if passes:
                await consumer.seek_to_beginning()
            in_pass = 0
            while in_pass < total:
                fetched = await consumer.getmany(timeout_ms=1000, max_records=500)
                for messages in fetched.values():
                    if messages and not first:
                        first, cpu = time.monotonic(), time.process_time()
                    in_pass += len(messages)
                last = time.monotonic()
            seen += in_pass
            passes += 1
        cpu = time.process_time() - cpu
    finally:
        await consumer.stop()
    return {
        "records": seen,
        "passes": passes,
        "seconds": last - first,
        "records_per_s": seen / (last - first),
        "cpu_seconds": cpu,
    }


# ------------------------------------------------------------------ the minimal endpoint


class Sink:
    """The minimal function endpoint (:mod:`bench.sink`) in a process of its own."""

    def __init__(self, *, stamp: bool = False) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/invoke"
        self.stamp = stamp
        self.proc: subprocess.Popen[bytes] | None = None

    async def __aenter__(self) -> Sink:
        args = [PYTHON, "-m", "bench.sink", "--port", str(self.port)]
        # a plain Popen: started once, before the clock, and stopped in __aexit__
        self.proc = subprocess.Popen(  # noqa: ASYNC220
            [*args, *(["--stamp"] if self.stamp else [])], cwd=ROOT
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                await self.stats("count")
                return self
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)

    async def stats(self, what: str = "stats") -> dict[str, Any]:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{self.port}/{what}", timeout=30)
            result: dict[str, Any] = response.json()
            return result

    async def reset(self) -> None:
        async with httpx.AsyncClient() as client:
            await client.post(f"http://127.0.0.1:{self.port}/reset", timeout=30)

    async def wait_records(self, total: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            stats = await self.stats("count")
            if stats["records"] >= total:
                return await self.stats()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the endpoint saw {stats['records']}/{total} records")
            await asyncio.sleep(0.25)


def steady_window(
    arrivals: list[tuple[float, int]], total: int, cut: float = 0.05, warmup: float = 0.0
) -> tuple[float, float, int, int]:
    """(start, end, records, requests) of the steady part of a backlog run at the endpoint
    (``arrivals``: the sink's (time, records so far) per request): from
    the request that brought the count past ``cut`` of ``total``, and not before
    ``warmup`` seconds after the first request, to the one that brought it past
    ``1 - cut``. So neither the start (members joining, the first fetches, a consumer
    group's first rebalance) nor the tail (the last partial batches waiting out the
    batching window, which no record count can avoid when records are spread by key)
    weigh on the rate."""
    low, high = total * cut, total * (1 - cut)
    begin = arrivals[0][0] + warmup
    i = next((i for i, (t, n) in enumerate(arrivals) if n >= low and t >= begin), None)
    j = next(j for j, (_, n) in enumerate(arrivals) if n >= high)
    if i is None or j <= i:
        raise ValueError(
            f"no steady window: {1 - cut:.0%} of the records came within the {warmup:g} s "
            "warm-up (a longer run is needed)"
        )
    (start, first), (end, last) = arrivals[i], arrivals[j]
    return start, end, last - first, j - i


def kafka_event(batch_size: int, bootstrap: str, topic: str) -> bytes:
    """A Kafka event of ``batch_size`` small records, built by the bridge's own code."""
    from bridge.events import dumps
    from connectors.kafka.normalize import envelope, kafka_record

    @dataclass
    class _Message:
        topic: str
        partition: int
        offset: int
        timestamp: int
        timestamp_type: int = 0
        key: bytes | None = None
        value: bytes | None = None
        headers: Sequence[tuple[str, bytes | None]] = field(default_factory=tuple)

    now = int(time.time() * 1000)
    encoded = [
        dumps(kafka_record(_Message(topic, 0, i, now, value=small_value(i))))
        for i in range(batch_size)
    ]
    return envelope(bootstrap, [(f"{topic}-0", encoded)])


async def _timed_posts(
    batches: int, worker: Callable[[], Awaitable[None]], concurrency: int
) -> dict[str, Any]:
    """Run ``concurrency`` workers posting ``batches`` requests; wall time and CPU."""
    started, cpu = time.monotonic(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds, cpu = time.monotonic() - started, time.process_time() - cpu
    return {
        "batches": batches,
        "seconds": seconds,
        "batches_per_s": batches / seconds,
        "cpu_seconds": cpu,
    }


async def bare_http(url: str, payload: bytes, *, batches: int, concurrency: int) -> dict[str, Any]:
    """Sink ceiling: a bare httpx client posting the pre-built ``payload`` ``batches`` times,
    ``concurrency`` at once (one per partition, as the bridge has at most)."""
    left = batches
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency)) as client:

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                response = await client.post(
                    url, content=payload, headers={"Content-Type": "application/json"}
                )
                response.raise_for_status()

        await client.post(url, content=payload)  # connect before the clock starts
        return await _timed_posts(batches, worker, concurrency)


async def bare_aiohttp(
    url: str, payload: bytes, *, batches: int, concurrency: int
) -> dict[str, Any]:
    """The same as :func:`bare_http` with an aiohttp client (the ``http`` target's client
    since the optimisation), so the sink ceiling is the better of the two clients."""
    import aiohttp

    left = batches
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post() -> None:
            headers = {"Content-Type": "application/json"}
            async with session.post(url, data=payload, headers=headers) as response:
                await response.read()
                response.raise_for_status()

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await post()

        await post()  # connect before the clock starts
        return await _timed_posts(batches, worker, concurrency)


# ------------------------------------------------------------------ the bridge process


PID_RESCAN_SECONDS = 1.0  # how often BridgeProcess looks for new worker processes


class BridgeProcess:
    """``python -m bridge run --no-reload`` on a config, RSS sampled every ``interval`` s;
    with ``profile`` a py-spy (sampling profiler) attached, writing collapsed stacks."""

    def __init__(
        self, config: str, workdir: Path, *, interval: float = 0.5, profile: Path | None = None
    ) -> None:
        self.workdir = workdir
        self.config_path = workdir / "bridge.yaml"
        self.config_path.write_text(config)
        self.interval = interval
        self.profile = profile
        self.rss: list[tuple[float, float]] = []  # (seconds since start, MiB)
        self.cpu: list[tuple[float, float]] = []  # (seconds since start, CPU seconds used)
        self.proc: asyncio.subprocess.Process | None = None
        self._spy: subprocess.Popen[bytes] | None = None
        self._sampler: asyncio.Task[None] | None = None
        self.t0 = 0.0

    log_name = "bridge.log"
    what = "the bridge"

    def command(self) -> tuple[list[str], str, dict[str, str]]:
        """The program, its working directory and environment (a peer overrides this)."""
        # BENCH_BRIDGE_ROOT: run the bridge of another checkout (before/after comparisons)
        root = os.environ.get("BENCH_BRIDGE_ROOT", str(ROOT))
        args = [PYTHON, "-m", "bridge", "run", "--no-reload", "--config", str(self.config_path)]
        return args, root, {**os.environ, "PYTHONPATH": root}

    async def __aenter__(self) -> BridgeProcess:
        self.t0 = time.monotonic()
        log = (self.workdir / self.log_name).open("wb")
        args, cwd, env = self.command()
        self.proc = await asyncio.create_subprocess_exec(
            *args, cwd=cwd, env=env, stdout=log, stderr=log
        )
        self._sampler = asyncio.create_task(self._sample())
        if self.profile is not None:
            spy = Path(PYTHON).parent / "py-spy"
            self._spy = subprocess.Popen(  # noqa: ASYNC220 (started once, not awaited)
                [
                    str(spy),
                    "record",
                    "--pid",
                    str(self.proc.pid),
                    "--subprocesses",  # the worker processes, where the mappings run
                    "--rate",
                    "250",
                    "--format",
                    "raw",
                    "--nonblocking",
                    "-o",
                    str(self.profile),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        return self

    async def _sample(self) -> None:
        """Every ``interval`` s: RSS and CPU of the process and its workers. The workers
        are looked up (a scan of every process in /proc, a few ms) once a second and in a
        thread: the bench's event loop also runs the latency part's producer, which a
        scan every sample would hold up, a few records in every hundred."""
        assert self.proc is not None
        pid = self.proc.pid
        pids, scanned = [pid], -PID_RESCAN_SECONDS
        with contextlib.suppress(OSError, ValueError):
            while self.proc.returncode is None:
                if time.monotonic() - scanned >= PID_RESCAN_SECONDS:
                    scanned = time.monotonic()
                    pids = await asyncio.to_thread(bridge_pids, pid)
                now = time.monotonic() - self.t0
                self.rss.append((now, _summed(pids, rss_mib)))
                self.cpu.append((now, _summed(pids, cpu_seconds)))
                await asyncio.sleep(self.interval)

    async def __aexit__(self, *exc: object) -> None:
        if self._spy is not None:
            self._spy.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._spy.wait(30)
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 60)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._sampler is not None:
            self._sampler.cancel()
            await asyncio.gather(self._sampler, return_exceptions=True)

    def cpu_between(self, start: float, end: float) -> float:
        """CPU seconds the bridge used between two times (seconds since it started), from
        the samples nearest to them."""
        if not self.cpu:
            return float("nan")
        before = max((s for s in self.cpu if s[0] <= start), default=self.cpu[0])
        after = min((s for s in self.cpu if s[0] >= end), default=self.cpu[-1])
        return after[1] - before[1]

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.returncode is not None:
            tail = (self.workdir / self.log_name).read_text()[-3000:]
            raise RuntimeError(f"{self.what} exited with {self.proc.returncode}:\n{tail}")


def kafka_mapping(
    name: str,
    *,
    function: str,
    bootstrap: str,
    topic: str,
    group: str,
    batch_size: int,
    window: float,
    parallelism: int = 1,
    parallelization_factor: int = 1,
    commit_interval: float = 0,
) -> str:
    return f"""
  - name: {name}
    function: {function}
    batch_size: {batch_size}
    maximum_batching_window_seconds: {window}
    parallelism: {parallelism}
    parallelization_factor: {parallelization_factor}
    commit_interval_seconds: {commit_interval}
    source:
      type: kafka
      bootstrap_servers: {bootstrap}
      topics: [{topic}]
      consumer_group_id: {group}
      starting_position: TRIM_HORIZON
"""


def http_function(url: str, concurrency: int = 10) -> str:
    return f"""
  fn:
    type: http
    url: {url}
    concurrency: {concurrency}
    timeout: 30
"""


def runtime_function(handler_dir: str, concurrency: int, env: dict[str, str] | None = None) -> str:
    env_text = json.dumps(env or {})
    return f"""
  fn:
    type: runtime
    command: {PYTHON} -m awslambdaric app.handler
    cwd: {FUNCTIONS / handler_dir}
    concurrency: {concurrency}
    timeout: 30
    env: {env_text}
"""


def bridge_config(workdir: Path, functions: str, mappings: str) -> str:
    return f"""
state_dir: {workdir}/state
shutdown_timeout_seconds: 10
functions:
{functions}
mappings:
{mappings}
"""


@contextlib.asynccontextmanager
async def workdir(name: str) -> AsyncIterator[Path]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix=f"tb-bench-{name}-") as tmp:
        yield Path(tmp)


# ------------------------------------------------------------------ results


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclass
class Report:
    scenario: str
    quick: bool
    label: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)  # the Markdown table
    targets: list[dict[str, Any]] = field(default_factory=list)
    series: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    path: Path = RESULTS / "unwritten"

    @property
    def stem(self) -> str:
        if self.path.name != "unwritten":
            return self.path.name  # rewritten in place with what came since
        stamp = time.strftime("%Y%m%d-%H%M%S")
        label = f"-{self.label}" if self.label else ""
        return f"{self.scenario}{label}{'-quick' if self.quick else ''}-{stamp}"

    def write(self) -> Path:
        RESULTS.mkdir(parents=True, exist_ok=True)
        stem = self.stem
        doc = {
            "scenario": self.scenario,
            "quick": self.quick,
            "label": self.label,
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": machine(),
            "params": self.params,
            "results": self.rows,
            "targets": self.targets,
            "notes": self.notes,
            "series": self.series,
        }
        (RESULTS / f"{stem}.json").write_text(json.dumps(doc, indent=1))
        (RESULTS / f"{stem}.md").write_text(self.markdown(doc))
        self.path = RESULTS / stem
        return self.path

    def markdown(self, doc: dict[str, Any]) -> str:
        m = doc["machine"]
        lines = [
            f"# {self.scenario}{' (quick)' if self.quick else ''} {self.label}".rstrip(),
            "",
            f"{doc['when']}; {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, "
            f"Python {m['python']}",
            "",
            "Parameters: " + ", ".join(f"{k}={v}" for k, v in self.params.items()),
            "",
        ]
        lines += table(self.rows)
        if self.targets:
            lines += ["", *table(self.targets)]
        if self.notes:
            lines += ["", *(f"- {n}" for n in self.notes)]
        return "\n".join(lines) + "\n"


def table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    keys = list(dict.fromkeys(k for row in rows for k in row))
    out = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        out.append("| " + " | ".join(_cell(row.get(k, "")) for k in keys) + " |")
    return out


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def plot_lines(
    path: Path,
    series: dict[str, list[tuple[float, float]]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, points in series.items():
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, label=name)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def rate_series(
    points: Sequence[tuple[float, float]], step: float = 1.0
) -> list[tuple[float, float]]:
    """Cumulative (t, count) samples -> (t, count/s) over windows of about ``step`` s."""
    out: list[tuple[float, float]] = []
    if not points:
        return out
    last_t, last_n = points[0]
    for t, n in points[1:]:
        if t - last_t >= step:
            out.append((t, (n - last_n) / (t - last_t)))
            last_t, last_n = t, n
    return out


def bucket_rate(buckets: list[list[int]]) -> list[tuple[float, float]]:
    """The endpoint's 100 ms buckets -> records/s per second, from its first record."""
    if not buckets:
        return []
    per_second: Counter[int] = Counter()
    for bucket, count in buckets:
        per_second[bucket // 10] += count
    start = min(per_second)
    return [(float(s - start), float(per_second[s])) for s in sorted(per_second)]


def summarize_profile(path: Path, top: int = 25) -> dict[str, Any]:
    """py-spy's collapsed stacks -> the top functions by self and inclusive samples."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    if not path.exists():
        return {}
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        self_time[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"samples: {total}", "", "self:"]
    lines += [f"{n / total:6.1%}  {f}" for f, n in self_time.most_common(top)]
    lines += ["", "inclusive:"]
    lines += [f"{n / total:6.1%}  {f}" for f, n in inclusive.most_common(top * 2)]
    path.with_suffix(".summary.txt").write_text("\n".join(lines) + "\n")
    return {
        "samples": total,
        "self": [(f, n / total) for f, n in self_time.most_common(top)],
        "inclusive": [(f, n / total) for f, n in inclusive.most_common(top * 2)],
    }
