"""The bridge against Benthos (:mod:`bench.benthos`) on the same topic, the same endpoint and
the same records, in interleaved pairs in one run (pair 1: bridge then Benthos, pair 2:
Benthos then bridge, ...), so that the machine's load drifts over both alike. Parts:

- ``throughput``: a 6-partition backlog, batch 100, window 0.5 s (Benthos: a batching
  policy of count 100, period 500 ms, on the input, so batches are per partition as the
  bridge's), 6 requests in flight (Benthos's ``max_in_flight``, the bridge function's
  ``concurrency``).
- ``unbatched``: the same with batch 1 (window 0): one invocation per record, 10 in flight.
- ``latency``: produce -> handler start at a steady 1,000 records/s (:mod:`bench.latency`'s
  producer and stamping endpoint), batch 100, window 0; Benthos with a batching policy of
  count 100 and period 1 ms (the nearest to "send what has come") and without batching
  (one request per record, 64 in flight), the better of the two counts.

Records carry 64 distinct keys. Benthos (``checkpoint_limit`` 1024) delivers a
partition's messages in any order and commits once a second (its ``commit_period``).
"bridge" is the bridge with ``parallelization_factor`` 4 (batches of one partition at once,
in order per key), ``commit_interval_seconds`` 1 and one worker; "bridge, in order per
partition" is Lambda's Kafka semantics (one batch per partition at a time) with
``parallelism`` 2 (a worker per core), also committing once a second. Each target takes
the better bridge.

Rates are the steady state, taken at the endpoint between the requests that brought the
count past 5 % (and not before ``WARMUP_SECONDS_BACKLOG`` after the first request) and past 95 %
of the records (``bench._common.steady_window``). The warm-up covers a consumer group's
first rebalance: a bridge with ``parallelism`` 2 starts two members, the second joins
while the first already reads every partition, and the first learns of it at its next
heartbeat (every 3 s), so for up to 3 s one worker does the work of two. Keyed records
spread over sub-partitions leave partial batches at the end whatever the record count,
and they wait out the batching window. CPU of each process is taken between those two
moments (sampled every 0.1 s from /proc). Each run also reports its rate over the whole
run (first to last request), start-up and tail included.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import benthos
from bench._common import (
    BridgeProcess,
    Report,
    Sink,
    bridge_config,
    create_topic,
    delete_topic,
    fill_topic,
    http_function,
    kafka_mapping,
    percentile,
    services_env,
    small_value,
    steady_window,
    unique,
    workdir,
)
from bench.latency import KEYS, PARTITIONS, RATE, WARMUP_SECONDS, produce_steady

__all__ = ["PARTS", "run"]

PARTS = ("throughput", "unbatched", "latency")
BATCH = 100
SAMPLE_SECONDS = 0.1
WARMUP_SECONDS_BACKLOG = 4.0  # > the 3 s heartbeat interval: the group has all its members

# name -> (batch, period, max_in_flight, checkpoint_limit) of Benthos's config; "benthos"
# is the one the targets compare with
_THROUGHPUT = {"benthos": (BATCH, "500ms", PARTITIONS, 1024)}
_UNBATCHED = {
    "benthos": (1, "0s", 10, 1024),
    # one message per partition at a time, in order, as the bridge delivers
    "benthos, in order (checkpoint_limit 1)": (1, "0s", 10, 1),
}
_LATENCY = {
    "benthos batch 100, period 1 ms": (BATCH, "1ms", PARTITIONS, 1024),
    "benthos unbatched, 64 in flight": (1, "0s", 64, 1024),
}

# name -> (parallelization_factor, commit_interval_seconds, parallelism) of the bridge's
# mapping. "bridge": in order per key (Benthos delivers a partition's messages in any
# order), committing once a second (Benthos's commit_period), one worker (a second one
# competes with the sink and the broker for 2 cores: measured slower). The targets compare
# the better bridge row of a part with Benthos's row (the latency part: its better row).
FACTOR = 4
_CORES = os.cpu_count() or 1
_BRIDGES = {
    "bridge": (FACTOR, 1.0, 1),
    "bridge, in order per partition": (1, 1.0, _CORES),
}

MakeProcess = Callable[[str, str, Path, str], BridgeProcess]  # topic, group, dir, URL


def _peers(
    bootstrap: str, benthos_bin: Path, *, batch: int, window: float, in_flight: int,
    benthos_configs: dict[str, tuple[int, str, int, int]],
) -> dict[str, MakeProcess]:  # fmt: skip
    """Each peer as a function (topic, group, workdir, endpoint URL) -> its process, not
    yet started. The bridges' function has ``in_flight`` as its concurrency."""

    def bridge(factor: int, commit_interval: float, parallelism: int) -> MakeProcess:
        def make(topic: str, group: str, tmp: Path, url: str) -> BridgeProcess:
            mapping = kafka_mapping(
                "versus", function="fn", bootstrap=bootstrap, topic=topic, group=group,
                batch_size=batch, window=window, parallelism=parallelism,
                parallelization_factor=factor, commit_interval=commit_interval,
            )  # fmt: skip
            function = http_function(url, concurrency=in_flight)
            config = bridge_config(tmp, function, mapping) + "admin: {port: 0}\n"
            return BridgeProcess(config, tmp, interval=SAMPLE_SECONDS)

        return make

    def peer(settings: tuple[int, str, int, int]) -> MakeProcess:
        size, period, in_flight, limit = settings

        def make(topic: str, group: str, tmp: Path, url: str) -> BridgeProcess:
            config = benthos.kafka_to_http(
                bootstrap=bootstrap, topic=topic, group=group, url=url, batch=size,
                period=period, max_in_flight=in_flight, checkpoint_limit=limit,
            )  # fmt: skip
            return benthos.BenthosProcess(config, tmp, path=benthos_bin, interval=SAMPLE_SECONDS)

        return make

    bridges = {name: bridge(*settings) for name, settings in _BRIDGES.items()}
    return {**bridges, **{name: peer(s) for name, s in benthos_configs.items()}}


