"""Write -> handler start latency, window 0, per source:

- ``kafka``: produce -> handler start at a steady 1,000 records/s, 6 partitions,
  batch_size 100. Each record carries its send time (``{"t": <epoch s>}``, taken just
  before ``producer.send``).
- ``s3``: MinIO PUT -> handler start at 50 PUT/s, batch_size 1 (as S3 invokes), through
  each way the connector sees changes, alone: the listen stream, the webhook receiver and
  the reconcile listing (:mod:`bench.latency_sources`). The send time is in the key.
- ``dynamodb``: PutItem -> handler start at 50 items/s, batch_size 100, with the
  connector's default poll interval and with 0.05 s. The send time is an attribute.

The handler notes the time it started. Both clocks are this machine's.
``http``: the minimal endpoint (its own process) stamps when it has read the request.
``runtime``: an awslambdaric handler (6 processes) stamps at handler start.
A warm-up phase (group joined, streams connected, runtimes started) is not counted.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from bench import latency_sources as ls
from bench._common import (
    BridgeProcess,
    Report,
    Sink,
    bridge_config,
    create_topic,
    delete_topic,
    http_function,
    kafka_mapping,
    percentile,
    runtime_function,
    services_env,
    unique,
    workdir,
)

__all__ = ["SOURCES", "run"]

SOURCES = ("kafka", "s3", "dynamodb")

PARTITIONS = 6
RATE = 1000
WARMUP_SECONDS = 3.0
KEYS = 64  # distinct record keys (parallelization_factor spreads a partition by key)


async def produce_steady(bootstrap: str, topic: str, seconds: float) -> tuple[int, float]:
    """Send RATE records/s for ``seconds``, paced every millisecond, keyed over KEYS keys;
    return (count, start)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks=1)
    await producer.start()
    started_wall = time.time()
    started = time.monotonic()
    sent = 0
    pending = []
    try:
        while True:
            elapsed = time.monotonic() - started
            if elapsed >= seconds:
                break
            due = int(elapsed * RATE)
            while sent < due:
                value = b'{"t":%.6f}' % time.time()
                key = b"key-%d" % (sent % KEYS)
                partition = sent % PARTITIONS
                pending.append(await producer.send(topic, value, key=key, partition=partition))
                sent += 1
            await asyncio.sleep(0.001)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent, started_wall


def _stats(name: str, rate: str, latencies_ms: list[float]) -> dict[str, Any]:
    return {
        "path": name,
        "rate": rate,
        "records": len(latencies_ms),
        "p50 ms": percentile(latencies_ms, 0.50),
        "p95 ms": percentile(latencies_ms, 0.95),
        "p99 ms": percentile(latencies_ms, 0.99),
        "max ms": max(latencies_ms) if latencies_ms else float("nan"),
    }


def _read_stamps(path: Path) -> list[tuple[float, float]]:
    if not path.exists():
        return []
    pairs = []
    for line in path.read_text().splitlines():
        produced, started = line.split()
        pairs.append((float(produced), float(started)))
    return pairs


async def _measure(
    target: str, *, bootstrap: str, seconds: float
) -> tuple[list[float], list[tuple[float, float]]]:
    topic = unique(f"latency-{target}")
    await create_topic(bootstrap, topic, PARTITIONS)
    try:
        async with workdir(f"latency-{target}") as tmp, Sink(stamp=True) as sink:
            stamps = tmp / "stamps.txt"
            if target == "http":
                functions = http_function(sink.url)
            else:
                functions = runtime_function("stamp", PARTITIONS, {"STAMP_OUT": str(stamps)})
            mapping = kafka_mapping(
                "latency", function="fn", bootstrap=bootstrap, topic=topic,
                group=unique("group-latency"), batch_size=100, window=0,
            )  # fmt: skip
            async with BridgeProcess(bridge_config(tmp, functions, mapping), tmp) as bridge:

                async def seen() -> int:
                    if target == "http":
                        return int((await sink.stats("count"))["records"])
                    return len(_read_stamps(stamps))

                async def wait_seen(count: int) -> list[tuple[float, float]]:
                    deadline = time.monotonic() + 120
                    while True:
                        got = await seen()
                        if got >= count:
                            if target == "http":
                                return [(p, s) for p, s in (await sink.stats())["pairs"]]
                            return _read_stamps(stamps)
                        if time.monotonic() > deadline:
                            bridge.check_alive()
                            raise TimeoutError(f"{target}: {got}/{count} records seen")
                        await asyncio.sleep(0.5)

                warm, _ = await produce_steady(bootstrap, topic, WARMUP_SECONDS)
                await wait_seen(warm)
                count, start = await produce_steady(bootstrap, topic, seconds)
                pairs = await wait_seen(warm + count)
                rss = bridge.rss
        measured = [(p, s) for p, s in pairs if p >= start]
        return [(s - p) * 1000 for p, s in measured], rss
    finally:
        await delete_topic(bootstrap, topic)


