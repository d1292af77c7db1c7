"""Memory of the bridge process (RSS from /proc, sampled every 0.5 s).

1. Over a long run (1M records; ``--quick`` 200k) Kafka -> minimal endpoint, batch 100:
   RSS against records committed must be flat (the pipeline bounds what is in flight), not
   grow with the records. "Flat" here: the peak over the second half of the records is at
   most 5% (and at least 5 MiB) above the peak over the first half.
2. Idle with 50 Kafka mappings (50 consumer groups on one topic, each having read and
   committed a few records, then nothing), against 1 mapping: the cost of a mapping.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from aiokafka.admin import AIOKafkaAdminClient

from bench._common import (
    BridgeProcess,
    OffsetWatch,
    Report,
    Sink,
    bridge_config,
    create_topic,
    delete_topic,
    fill_topic,
    http_function,
    kafka_mapping,
    plot_lines,
    services_env,
    small_value,
    unique,
    workdir,
)

__all__ = ["run"]

PARTITIONS = 6


def _rss_at(
    rss: list[tuple[float, float]], commits: list[tuple[float, int]]
) -> list[tuple[float, float]]:
    """(records committed, RSS MiB): each RSS sample against the progress at that time."""
    out: list[tuple[float, float]] = []
    j = 0
    for t, mib in rss:
        while j + 1 < len(commits) and commits[j + 1][0] <= t:
            j += 1
        if commits and commits[j][0] <= t:
            out.append((float(commits[j][1]), mib))
    return out


async def _long_run(bootstrap: str, total: int, report: Report) -> list[tuple[float, float]]:
    topic = unique("memory")
    await create_topic(bootstrap, topic, PARTITIONS)
    try:
        await fill_topic(bootstrap, topic, total, PARTITIONS, small_value)
        async with Sink() as sink, workdir("memory") as tmp:
            group = unique("group-memory")
            mapping = kafka_mapping(
                "memory", function="fn", bootstrap=bootstrap, topic=topic, group=group,
                batch_size=100, window=0.5,
            )  # fmt: skip
            config = bridge_config(tmp, http_function(sink.url), mapping)
            async with BridgeProcess(config, tmp) as bridge, OffsetWatch(bootstrap, group) as w:
                try:
                    await w.wait_for(total, timeout=300 + total / 200, interval=0.5, t0=bridge.t0)
                except TimeoutError:
                    bridge.check_alive()
                    raise
                rss = list(bridge.rss)
                commits = w.series
    finally:
        await delete_topic(bootstrap, topic)
    curve = _rss_at(rss, commits)
    first = [m for n, m in curve if 0 < n <= total / 2]
    second = [m for n, m in curve if n > total / 2]
    peak1, peak2 = max(first or [0.0]), max(second or [0.0])
    flat = peak2 <= peak1 + max(5.0, 0.05 * peak1)
    report.rows.append({
        "what": f"Kafka -> http, {total:,} records, batch 100",
        "RSS at the first commit MiB": curve[0][1] if curve else 0.0,
        "peak RSS, 1st half of records MiB": peak1,
        "peak RSS, 2nd half of records MiB": peak2,
        "peak RSS MiB": max(m for _, m in rss),
        "seconds": commits[-1][0] - next(t for t, n in commits if n > 0),
    })  # fmt: skip
    report.targets.append({"target": f"memory flat over {total:,} records",
                           "measured": f"{peak1:.1f} -> {peak2:.1f} MiB", "met": flat})  # fmt: skip
    report.series["rss_vs_records"] = curve
    report.series["rss_vs_time"] = rss
    return curve


async def _idle(bootstrap: str, mappings: int, seconds: float) -> list[tuple[float, float]]:
    topic = unique("idle")
    await create_topic(bootstrap, topic, 1)
    try:
        await fill_topic(bootstrap, topic, 10, 1, small_value)
        groups = [unique(f"group-idle{i}") for i in range(mappings)]
        async with Sink() as sink, workdir("idle") as tmp:
            text = "".join(
                kafka_mapping(f"idle{i}", function="fn", bootstrap=bootstrap, topic=topic,
                              group=g, batch_size=100, window=0.5)
                for i, g in enumerate(groups)
            )  # fmt: skip
            config = bridge_config(tmp, http_function(sink.url), text)
            async with BridgeProcess(config, tmp) as bridge:
                admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
                await admin.start()
                try:  # every mapping has read and committed its 10 records: all are running
                    deadline = time.monotonic() + 180
                    waiting = set(groups)
                    while waiting:
                        for g in list(waiting):
                            offsets = await admin.list_consumer_group_offsets(g)
                            if sum(max(0, m.offset) for m in offsets.values()) >= 10:
                                waiting.discard(g)
                        if time.monotonic() > deadline:
                            bridge.check_alive()
                            raise TimeoutError(f"{len(waiting)} mappings did not start")
                        await asyncio.sleep(0.5)
                finally:
                    await admin.close()
                mark = len(bridge.rss)
                await asyncio.sleep(seconds)
                return bridge.rss[mark:]
    finally:
        await delete_topic(bootstrap, topic)


async def run(*, quick: bool, label: str) -> Report:
    total = 200_000 if quick else 1_000_000
    idle_seconds = 10.0 if quick else 30.0
    env = services_env("kafka")
    bootstrap = env["TB_KAFKA_BOOTSTRAP"]
    report = Report("memory", quick, label)
    report.params = {
        "records": total,
        "partitions": PARTITIONS,
        "idle_seconds": idle_seconds,
        "rss": "VmRSS of the bridge process (python -m bridge run), every 0.5 s",
    }
    curve = await _long_run(bootstrap, total, report)
    idle: dict[int, list[tuple[float, float]]] = {}
    for count in (1, 50):
        idle[count] = await _idle(bootstrap, count, idle_seconds)
        values = [m for _, m in idle[count]]
        report.rows.append({
            "what": f"idle, {count} Kafka mapping{'s' if count > 1 else ''}",
            "median RSS MiB": statistics.median(values), "peak RSS MiB": max(values),
        })  # fmt: skip
    one, fifty = (statistics.median([m for _, m in idle[c]]) for c in (1, 50))
    report.notes.append(f"one more idle Kafka mapping costs about {(fifty - one) / 49:.2f} MiB")
    stem = report.write()
    plot_lines(stem.with_suffix(".rss.png"), {"bridge RSS": curve},
               title=f"bridge RSS over {total:,} records (Kafka -> http, batch 100)",
               xlabel="records committed", ylabel="RSS (MiB)")  # fmt: skip
    return report
