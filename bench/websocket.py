"""Websocket source (issue #16): what the spool's durability costs. Messages/s from a local
feed through the bridge (``websocket`` source -> spool -> ``batch_size`` 100 -> the minimal
endpoint, an ``http`` function) for each ``spool.fsync`` mode, against the same feed read
without the bridge, all in one run. In this order:

- ``bare client``: an aiohttp websocket client in the bench process reading the N messages
  and doing nothing with them: the feed's ceiling on this machine;
- ``bare client + fsync``: the same, appending each message to a file and ``fsync``-ing
  it before reading the next (inline, blocking): the raw cost of an fsync per message on
  this disk;
- the bridge (``python -m bridge run``, a subprocess; a fresh ``state_dir`` per mode) with
  ``spool.fsync`` ``never``, ``interval`` (100 ms), ``batch`` (group commit) and ``frame``,
  with the source's default ``maximum_batching_window_seconds`` (0); then ``frame`` again
  with a 0.5 s window, so that its batches fill (with window 0 each message is delivered
  alone as soon as it is synced): what an fsync per message costs, apart from the
  one-message invocations;
- the bare client again, to see how much the machine drifted during the run.

The feed (:mod:`bench.ws_feed`) is a bare aiohttp server in a process of its own: each
connection waits for the bench's go, then gets the same N messages of about 140 bytes of
JSON as fast as the client takes them. A bridge row starts once the bridge has connected
and idles; its rate runs from the first message delivered at the endpoint to the last (the
endpoint counts the records of the events), checked there: every message exactly once, in
the feed's order.

Measured over each row's window (go to the last message seen), without touching the
bridge: its CPU (``/proc``), its ``fsync``/``fdatasync`` calls (``perf stat`` on the
syscall tracepoints, attached to the bridge's pid, when ``perf`` is there), the flush
requests the disk completed (``/sys/dev/block/<dev>/stat``, the whole device: whatever
else runs counts too) and how busy the whole machine was; how fast the pump wrote the feed
to the spool, from the spool's segment files watched from outside every 10 ms. The feed's
send rate is its own (first send to the last send returned): sends return once the
socket's buffers took them, so it overstates what the reader took by a few MB.

A bridge row that does not finish in time leaves its log, config, spool listing, a py-spy
dump of the bridge and what the feed and the endpoint saw in
``bench/results/websocket-stuck-<time>-<row>/``. ``BENCH_BRIDGE_ROOT`` runs another tree's
bridge, as in the other scenarios (the params name it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench._common import (
    PYTHON,
    RESULTS,
    ROOT,
    BridgeProcess,
    Report,
    Sink,
    bridge_config,
    bucket_rate,
    cpu_seconds,
    free_port,
    plot_lines,
    summarize_profile,
    workdir,
)

__all__ = ["run"]

# (spool.fsync, maximum_batching_window_seconds): the four modes with the source's default
# window, then frame with a window, to tell its fsyncs from its one-message batches
RUNS = (("never", 0.0), ("interval", 0.0), ("batch", 0.0), ("frame", 0.0), ("frame", 0.5))
BATCH_SIZE = 100
FUNCTION_CONCURRENCY = 4
FSYNC_INTERVAL_MS = 100


# ------------------------------------------------------------------ the feed


class Feed:
    """The websocket feed (:mod:`bench.ws_feed`) in a process of its own."""

    def __init__(self, messages: int) -> None:
        self.messages = messages
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = f"ws://127.0.0.1:{self.port}/ws"
        self.proc: subprocess.Popen[bytes] | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Feed:
        args = [PYTHON, "-m", "bench.ws_feed", "--port", str(self.port)]
        # a plain Popen: started once, before any clock, and stopped in __aexit__
        self.proc = subprocess.Popen(  # noqa: ASYNC220
            [*args, "--messages", str(self.messages)], cwd=ROOT
        )
        self._session = aiohttp.ClientSession()
        deadline = time.monotonic() + 60  # it builds its N messages first
        while True:
            try:
                await self.connections()
                return self
            except aiohttp.ClientError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                await asyncio.sleep(0.1)

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)

    async def connections(self) -> list[dict[str, Any]]:
        assert self._session is not None
        async with self._session.get(self.base + "/stats") as response:
            result: list[dict[str, Any]] = await response.json()
            return result

    async def go(self) -> None:
        """Waiting connections (and new ones) start sending."""
        assert self._session is not None
        async with self._session.post(self.base + "/go") as response:
            response.raise_for_status()

    async def hold(self) -> None:
        """New connections wait for the next :meth:`go`."""
        assert self._session is not None
        async with self._session.post(self.base + "/hold") as response:
            response.raise_for_status()

    async def wait_connections(self, count: int, timeout: float, alive: Any = None) -> None:
        deadline = time.monotonic() + timeout
        while len(await self.connections()) < count:
            if alive is not None:
                alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"no connection to the feed in {timeout} s")
            await asyncio.sleep(0.05)


def send_rate(connection: dict[str, Any]) -> float:
    seconds = connection["last"] - connection["first"]
    return connection["sent"] / seconds if connection["last"] and seconds > 0 else float("nan")


# ------------------------------------------------------------------ what is measured


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])
    return total - idle, total


def busy_share(before: tuple[float, float], after: tuple[float, float]) -> float:
    return (after[0] - before[0]) / max(after[1] - before[1], 1)


def disk_flushes(folder: Path) -> int | None:
    """Flush requests completed by the block device holding ``folder`` (the 16th field
    of its ``stat``, kernels 5.5+), or None when it cannot be read."""
    dev = os.stat(folder).st_dev
    path = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}/stat")
    try:
        fields = path.read_text().split()
    except OSError:
        return None
    return int(fields[15]) if len(fields) >= 17 else None


class SpoolWatch:
    """Watches a spool's segment files grow from outside the bridge (their sizes every
    ``interval`` s, a deleted file keeping its last size): when the first byte and the last
    byte of the run were written, i.e. how fast the pump took the feed in."""

    def __init__(self, folder: Path, interval: float = 0.01) -> None:
        self.folder = folder
        self.interval = interval
        self.sizes: dict[str, int] = {}
        self.series: list[tuple[float, int]] = []  # (monotonic time, bytes written)
        self._task: asyncio.Task[None] | None = None

    def _sample(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.folder):
                if entry.name.endswith(".log"):
                    with contextlib.suppress(FileNotFoundError):
                        self.sizes[entry.name] = entry.stat().st_size
        self.series.append((time.monotonic(), sum(self.sizes.values())))

    async def _run(self) -> None:
        while True:
            self._sample()
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._sample()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._sample()

    def ingest(self, messages: int) -> dict[str, float]:
        """Messages/s from the first sample that saw the spool grow to the first that saw
        its final size (at ``interval`` s resolution), and when that was."""
        start = self.series[0][1]
        final = self.series[-1][1]
        first = next((t for t, b in self.series if b > start), float("nan"))
        last = next((t for t, b in self.series if b >= final), float("nan"))
        seconds = last - first
        return {
            "spool_bytes": final - start,
            "ingest_first": first,
            "ingest_last": last,
            "ingest_per_s": messages / seconds if seconds > 0 else float("nan"),
        }


class FsyncCount:
    """``perf stat`` counting the ``fsync`` and ``fdatasync`` calls of a process (all its
    threads, those started later too) from :meth:`start` to :meth:`stop`; None from stop
    when ``perf`` is missing or cannot attach."""

    def __init__(self, pid: int, out: Path) -> None:
        self.pid = pid
        self.out = out
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        perf = shutil.which("perf")
        if perf is None:
            return
        events = "syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync"
        args = [perf, "stat", "-e", events, "-x", ",", "-o", str(self.out), "-p", str(self.pid)]
        self.proc = subprocess.Popen(  # noqa: ASYNC220 (started once, stopped in stop())
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        await asyncio.sleep(0.3)  # attached
        if self.proc.poll() is not None:
            self.proc = None

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        total = 0
        try:
            lines = self.out.read_text().splitlines()
        except OSError:
            return None
        counted = False
        for line in lines:
            fields = line.split(",")
            if len(fields) > 2 and fields[2].startswith("syscalls:"):
                if not fields[0].isdigit():
                    return None  # <not supported>, <not counted>
                total += int(fields[0])
                counted = True
        return total if counted else None


# ------------------------------------------------------------------ the bare clients


async def bare_client(feed: Feed, total: int, fsync_to: Path | None = None) -> dict[str, Any]:
    """Read ``total`` messages of a fresh connection to the feed; with ``fsync_to``, append
    each to that file and fsync it before reading the next. Messages/s from the first
    message to the last, and the bench process's CPU."""
    await feed.hold()
    fd = os.open(fsync_to, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600) if fsync_to else None
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(feed.url, max_msg_size=0, autoping=True) as ws,
        ):
            await feed.go()
            seen, first, flushes = 0, 0.0, disk_flushes(fsync_to.parent) if fsync_to else None
            busy_before, cpu = machine_busy(), time.process_time()
            while seen < total:
                message = await ws.receive()
                if message.type != aiohttp.WSMsgType.TEXT:
                    raise RuntimeError(f"the feed ended after {seen} messages: {message}")
                if fd is not None:
                    os.write(fd, message.data.encode() + b"\n")
                    os.fsync(fd)
                if not first:
                    first = time.monotonic()
                seen += 1
            last = time.monotonic()
            cpu, busy = time.process_time() - cpu, busy_share(busy_before, machine_busy())
            flushes_after = disk_flushes(fsync_to.parent) if fsync_to else None
    finally:
        if fd is not None:
            os.close(fd)
    sent = (await feed.connections())[-1]
    return {
        "messages": seen,
        "seconds": last - first,
        "messages_per_s": seen / (last - first),
        "cpu_us_per_message": cpu / seen * 1e6,
        "feed_per_s": send_rate(sent),
        "fsyncs": seen if fd is not None else 0,
        "disk_flushes": (
            flushes_after - flushes if flushes is not None and flushes_after is not None else None
        ),
        "machine_busy": busy,
    }