def _order(names: list[str], pair: int) -> list[str]:
    """Pair 0 in the given order, pair 1 reversed, ...: drift weighs on every peer alike."""
    return names if pair % 2 == 0 else names[::-1]


async def _backlog_run(
    make: MakeProcess, sink: Sink, *, topic: str, total: int, name: str
) -> dict[str, Any]:
    """One peer reads the backlog ``topic`` (``total`` records) to the endpoint."""
    await sink.reset()
    slug = "".join(c if c.isalnum() else "-" for c in name)
    async with workdir(f"versus-{slug}") as tmp:
        proc = make(topic, unique(f"group-versus-{slug}"), tmp, sink.url)
        async with proc:
            epoch = time.time() - time.monotonic()  # wall clock -> monotonic
            try:
                stats = await sink.wait_records(total, timeout=120 + total / 500)
            except TimeoutError:
                proc.check_alive()
                raise
            arrivals = stats["arrivals"]
            start, end, records, requests = steady_window(
                arrivals, total, warmup=WARMUP_SECONDS_BACKLOG
            )
            first, last = start - epoch - proc.t0, end - epoch - proc.t0
            cpu = proc.cpu_between(first, last)
            rss = max(m for _, m in proc.rss)
    seconds = max(last - first, 1e-9)
    whole = max(arrivals[-1][0] - arrivals[0][0], 1e-9)
    return {
        "records/s": records / seconds,
        "whole-run records/s": arrivals[-1][1] / whole,
        "requests/s": requests / seconds,
        "seconds": seconds,
        "CPU µs/record": cpu / records * 1e6,
        "CPU % of a core": cpu / seconds * 100,
        "peak RSS MiB": rss,
    }


