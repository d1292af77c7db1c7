"""Kafka -> function throughput, batch_size 100, 6 partitions, against two ceilings measured
in the same run: a bare aiokafka consumer reading the same topic (source ceiling) and a bare
httpx client, and a bare aiohttp client, posting pre-built 100-record events to the same
endpoint (sink ceiling: the better of the two clients).

The bridge runs as in production: ``python -m bridge run`` in a subprocess. Its rate is
taken at the endpoint (first to last record received) for the ``http`` target, and from the
consumer group's committed offsets (first commit to the last one) for both targets.

Steady state: the record count is a multiple of partitions x batch size, so every batch of
every partition is full and none waits out the 0.5 s window at the end; the ceilings are
repeated until they have run at least :data:`MIN_SECONDS` (a backlog the size of the
``--quick`` one is read or posted in a few hundredths of a second otherwise), and the
bridge's CPU and commits are sampled every 0.1 s.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench._common import (
    BridgeProcess,
    OffsetWatch,
    Report,
    Sink,
    bare_aiohttp,
    bare_consumer,
    bare_http,
    bridge_config,
    bucket_rate,
    create_topic,
    delete_topic,
    fill_topic,
    http_function,
    kafka_event,
    kafka_mapping,
    plot_lines,
    rate_series,
    runtime_function,
    services_env,
    small_value,
    summarize_profile,
    unique,
    workdir,
)

__all__ = ["run"]

PARTITIONS = 6
BATCH = 100
MIN_SECONDS = 2.0  # the least a ceiling runs
SAMPLE_SECONDS = 0.1  # CPU, RSS and committed offsets


def steady_total(records: int) -> int:
    """``records`` rounded up to a multiple of partitions x batch size: each partition gets
    whole batches (the topic is filled round-robin), so no partial batch waits out the
    batching window at the end of the run and the rate is the steady state's."""
    step = PARTITIONS * BATCH
    return -(-records // step) * step


async def for_at_least(
    seconds: float, work: Callable[[int], Awaitable[dict[str, Any]]], amount: int, key: str
) -> dict[str, Any]:
    """``work(amount)``, run again with a larger amount when it took less than ``seconds``
    (only the last run counts): a ceiling timed over a few hundredths of a second means
    little."""
    result = await work(amount)
    if result[key] < seconds:
        amount = int(amount * seconds * 1.25 / max(result[key], 1e-3))
        result = await work(amount)
    return result


def commit_rate(series: list[tuple[float, int]], total: int) -> tuple[float, float]:
    """records/s from the first sample with something committed to the last one."""
    first = next((t, n) for t, n in series if n > 0)
    end = next(t for t, n in series if n >= total)
    return (total - first[1]) / max(end - first[0], 1e-9), end - first[0]


def cpu_use(
    bridges: list[BridgeProcess], series: list[tuple[float, int]], total: int
) -> dict[str, float]:
    """The bridges' CPU between the first and the last commit: µs per record and the
    share of one core they kept busy (summed over the processes)."""
    first = next((t, n) for t, n in series if n > 0)
    end = next(t for t, n in series if n >= total)
    used = 0.0
    for b in bridges:  # each samples on its own clock, from its own start
        shift = b.t0 - bridges[0].t0
        used += b.cpu_between(first[0] - shift, end - shift)
    return {
        "bridge CPU µs/record": used / max(total - first[1], 1) * 1e6,
        "bridge CPU % of a core": used / max(end - first[0], 1e-9) * 100,
    }


async def _run_bridge(
    config_functions: str,
    *,
    bootstrap: str,
    topic: str,
    total: int,
    name: str,
    profile: Path | None = None,
    processes: int = 1,
) -> tuple[list[tuple[float, int]], list[tuple[float, float]], dict[str, float]]:
    """Run ``processes`` bridges in one consumer group (they share the partitions) until
    the group committed ``total`` records; the commit series, the first bridge's RSS and
    the CPU they used."""
    group = unique(f"group-{name}")
    async with contextlib.AsyncExitStack() as stack:
        bridges = []
        for n in range(processes):
            tmp = await stack.enter_async_context(workdir(f"{name}-{n}"))
            mapping = kafka_mapping(
                name, function="fn", bootstrap=bootstrap, topic=topic, group=group,
                batch_size=BATCH, window=0.5,
            )  # fmt: skip
            config = bridge_config(tmp, config_functions, mapping)
            spy = profile if n == 0 else None
            bridge = BridgeProcess(config, tmp, profile=spy, interval=SAMPLE_SECONDS)
            bridges.append(await stack.enter_async_context(bridge))
        async with OffsetWatch(bootstrap, group) as watch:
            try:
                await watch.wait_for(
                    total, timeout=120 + total / 200, interval=SAMPLE_SECONDS, t0=bridges[0].t0
                )
            except TimeoutError:
                for bridge in bridges:
                    bridge.check_alive()
                raise
        return watch.series, bridges[0].rss, cpu_use(bridges, watch.series, total)


async def run(
    *, quick: bool, label: str, profile: bool, targets: list[str], processes: int = 1
) -> Report:
    total = steady_total(600_000 if quick else 1_200_000)
    env = services_env("kafka")
    bootstrap = env["TB_KAFKA_BOOTSTRAP"]
    report = Report("kafka-throughput", quick, label)
    report.params = {
        "records": total,
        "partitions": PARTITIONS,
        "batch_size": BATCH,
        "record_value_bytes": len(small_value(total)),
        "bridge": "python -m bridge run (subprocess)",
        "bridge processes (one consumer group)": processes,
    }
    topic = unique("throughput")
    await create_topic(bootstrap, topic, PARTITIONS)
    try:
        produce_rate = await fill_topic(bootstrap, topic, total, PARTITIONS, small_value)
        report.notes.append(f"topic filled at {produce_rate:,.0f} records/s before the clock")
        source = await bare_consumer(bootstrap, topic, total, min_seconds=MIN_SECONDS)
        source_us = source["cpu_seconds"] / source["records"] * 1e6
        passes = f" ({source['passes']} passes)" if source["passes"] > 1 else ""
        report.rows.append({"what": f"source ceiling: bare aiokafka consumer{passes}",
                            "records/s": source["records_per_s"],
                            "seconds": source["seconds"],
                            "CPU µs/record": source_us})  # fmt: skip
        async with Sink() as sink:
            payload = kafka_event(BATCH, bootstrap, topic)
            report.params["event_bytes"] = len(payload)

            async def httpx_posts(batches: int) -> dict[str, Any]:
                return await bare_http(sink.url, payload, batches=batches, concurrency=PARTITIONS)

            async def aiohttp_posts(batches: int) -> dict[str, Any]:
                return await bare_aiohttp(
                    sink.url, payload, batches=batches, concurrency=PARTITIONS
                )

            sink_run = await for_at_least(MIN_SECONDS, httpx_posts, total // BATCH, "seconds")
            sink_rate = sink_run["batches_per_s"] * BATCH
            report.rows.append({"what": "sink ceiling: bare httpx client, 6 in flight",
                                "records/s": sink_rate,
                                "seconds": sink_run["seconds"],
                                "CPU µs/record": sink_run["cpu_seconds"]
                                / (sink_run["batches"] * BATCH) * 1e6,
                                })  # fmt: skip
            sink_run = await for_at_least(MIN_SECONDS, aiohttp_posts, total // BATCH, "seconds")
            sink_us = sink_run["cpu_seconds"] / (sink_run["batches"] * BATCH) * 1e6
            report.rows.append({"what": "sink ceiling: bare aiohttp client, 6 in flight",
                                "records/s": sink_run["batches_per_s"] * BATCH,
                                "seconds": sink_run["seconds"],
                                "CPU µs/record": sink_us})  # fmt: skip
            # the sink ceiling is a bare httpx client; the bridge posts with aiohttp,
            # which the endpoint answers several times faster, so the better client counts
            httpx_ceiling = min(source["records_per_s"], sink_rate)
            sink_rate = max(sink_rate, sink_run["batches_per_s"] * BATCH)
            ceiling = min(source["records_per_s"], sink_rate)
            # each ceiling is one Python process doing half of the bridge's job; doing both
            # halves in one process costs the sum of their CPU per record
            both = 1e6 / (source_us + sink_us)
            report.notes.append(
                f"reading as the bare consumer does ({source_us:.2f} µs of CPU per record) "
                f"and posting as the bare aiohttp client does ({sink_us:.2f} µs) in one "
                f"process with nothing else to do: at most {both:,.0f} records/s on one "
                f"core, {both / ceiling:.0%} of the lower ceiling"
            )
            series: dict[str, list[tuple[float, float]]] = {}
            if "http" in targets:
                await sink.reset()
                spy = None
                if profile:
                    spy = Path(report.write().with_suffix(".pyspy.txt"))
                commits, rss, cpu = await _run_bridge(
                    http_function(sink.url), bootstrap=bootstrap, topic=topic, total=total,
                    name="http", profile=spy, processes=processes,
                )  # fmt: skip
                stats = await sink.stats()
                at_sink = stats["records"] / max(stats["last"] - stats["first"], 1e-9)
                by_commit, seconds = commit_rate(commits, total)
                report.rows.append({"what": "bridge -> http minimal endpoint (at the endpoint)",
                                    "records/s": at_sink, "seconds": stats["last"] - stats["first"],
                                    "ratio to lower ceiling": at_sink / ceiling})  # fmt: skip
                report.rows.append({"what": "bridge -> http (committed offsets)",
                                    "records/s": by_commit, "seconds": seconds,
                                    "ratio to lower ceiling": by_commit / ceiling,
                                    **cpu})  # fmt: skip
                report.rows[-2]["peak RSS MiB"] = max(m for _, m in rss)
                report.targets.append({"target": "Kafka -> minimal function >= 80% of the "
                                       "lower ceiling (sink: the better bare client)",
                                       "measured": f"{at_sink / ceiling:.0%}",
                                       "met": at_sink / ceiling >= 0.8})  # fmt: skip
                report.targets.append({"target": "the same, with the issue's sink ceiling "
                                       "(a bare httpx client)",
                                       "measured": f"{at_sink / httpx_ceiling:.0%}",
                                       "met": at_sink / httpx_ceiling >= 0.8})  # fmt: skip
                series["bridge -> http (endpoint)"] = bucket_rate(stats["buckets"])
                series["bridge -> http (commits)"] = rate_series(commits)
                report.series["http_commits"] = commits
                report.series["http_rss"] = rss
                if spy is not None:
                    report.series["profile_top"] = summarize_profile(spy)
            if "runtime" in targets:
                commits, rss, cpu = await _run_bridge(
                    runtime_function("noop", PARTITIONS), bootstrap=bootstrap, topic=topic,
                    total=total, name="runtime", processes=processes,
                )  # fmt: skip
                by_commit, seconds = commit_rate(commits, total)
                report.rows.append({"what": "bridge -> runtime, 6 awslambdaric processes "
                                    "(committed offsets)", "records/s": by_commit,
                                    "seconds": seconds, "ratio to lower ceiling":
                                    by_commit / ceiling,
                                    "peak RSS MiB": max(m for _, m in rss),
                                    **cpu})  # fmt: skip
                series["bridge -> runtime (commits)"] = rate_series(commits)
                report.series["runtime_commits"] = commits
    finally:
        await delete_topic(bootstrap, topic)
    stem = report.write()
    plot_lines(
        stem.with_suffix(".throughput.png"), series,
        title=f"Kafka -> function, {total:,} records, batch {BATCH}; ceiling "
        f"{ceiling:,.0f} rec/s", ylabel="records/s",
        xlabel="seconds (commits: since the bridge started; endpoint: since its first record)",
    )  # fmt: skip
    return report