_SERVICES = (("kafka", "kafka"), ("s3", "minio"), ("dynamodb", "dynamodb"))


async def run(
    *, quick: bool, label: str, targets: list[str], sources: list[str] | None = None
) -> Report:
    sources = list(SOURCES) if sources is None else sources
    unknown = sorted(set(sources) - set(SOURCES))
    if unknown:
        raise ValueError(f"unknown sources {unknown} (expected some of {', '.join(SOURCES)})")
    seconds = 10.0 if quick else 30.0
    env = services_env(*(service for source, service in _SERVICES if source in sources))
    report = Report("latency", quick, label)
    report.params = {"seconds measured per path": seconds, "maximum_batching_window_seconds": 0}
    if "kafka" in sources:
        report.params["kafka"] = f"{RATE} records/s, {PARTITIONS} partitions, batch_size 100"
    if "s3" in sources:
        report.params["s3"] = (
            f"{ls.S3_RATE} PUT/s of {len(ls.BODY)}-byte objects, batch_size 1, "
            "maximum_concurrency 10 (S3's defaults), one way of seeing changes at a time "
            "(the others off); listen and reconcile on the test MinIO, webhook on a MinIO "
            "of the bench's own (same build), with and without a queue_dir"
        )
    if "dynamodb" in sources:
        report.params["dynamodb"] = (
            f"{ls.DDB_RATE} PutItem/s of small items, stream NEW_IMAGE, batch_size 100"
        )
    report.params["bridge"] = "python -m bridge run (subprocess)"
    samples: dict[str, list[float]] = {}

    def add(name: str, rate: str, latencies: list[float]) -> None:
        samples[name] = latencies
        report.rows.append(_stats(name, rate, latencies))

    if "kafka" in sources:
        bootstrap = env["TB_KAFKA_BOOTSTRAP"]
        for target in targets:
            latencies, _ = await _measure(target, bootstrap=bootstrap, seconds=seconds)
            add(f"Kafka produce -> handler start ({target})", f"{RATE}/s", latencies)
    if "s3" in sources:
        for mode in ls.S3_MODES:
            for target in targets:
                latencies = await ls.measure_s3(mode, target, env, seconds)
                add(ls.s3_path(mode, target), f"{ls.S3_RATE}/s", latencies)
    if "dynamodb" in sources:
        default = ls.default_poll()
        for poll in (None, ls.FAST_POLL):
            for target in targets:
                latencies = await ls.measure_dynamodb(poll, target, env, seconds)
                add(ls.ddb_path(poll, default, target), f"{ls.DDB_RATE}/s", latencies)

    kafka_rows = [row for row in report.rows if row["path"].startswith("Kafka")]
    if kafka_rows:
        first = kafka_rows[0]
        report.targets.append({"target": "produce-to-handler p99 < 50 ms at 1,000 records/s, "
                               "window 0", "measured": f"{first['p99 ms']:.1f} ms "
                               f"({first['path']})", "met": first["p99 ms"] < 50})  # fmt: skip
    report.notes += _notes(sources)
    report.series["latencies_ms"] = samples
    stem = report.write()
    plot_latencies(stem.with_suffix(".latency.png"), samples,
                   title="write -> handler start, window 0")  # fmt: skip
    return report