# ------------------------------------------------------------------ the bridge


def _config(folder: Path, sink_url: str, feed_url: str, mode: str, window: float) -> str:
    interval = f", fsync_interval_ms: {FSYNC_INTERVAL_MS}" if mode == "interval" else ""
    functions = f"""
  sink: {{type: http, url: "{sink_url}", concurrency: {FUNCTION_CONCURRENCY}, timeout: 30}}
"""
    mappings = f"""
  - name: feed
    function: sink
    batch_size: {BATCH_SIZE}
    maximum_batching_window_seconds: {window}
    source: {{type: websocket, url: "{feed_url}", spool: {{fsync: {mode}{interval}}}}}
"""
    return bridge_config(folder, functions, mappings)


async def bridge_run(
    feed: Feed,
    sink: Sink,
    folder: Path,
    mode: str,
    total: int,
    *,
    window: float = 0.0,
    profile: Path | None = None,
) -> dict[str, Any]:
    """The bridge with ``spool.fsync: mode`` and ``maximum_batching_window_seconds:
    window`` in ``folder`` (its own state_dir), from the feed's go to the last of ``total``
    messages at the endpoint; with ``profile``, py-spy's collapsed stacks of it there."""
    await asyncio.to_thread(folder.mkdir)
    await feed.hold()
    await sink.reset()
    connected = len(await feed.connections())
    config = _config(folder, sink.url, feed.url, mode, window)
    async with BridgeProcess(config, folder, profile=profile) as bridge:
        assert bridge.proc is not None
        pid = bridge.proc.pid
        await feed.wait_connections(connected + 1, 60, bridge.check_alive)
        await asyncio.sleep(0.5)  # the mapping settles (its first read waits on the spool)
        fsyncs = FsyncCount(pid, folder / "perf.txt")
        await fsyncs.start()
        flushes, busy_before, cpu = disk_flushes(folder), machine_busy(), cpu_seconds(pid)
        spool = SpoolWatch(folder / "state" / "spool" / "feed")
        spool.start()
        started = time.monotonic()
        await feed.go()
        deadline = started + 60 + total / 500
        while (await sink.stats("count"))["records"] < total:
            bridge.check_alive()
            if time.monotonic() > deadline:
                seen = (await sink.stats("count"))["records"]
                kept = await _post_mortem(folder, pid, feed, sink, spool)
                raise TimeoutError(
                    f"fsync {mode}: the endpoint saw {seen}/{total} messages; what was "
                    f"there is kept in {kept}"
                )
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - started
        cpu = cpu_seconds(pid) - cpu
        await spool.stop()
        busy = busy_share(busy_before, machine_busy())
        fsync_calls = fsyncs.stop()
        flushes_after = disk_flushes(folder)
        await asyncio.sleep(1.0)  # anything delivered twice would arrive now
        stats = await sink.stats()
        peak_rss = max((m for _, m in bridge.rss), default=float("nan"))
    log = (folder / "bridge.log").read_text(errors="replace")
    connections = (await feed.connections())[connected:]
    seconds = stats["last"] - stats["first"]
    check = stats["feed"]
    exact = (
        stats["records"] == total
        and check["messages"] == total
        and check["in_order"]
        and check["duplicates"] == 0
    )
    return {
        "mode": mode,
        "window": window,
        "name": f"bridge, spool.fsync {mode}" + (f", window {window:g} s" if window else ""),
        "profile": summarize_profile(profile) if profile is not None else None,
        "messages": stats["records"],
        "seconds": seconds,
        "messages_per_s": stats["records"] / seconds,
        "window_s": elapsed,
        "requests": stats["requests"],
        "cpu_seconds": cpu,
        "cpu_us_per_message": cpu / total * 1e6,
        "cpu_share": cpu / elapsed,
        "feed_per_s": send_rate(connections[0]),
        **spool.ingest(total),
        "connections": len(connections),
        "fsyncs": fsync_calls,
        "disk_flushes": (
            flushes_after - flushes if flushes is not None and flushes_after is not None else None
        ),
        "machine_busy": busy,
        "peak_rss_mib": peak_rss,
        "check": check,
        "exact": exact,
        "unavailable_lines": log.count("source.unavailable"),
        "warnings": sum(1 for line in log.splitlines() if "WARNING" in line or "ERROR" in line),
        "buckets": stats["buckets"],
    }