async def _latency_run(make: MakeProcess, *, bootstrap: str, seconds: float, name: str) -> Any:
    """One peer at a steady RATE: the latencies (ms) of the measured window, and its CPU."""
    slug = "".join(c if c.isalnum() else "-" for c in name)
    topic = unique(f"versus-latency-{slug}")
    await create_topic(bootstrap, topic, PARTITIONS)
    try:
        async with Sink(stamp=True) as sink, workdir(f"versus-lat-{slug}") as tmp:
            proc = make(topic, unique(f"group-versus-{slug}"), tmp, sink.url)
            async with proc:
                warm, _ = await produce_steady(bootstrap, topic, WARMUP_SECONDS)
                await _wait_seen(sink, proc, warm)
                t0 = time.monotonic() - proc.t0
                count, start = await produce_steady(bootstrap, topic, seconds)
                t1 = time.monotonic() - proc.t0
                stats = await _wait_seen(sink, proc, warm + count)
                cpu = proc.cpu_between(t0, t1)
        latencies = [(s - p) * 1000 for p, s in stats["pairs"] if p >= start]
        return latencies, cpu / (t1 - t0) * 100
    finally:
        await delete_topic(bootstrap, topic)


async def _wait_seen(sink: Sink, proc: BridgeProcess, count: int) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        got = (await sink.stats("count"))["records"]
        if got >= count:
            return await sink.stats()
        if time.monotonic() > deadline:
            proc.check_alive()
            raise TimeoutError(f"{got}/{count} records seen")
        await asyncio.sleep(0.25)


def _summary(
    runs: dict[str, list[dict[str, Any]]], key: str, part: str, unit: str
) -> list[dict[str, Any]]:
    """One row per peer: the median and range of ``key`` over its runs, and the medians of
    its CPU and memory; the same columns for every part, so that one table holds them."""
    rows = []
    for peer, values in runs.items():
        figures = [r[key] for r in values]
        row: dict[str, Any] = {
            "part": part,
            "peer": peer,
            "runs": len(figures),
            "figure": unit,
            "median": statistics.median(figures),
            "min": min(figures),
            "max": max(figures),
        }
        for other in ("whole-run records/s", "CPU µs/record", "CPU % of a core", "peak RSS MiB"):
            if other in values[0]:
                row[f"{other} (median)"] = statistics.median(r[other] for r in values)
        rows.append(row)
    return rows


def _pair_ratios(
    runs: dict[str, list[dict[str, Any]]], key: str, bridge: str, peer: str
) -> list[float]:
    return [b[key] / p[key] for b, p in zip(runs[bridge], runs[peer], strict=True)]


async def _backlog_part(
    part: str, env: dict[str, str], benthos_bin: Path, report: Report, *, quick: bool, pairs: int
) -> None:
    bootstrap = env["TB_KAFKA_BOOTSTRAP"]
    batch = BATCH if part == "throughput" else 1
    # a multiple of partitions x batch: every batch of every partition is full
    # about 10 s a run or more at these rates (--quick too): a steady window of several
    # seconds after the warm-up
    sizes = {"throughput": (2_400_000, 6_000_000), "unbatched": (150_000, 300_000)}[part]
    total = sizes[0] if quick else sizes[1]
    total -= total % (PARTITIONS * batch)
    configs = _THROUGHPUT if part == "throughput" else _UNBATCHED
    report.params[f"{part} records"] = total
    topic = unique(f"versus-{part}")
    await create_topic(bootstrap, topic, PARTITIONS)
    runs: dict[str, list[dict[str, Any]]] = {}
    try:
        await fill_topic(bootstrap, topic, total, PARTITIONS, small_value, keys=KEYS)
        async with Sink() as sink:
            in_flight = max(c[2] for c in configs.values())  # Benthos's max_in_flight
            peers = _peers(
                bootstrap, benthos_bin, batch=batch, window=0.5 if batch > 1 else 0,
                in_flight=in_flight, benthos_configs=configs,
            )  # fmt: skip
            for pair in range(pairs):
                for name in _order(list(peers), pair):
                    result = await _backlog_run(
                        peers[name], sink, topic=topic, total=total, name=name
                    )
                    runs.setdefault(name, []).append(result)
                    report.series.setdefault(part, []).append(
                        {"pair": pair, "peer": name, **result}
                    )
    finally:
        await delete_topic(bootstrap, topic)
    key = "records/s" if part == "throughput" else "requests/s"
    unit = "records/s" if part == "throughput" else "invocations/s"
    report.rows += _summary(runs, key, part, unit)
    best = max(_BRIDGES, key=lambda n: statistics.median(r[key] for r in runs[n]))
    ratios = _pair_ratios(runs, key, best, "benthos")
    goal = 1.3 if part == "throughput" else 1.0
    medians = statistics.median(r[key] for r in runs[best]) / statistics.median(
        r[key] for r in runs["benthos"]
    )
    what = "Kafka -> http batch 100" if part == "throughput" else "unbatched invocations/s"
    report.targets.append({"target": f"{what} >= {goal}x Benthos",
                           "measured": f"{medians:.2f}x (pairs {min(ratios):.2f}-"
                           f"{max(ratios):.2f}x; {best})", "met": medians >= goal})  # fmt: skip


