"""Unbatched invocations/s: Kafka -> minimal endpoint with batch_size 1 (window 0), so every
record is one invocation and the figure is the bridge's per-invocation overhead (read,
normalize, deliver, commit). Ceilings in the same run: a bare httpx client and a bare aiohttp
client posting the same one-record event, 6 in flight (the bridge has at most one per
partition, 6 partitions); the better client counts."""

from __future__ import annotations

from pathlib import Path

from bench._common import (
    BridgeProcess,
    OffsetWatch,
    Report,
    Sink,
    bare_aiohttp,
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
    services_env,
    small_value,
    summarize_profile,
    unique,
    workdir,
)

__all__ = ["run"]

PARTITIONS = 6


async def run(*, quick: bool, label: str, profile: bool = False) -> Report:
    total = 5_000 if quick else 20_000
    env = services_env("kafka")
    bootstrap = env["TB_KAFKA_BOOTSTRAP"]
    report = Report("invocations", quick, label)
    report.params = {
        "records": total,
        "partitions": PARTITIONS,
        "batch_size": 1,
        "maximum_batching_window_seconds": 0,
        "bridge": "python -m bridge run (subprocess)",
    }
    topic = unique("invocations")
    await create_topic(bootstrap, topic, PARTITIONS)
    try:
        await fill_topic(bootstrap, topic, total, PARTITIONS, small_value)
        async with Sink() as sink, workdir("invocations") as tmp:
            ceiling = await bare_http(
                sink.url, kafka_event(1, bootstrap, topic), batches=total, concurrency=PARTITIONS
            )
            report.rows.append({"what": "ceiling: bare httpx client, 6 in flight",
                                "invocations/s": ceiling["batches_per_s"],
                                "seconds": ceiling["seconds"],
                                "CPU µs/invocation": ceiling["cpu_seconds"] / total * 1e6,
                                })  # fmt: skip
            other = await bare_aiohttp(
                sink.url, kafka_event(1, bootstrap, topic), batches=total, concurrency=PARTITIONS
            )
            report.rows.append({"what": "ceiling: bare aiohttp client, 6 in flight",
                                "invocations/s": other["batches_per_s"],
                                "seconds": other["seconds"],
                                "CPU µs/invocation": other["cpu_seconds"] / total * 1e6,
                                })  # fmt: skip
            ceiling = max(ceiling, other, key=lambda run: run["batches_per_s"])
            await sink.reset()
            group = unique("group-invocations")
            mapping = kafka_mapping(
                "invocations", function="fn", bootstrap=bootstrap, topic=topic, group=group,
                batch_size=1, window=0,
            )  # fmt: skip
            config = bridge_config(tmp, http_function(sink.url), mapping)
            spy = Path(report.write().with_suffix(".pyspy.txt")) if profile else None
            async with (
                BridgeProcess(config, tmp, profile=spy) as bridge,
                OffsetWatch(bootstrap, group) as w,
            ):
                try:
                    await w.wait_for(total, timeout=120 + total / 50, t0=bridge.t0)
                except TimeoutError:
                    bridge.check_alive()
                    raise
            if spy is not None:
                report.series["profile_top"] = summarize_profile(spy)
            first = next(t for t, n in w.series if n > 0)
            end = next(t for t, n in w.series if n >= total)
            cpu = bridge.cpu_between(first, end)
            stats = await sink.stats()
            seconds = stats["last"] - stats["first"]
            rate = stats["requests"] / seconds
            report.rows.append({"what": "bridge -> http, batch_size 1 (at the endpoint)",
                                "invocations/s": rate, "seconds": seconds,
                                "ratio to ceiling": rate / ceiling["batches_per_s"],
                                "peak RSS MiB": max(m for _, m in bridge.rss),
                                "CPU µs/invocation": cpu / total * 1e6,
                                "bridge CPU % of a core": cpu / max(end - first, 1e-9) * 100,
                                })  # fmt: skip
            report.series["endpoint_buckets"] = stats["buckets"]
    finally:
        await delete_topic(bootstrap, topic)
    stem = report.write()
    plot_lines(stem.with_suffix(".throughput.png"),
               {"bridge -> http, batch_size 1": bucket_rate(stats["buckets"])},
               title="unbatched invocations", xlabel="seconds since the first invocation",
               ylabel="invocations/s")  # fmt: skip
    return report