def plot_latencies(path: Path, samples: dict[str, list[float]], *, title: str) -> None:
    """A latency plot for paths whose latencies differ by orders of
    magnitude: the CDFs on a log axis, and p50/p95/p99/max per path as labelled bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.transforms import blended_transform_factory

    names = [name for name, values in samples.items() if values]
    quantiles = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))
    fig, (cdf, bars) = plt.subplots(
        2, 1, figsize=(11, 6.5 + 0.8 * len(names)), layout="constrained",
        gridspec_kw={"height_ratios": [4.5 + 0.2 * len(names), 0.8 * len(names)]},
    )  # fmt: skip
    # one colour per path, a dashed line for the runtime target
    bases = list(dict.fromkeys(name.rsplit(" (", 1)[0] for name in names))
    for name in names:
        ordered = sorted(samples[name])
        n = len(ordered)
        color = f"C{bases.index(name.rsplit(' (', 1)[0]) % 10}"
        style = "--" if name.endswith("(runtime)") else "-"
        ys = [(i + 1) / n for i in range(n)]
        cdf.plot(ordered, ys, style, color=color, label=name)
    cdf.set_xscale("log")
    cdf.set_xlabel("latency (ms)")
    cdf.set_ylabel("fraction of writes")
    cdf.grid(alpha=0.3, which="both")
    cdf.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    height = 0.16
    label_at = blended_transform_factory(bars.transAxes, bars.transData)
    for k, (label, q) in enumerate(quantiles):
        ys = [i + (k - 1) * height for i in range(len(names))]
        xs = [percentile(samples[name], q) for name in names]
        bars.barh(ys, xs, height=height, label=label)
        for y, x in zip(ys, xs, strict=True):
            bars.text(x, y, f" {x:,.0f}" if x >= 10 else f" {x:.1f}", va="center", fontsize=7)
    for i, name in enumerate(names):
        bars.text(0.003, i - 1.5 * height, name, transform=label_at, va="bottom", fontsize=8)
    bars.set_yticks([])
    bars.set_ylim(len(names) - 0.3, -0.75)
    bars.set_xscale("log")
    bars.set_xlabel("latency (ms): p50, p95, p99, max")
    bars.grid(alpha=0.3, axis="x", which="both")
    bars.legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _notes(sources: list[str]) -> list[str]:
    notes = [
        "Every writer keeps writing at its rate until every write of the measured window "
        "was seen by the handler, so the last writes of the window see the same steady "
        "state as the others."
    ]
    if "s3" in sources:
        notes += [
            "s3 listen stream: the MinIO build of scripts/test-services never flushes its "
            "ListenBucketNotification response (its response writer has no Flush, a "
            "regression of minio PR #21651; see _flush_burst in tests/connectors/"
            "test_s3.py): the stream leaves MinIO in 4 KB pieces. One event line is about "
            "1.2 KB here, so an event waits for roughly the next 2-3 PUTs; at 50 PUT/s "
            "that is most of the gap between the listen and the webhook figures, and it "
            "shrinks as the PUT rate grows. The response headers wait for the first 4 KB "
            "too (the bridge logs 'listen stream ... connected' only then), and a quiet "
            "stream is dropped after 3 x ping_seconds and reconnected, losing what MinIO "
            "held back to push: a lone PUT is delivered only by the next periodic listing "
            "(reconcile_interval_seconds, 60 s by default).",
            "s3 webhook: without a queue_dir MinIO POSTs each event to the connector's "
            "receiver as it happens (the low-latency path; events are lost to the webhook "
            "while the receiver is down, a listing finds them). With a queue_dir (as the "
            "connector's tests configure it) MinIO stores each event in the directory and "
            "its replay loop lists the directory every 3 s (retryInterval in MinIO's "
            "internal/store/store.go) and posts the items one at a time: 0-3 s plus the "
            "replay of the items before it.",
            f"s3 reconcile: a ListObjectsV2 listing of the whole bucket every "
            f"{ls.RECONCILE_INTERVAL:g} s (reconcile_interval_seconds; the default, 60 s, is "
            "the safety net under push, not a delivery path): about half the period plus "
            "the listing, and the period is the interval plus a listing, which grows with "
            "the bucket (about 2,000 objects at the end of a full run).",
            "s3, every mode: each key is its own partition and S3's maximum_concurrency is "
            "10. When the 10 deliveries in flight finish in the same event-loop turn, the "
            "bridge starts the next batches only when more records arrive (bridge/"
            "pipeline.py: _deliver wakes the dispatcher before its task leaves _in_flight, "
            "so the dispatcher sees no free slot and sleeps). Reconcile rounds show it: "
            "some deliver 10 of a listing's ~50 objects, the rest come with the next one.",
        ]
    if "dynamodb" in sources:
        notes.append(
            "dynamodb: a shard that returned records is polled again poll_interval_seconds "
            "later, so the poll interval sets the floor: about half of it on average, all "
            "of it at worst, plus GetRecords and delivery."
        )
    return notes