async def _latency_part(
    env: dict[str, str], benthos_bin: Path, report: Report, *, quick: bool, pairs: int
) -> None:
    bootstrap = env["TB_KAFKA_BOOTSTRAP"]
    seconds = 10.0 if quick else 20.0
    report.params["latency"] = f"{RATE} records/s for {seconds:g} s after {WARMUP_SECONDS:g} s"
    p99: dict[str, list[float]] = {}
    stats: dict[str, list[dict[str, Any]]] = {}
    peers = _peers(
        bootstrap, benthos_bin, batch=BATCH, window=0, in_flight=10, benthos_configs=_LATENCY
    )
    for pair in range(pairs):
        for name in _order(list(peers), pair):
            latencies, cpu_pct = await _latency_run(
                peers[name], bootstrap=bootstrap, seconds=seconds, name=name
            )
            row = {
                "p50 ms": percentile(latencies, 0.5),
                "p99 ms": percentile(latencies, 0.99),
                "max ms": max(latencies),
                "records": len(latencies),
                "CPU % of a core": cpu_pct,
            }
            p99.setdefault(name, []).append(row["p99 ms"])
            stats.setdefault(name, []).append(row)
            report.series.setdefault("latency", []).append({"pair": pair, "peer": name, **row})
    report.rows += _summary(stats, "p50 ms", "latency", "p50 ms")
    report.rows += _summary(stats, "p99 ms", "latency", "p99 ms")
    best = min(_LATENCY, key=lambda n: statistics.median(p99[n]))
    ours = min(_BRIDGES, key=lambda n: statistics.median(p99[n]))
    bridge, peer = statistics.median(p99[ours]), statistics.median(p99[best])
    report.targets.append({"target": "produce -> handler p99 at 1,000 records/s below "
                           "Benthos's (its better config)",
                           "measured": f"{bridge:.1f} ms ({ours}) vs {peer:.1f} ms ({best})",
                           "met": bridge < peer})  # fmt: skip


async def run(*, quick: bool, label: str, pairs: int = 5, parts: list[str] | None = None) -> Report:
    parts = list(PARTS) if parts is None else parts
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"unknown parts {unknown} (expected some of {', '.join(PARTS)})")
    env = services_env("kafka")
    benthos_bin = benthos.binary()
    report = Report("versus-benthos", quick, label)
    report.params = {
        "pairs": pairs,
        "partitions": PARTITIONS,
        "bridge": "python -m bridge run (subprocess), http target",
        "benthos": f"{benthos.version(benthos_bin)} (scripts/build-benthos: io, kafka, pure)",
        "order": "pair 1 bridge first, pair 2 Benthos first, ...",
    }
    for part in parts:
        if part == "latency":
            await _latency_part(env, benthos_bin, report, quick=quick, pairs=pairs)
        else:
            await _backlog_part(part, env, benthos_bin, report, quick=quick, pairs=pairs)
    report.write()
    return report