async def _post_mortem(folder: Path, pid: int, feed: Feed, sink: Sink, spool: SpoolWatch) -> Path:
    """A bridge row that did not finish: keep its log, config, spool listing and position,
    a py-spy dump of the stuck bridge, and what the feed and the endpoint saw, under
    ``bench/results/websocket-stuck-<time>-<row>/``."""
    kept = RESULTS / f"websocket-stuck-{time.strftime('%Y%m%d-%H%M%S')}-{folder.name}"
    await asyncio.to_thread(kept.mkdir, parents=True)
    spy = Path(PYTHON).parent / "py-spy"
    if spy.exists():
        dump = await asyncio.create_subprocess_exec(
            str(spy), "dump", "--pid", str(pid), "--locals",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await dump.communicate()
        (kept / "pyspy-dump.txt").write_bytes(out)
    for name in ("bridge.log", "bridge.yaml"):
        if (folder / name).exists():
            shutil.copy(folder / name, kept / name)
    listing = []
    for path in sorted((folder / "state").rglob("*")):
        if path.is_file():
            listing.append(f"{path.stat().st_size:>12} {path.relative_to(folder)}")
            if path.name.startswith("position") or path.suffix == ".json":
                shutil.copy(path, kept / path.name)
    (kept / "state-files.txt").write_text("\n".join(listing) + "\n")
    doc = {
        "feed_connections": await feed.connections(),
        "endpoint": await sink.stats(),
        "spool_growth": spool.series[-50:],
    }
    (kept / "seen.json").write_text(json.dumps(doc, indent=1))
    return kept


# ------------------------------------------------------------------ the scenario


def _per_fsync(total: int, fsyncs: int | None) -> float | str:
    if not fsyncs:
        return ""
    return total / fsyncs


async def run(*, quick: bool, label: str, profile: bool = False) -> Report:
    total = 50_000 if quick else 200_000
    report = Report("websocket", quick, label)
    report.params = {
        "messages": total,
        "message bytes": "134-143 (JSON)",
        "batch_size": BATCH_SIZE,
        "maximum_batching_window_seconds": "0 (the default) unless the row says",
        "partition_key": "none (one partition)",
        "function": f"http, concurrency {FUNCTION_CONCURRENCY}",
        "fsync_interval_ms (interval)": FSYNC_INTERVAL_MS,
        "bridge": "python -m bridge run (subprocess)",
        "bridge code": os.environ.get("BENCH_BRIDGE_ROOT", "this checkout"),
    }
    bare: list[dict[str, Any]] = []
    bridge: list[dict[str, Any]] = []
    async with Feed(total) as feed, Sink() as sink, workdir("websocket") as tmp:
        bare.append(await bare_client(feed, total))
        bare.append(await bare_client(feed, total, fsync_to=tmp / "bare-fsync.log"))
        for mode, window in RUNS:
            name = f"{mode}-{window:g}"
            spy = report.write().with_suffix(f".{name}.pyspy.txt") if profile else None
            result = await bridge_run(
                feed, sink, tmp / name, mode, total, window=window, profile=spy
            )
            bridge.append(result)
        bare.append(await bare_client(feed, total))
    ceiling = max(bare[0]["messages_per_s"], bare[2]["messages_per_s"])
    rows = [("bare client", bare[0]), ("bare client + fsync per message", bare[1])]
    rows += [(r["name"], r) for r in bridge]
    rows += [("bare client (again, at the end)", bare[2])]
    for name, r in rows:
        is_bridge = "mode" in r
        report.rows.append({
            "what": name,
            "messages/s": r["messages_per_s"],
            "seconds": r["seconds"],
            "ratio to bare client": r["messages_per_s"] / ceiling,
            "feed send msg/s": r["feed_per_s"],
            "spool ingest msg/s": r["ingest_per_s"] if is_bridge else "",
            "client CPU µs/msg": "" if is_bridge else r["cpu_us_per_message"],
            "bridge CPU µs/msg": r["cpu_us_per_message"] if is_bridge else "",
            "bridge CPU % of a core": r["cpu_share"] * 100 if is_bridge else "",
            "msgs per request": total / r["requests"] if is_bridge else "",
            "fsync calls": "" if r["fsyncs"] is None else r["fsyncs"],
            "msgs per fsync": _per_fsync(total, r["fsyncs"]),
            "disk flushes (device)": "" if r["disk_flushes"] is None else r["disk_flushes"],
            "machine busy %": r["machine_busy"] * 100,
        })  # fmt: skip
    report.targets = [
        {
            "run": r["name"],
            "delivered": r["messages"],
            "exactly once, in order": "yes" if r["exact"] else "NO",
            "feed n seen / distinct / max": (
                f"{r['check']['messages']} / {r['check']['distinct']} / {r['check']['max']}"
            ),
            "requests": r["requests"],
            "connections": r["connections"],
            "source.unavailable lines": r["unavailable_lines"],
            "WARNING/ERROR lines": r["warnings"],
            "peak RSS MiB": r["peak_rss_mib"],
        }
        for r in bridge
    ]
    report.series = {
        "bare": bare,
        "bridge": [{k: v for k, v in r.items() if k != "buckets"} for r in bridge],
        "endpoint_buckets": {r["name"]: r["buckets"] for r in bridge},
    }
    report.notes += [
        "ratio to bare client: messages/s over the better of the two bare client rows "
        "(start and end of the run)",
        "messages/s: bare clients from the first message read to the last; the bridge at "
        "the endpoint, first message delivered to the last",
        "feed send msg/s: the feed's first send to its last send returned; a send returns "
        "once the socket buffers took it, so a few MB (tens of thousands of messages) "
        "may still be unread when the last one returns",
        "spool ingest msg/s: how fast the bridge's pump wrote the feed to its spool, from "
        "the spool's files as seen from outside every 10 ms (first growth to final size)",
        "msgs per request: messages / invocations of the endpoint",
        "fsync calls: fsync + fdatasync of the bridge process (perf stat, syscall "
        "tracepoints) from the feed's go to the last message at the endpoint; includes the "
        "spool's segment rotations; the bare + fsync row makes one per message",
        "disk flushes (device): flush requests completed by the whole block device over the "
        "same window, every process on the machine included",
        "CPU: the bench process for the bare clients; the bridge process alone (/proc) for "
        "the bridge rows, over the window from go to the last message at the endpoint",
    ]
    bad = [r["name"] for r in bridge if not r["exact"] or r["connections"] != 1]
    if bad:
        report.notes.append(f"CHECK FAILED (drops, duplicates, order or reconnects): {bad}")
    stem = report.write()
    plot_lines(
        stem.with_suffix(".throughput.png"),
        {r["name"].removeprefix("bridge, "): bucket_rate(r["buckets"]) for r in bridge},
        title="websocket feed -> bridge -> endpoint, batch_size 100",
        xlabel="seconds since the first message at the endpoint",
        ylabel="messages/s",
    )
    return report
