"""The runtime host's instances under a load that rises and falls (issue #23).

One function under the ``runtime`` target (``concurrency`` 16, ``min_instances`` 0,
``idle_timeout`` 2 s), its handler sleeping 100 ms per invocation. Invocations arrive
open-loop (on a schedule, not waiting for answers) at a rate that rises linearly from 0
to a peak, stays there, falls back to 0, then nothing for a while:

    rate
     ^      ______
     |     /      \\
     |    /        \\
     +---+----------+------> time

Every 100 ms the bench samples the instances the host runs and the invocations in flight
(submitted and not answered), and it counts cold starts (REPORT lines with an Init
Duration). What Lambda would do, and what this shows: instances follow the load (about
rate x duration of them, Little's law), each new one a cold start; they are reused while
warm; after the load stops they are stopped ``idle_timeout`` later, down to zero; the
queueing delay (latency over the handler's 100 ms) stays small, except while cold starts
are under way. Written: the series (JSON), a plot of instances and in-flight invocations
against time, and a table per phase (latency p50/p99, instances).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from pathlib import Path

from bench._common import Report, percentile, plot_lines

FUNCTION = Path(__file__).parent / "functions" / "sleeper"


class _ColdStarts(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "platform", None) == "report" and "init_duration_ms" in record.__dict__:
            self.count += 1


async def run(*, quick: bool, label: str) -> Report:
    from bridge.targets.runtime_api import RuntimeApiTarget

    peak_rate, handler_seconds = (60.0, 0.1) if quick else (100.0, 0.1)
    ramp, hold, tail = (5.0, 3.0, 5.0) if quick else (8.0, 5.0, 6.0)
    concurrency, idle_timeout = 16, 2.0
    report = Report(
        "instances",
        quick,
        label,
        params={
            "peak_rate_per_s": peak_rate,
            "handler_seconds": handler_seconds,
            "ramp_s": ramp,
            "hold_s": hold,
            "idle_after_s": tail,
            "concurrency": concurrency,
            "min_instances": 0,
            "idle_timeout_s": idle_timeout,
        },
    )
    cold = _ColdStarts()
    function_log = logging.getLogger("bridge.function.bench")
    function_log.addHandler(cold)
    function_log.setLevel(logging.INFO)
    function_log.propagate = False
    target = RuntimeApiTarget(
        "bench",
        command=[sys.executable, "-m", "awslambdaric", "app.handler"],
        cwd=str(FUNCTION),
        concurrency=concurrency,
        min_instances=0,
        idle_timeout=idle_timeout,
        timeout=30,
    )
    await target.start()
    payload = json.dumps({"seconds": handler_seconds}).encode()
    in_flight = 0
    latencies: list[tuple[float, float]] = []  # (sent at, seconds)
    samples: list[tuple[float, int, int, float]] = []  # (t, instances, in flight, rate)
    total = ramp * 2 + hold
    begin = time.monotonic()

    def rate_at(t: float) -> float:
        if t < ramp:
            return peak_rate * t / ramp
        if t < ramp + hold:
            return peak_rate
        if t < total:
            return peak_rate * (total - t) / ramp
        return 0.0

    async def one(n: int) -> None:
        nonlocal in_flight
        in_flight += 1
        sent = time.monotonic()
        try:
            await target.invoke(payload, request_id=f"b-{n}", timeout=None)
        finally:
            in_flight -= 1
        latencies.append((sent - begin, time.monotonic() - sent))

    async def sample() -> None:
        while True:
            t = time.monotonic() - begin
            samples.append((t, target.instances, in_flight, rate_at(t)))
            await asyncio.sleep(0.1)

    sampler = asyncio.create_task(sample())
    tasks: list[asyncio.Task[None]] = []
    n, owed = 0, 0.0
    step = 0.01
    while (t := time.monotonic() - begin) < total:
        owed += rate_at(t) * step
        while owed >= 1:
            owed -= 1
            tasks.append(asyncio.create_task(one(n)))
            n += 1
        await asyncio.sleep(step)
    await asyncio.gather(*tasks)
    load_end = time.monotonic() - begin
    zero_at = None
    while time.monotonic() - begin < load_end + tail:
        if target.instances == 0 and zero_at is None:
            zero_at = time.monotonic() - begin
        await asyncio.sleep(0.05)
    sampler.cancel()
    await asyncio.gather(sampler, return_exceptions=True)
    await target.aclose()
    function_log.removeHandler(cold)

    phases = {
        "rising": (0.0, ramp),
        "peak": (ramp, ramp + hold),
        "falling": (ramp + hold, total),
    }
    for name, (start, end) in phases.items():
        lat = [s for at, s in latencies if start <= at < end]
        inst = [i for t, i, _, _ in samples if start <= t < end]
        report.rows.append(
            {
                "phase": name,
                "invocations": len(lat),
                "latency p50 ms": percentile(lat, 0.5) * 1000,
                "latency p99 ms": percentile(lat, 0.99) * 1000,
                "instances max": max(inst, default=0),
                "instances mean": sum(inst) / len(inst) if inst else 0.0,
            }
        )
    report.notes += [
        f"{n} invocations; cold starts: {cold.count}; most instances at once: "
        f"{max(i for _, i, _, _ in samples)} (of {concurrency}); "
        f"Little's law at the peak: {peak_rate:g}/s x {handler_seconds:g} s = "
        f"{peak_rate * handler_seconds:g} busy instances",
        "scaled to zero "
        + (
            f"{zero_at - load_end:.1f} s after the last answer (idle_timeout {idle_timeout:g} s)"
            if zero_at is not None
            else f"not within {tail:g} s of the last answer"
        ),
    ]
    report.series = {"samples": samples, "latencies": latencies}
    path = report.write()
    plot_lines(
        path.with_suffix(".instances.png"),
        {
            "instances": [(t, float(i)) for t, i, _, _ in samples],
            "in-flight invocations": [(t, float(f)) for t, _, f, _ in samples],
            "arrival rate / 10 (per s)": [(t, r / 10) for t, _, _, r in samples],
        },
        title="runtime host: instances under a rising and falling load",
        xlabel="seconds",
        ylabel="count",
    )
    return report
