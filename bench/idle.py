"""Idle cost and start-up time of 1, 10 and 50 mappings of one source kind in one bridge
process (``python -m bridge run``, admin API on a free port), against the real test services.

Per kind and count, with fresh resources each time (topic and consumer groups, queues,
table, bucket, folders):

- **ready**: seconds from the process start to ``/readyz`` answering 200 (every mapping's
  ``mapping.started``). That state is set before a source connects, so for the kinds that
  can be checked end to end the bench also waits for
- **delivering**: seconds from the process start until every mapping has delivered the one
  record written before the start (kafka: a one-partition topic, a consumer group per
  mapping, TRIM_HORIZON; sqs: a queue per mapping on ElasticMQ; dynamodb_streams: one table,
  TRIM_HORIZON), or (websocket) until the feed has every mapping's connection;
- then, after a settling pause, for ``idle_seconds``: **RSS** (VmRSS, median of samples
  every 0.5 s), **CPU** (user + system from /proc, read at the start and end of the
  window) and **threads** (at the end of the window) of the bridge process and its workers.

The same is measured for a bridge with no mapping at all ("empty"): RSS above it is what
the mappings cost, the first one of a kind including the libraries it imports; the
marginal cost of one more mapping is (RSS(50) - RSS(10)) / 40: from 10 on, the bridge has
as many worker processes as it will have (one per core, on machines of up to 10 cores),
so that a worker's own memory is not counted as the mappings'.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from bench import latency_sources as ls
from bench._common import (
    BridgeProcess,
    Report,
    Sink,
    bridge_config,
    bridge_cpu_seconds,
    bridge_pids,
    create_topic,
    delete_topic,
    fill_topic,
    http_function,
    services_env,
    small_value,
    unique,
    workdir,
)
from bench.websocket import Feed

__all__ = ["KINDS", "run"]

KINDS = ("kafka", "sqs", "dynamodb_streams", "s3", "local_dir", "schedule", "websocket")
COUNTS = (1, 10, 50)
SETTLE_SECONDS = 3.0
_SERVICES = {"kafka": "kafka", "sqs": "elasticmq", "dynamodb_streams": "dynamodb", "s3": "minio"}
# kinds whose every mapping delivers one record written before the start
_DELIVERS = ("kafka", "sqs", "dynamodb_streams")


def _mappings(sources: list[dict[str, Any]]) -> str:
    out = []
    for i, source in enumerate(sources):
        options = "".join(f"\n      {k}: {json.dumps(v)}" for k, v in source.items())
        batch = 1 if source["type"] == "schedule" else 10  # a schedule has one event
        out.append(
            f"\n  - name: m{i}\n    function: fn\n    batch_size: {batch}\n    source:{options}\n"
        )
    return "".join(out) or " []\n"


def _aws(env: dict[str, str], endpoint: str) -> dict[str, str]:
    return {
        "endpoint_url": env[endpoint],
        "region": env.get("TB_AWS_REGION", "us-east-1"),
        "aws_access_key_id": env.get("TB_AWS_ACCESS_KEY_ID", "tbtest"),
        "aws_secret_access_key": env.get("TB_AWS_SECRET_ACCESS_KEY", "tbtest"),
    }


@contextlib.asynccontextmanager
async def _sources(
    kind: str, count: int, env: dict[str, str], tmp: Path, stack: contextlib.AsyncExitStack
) -> AsyncIterator[list[dict[str, Any]]]:
    """``count`` source settings of ``kind`` and the resources behind them (removed after)."""
    if not kind:  # the empty bridge
        yield []
    elif kind == "kafka":
        bootstrap = env["TB_KAFKA_BOOTSTRAP"]
        topic = unique("idle")
        await create_topic(bootstrap, topic, 1)
        try:
            await fill_topic(bootstrap, topic, 1, 1, small_value)
            yield [
                {"type": "kafka", "bootstrap_servers": bootstrap, "topics": [topic],
                 "consumer_group_id": unique(f"group-idle{i}"),
                 "starting_position": "TRIM_HORIZON"}
                for i in range(count)
            ]  # fmt: skip
        finally:
            await delete_topic(bootstrap, topic)
    elif kind == "sqs":
        aws = _aws(env, "TB_ELASTICMQ_ENDPOINT")
        store = ls.Store(aws["endpoint_url"], aws["aws_access_key_id"],
                         aws["aws_secret_access_key"], aws["region"])  # fmt: skip
        async with store.client("sqs") as sqs:
            urls = []
            for _ in range(count):
                url = (await sqs.create_queue(QueueName=unique("idle")))["QueueUrl"]
                await sqs.send_message(QueueUrl=url, MessageBody='{"idle": 1}')
                urls.append(url)
            try:
                yield [{"type": "sqs", "queue_url": url, **aws} for url in urls]
            finally:
                for url in urls:
                    with contextlib.suppress(Exception):
                        await sqs.delete_queue(QueueUrl=url)
    elif kind == "dynamodb_streams":
        aws = _aws(env, "TB_DYNAMODB_ENDPOINT")
        store = ls.Store(aws["endpoint_url"], aws["aws_access_key_id"],
                         aws["aws_secret_access_key"], aws["region"])  # fmt: skip
        name = await stack.enter_async_context(ls.table(store))
        async with store.client("dynamodb") as ddb:
            await ddb.put_item(TableName=name, Item={"pk": {"S": "idle"}})
        yield [
            {"type": "dynamodb_streams", "table_name": name, "starting_position": "TRIM_HORIZON",
             **aws}
            for _ in range(count)
        ]  # fmt: skip
    elif kind == "s3":
        minio = [env[f"TB_MINIO_{k}"] for k in ("ENDPOINT", "ACCESS_KEY", "SECRET_KEY")]
        store = ls.Store(*minio, env.get("TB_MINIO_REGION", "us-east-1"))
        name = await stack.enter_async_context(ls.bucket(store, webhook=False))
        yield [{"type": "s3", "bucket": name, **store.source_options()} for _ in range(count)]
    elif kind == "local_dir":
        yield [{"type": "local_dir", "path": str(tmp / f"dir{i}")} for i in range(count)]
    elif kind == "schedule":
        yield [{"type": "schedule", "expression": "rate(1 hour)"} for _ in range(count)]
    elif kind == "websocket":
        feed = await stack.enter_async_context(Feed(0))
        try:
            yield [{"type": "websocket", "url": feed.url} for _ in range(count)]
        finally:  # the feed's handlers wait for "go" even once the client is gone
            async with httpx.AsyncClient(trust_env=False) as client:
                await client.post(feed.base + "/go")
    else:
        raise ValueError(f"unknown kind {kind!r}")


async def _ready(bridge: BridgeProcess, timeout: float = 120) -> float:
    """Seconds from the process start to /readyz 200."""
    state = bridge.workdir / "state" / "admin.json"
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
        while True:
            bridge.check_alive()
            with contextlib.suppress(OSError, ValueError, KeyError, httpx.HTTPError):
                address = json.loads(state.read_text())["address"]
                response = await client.get(f"http://{address}/readyz")
                if response.status_code == 200:
                    return time.monotonic() - bridge.t0
            if time.monotonic() > deadline:
                raise TimeoutError(f"not ready in {timeout:.0f} s")
            await asyncio.sleep(0.05)


async def _delivering(
    kind: str, count: int, bridge: BridgeProcess, sink: Sink, feed_url: str | None
) -> float | None:
    """Seconds from the process start until every mapping delivered (or connected)."""
    if kind not in _DELIVERS and kind != "websocket":
        return None
    deadline = time.monotonic() + 180
    async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
        while True:
            bridge.check_alive()
            if kind == "websocket":
                assert feed_url is not None
                stats = (await client.get(feed_url)).json()
                done = sum(1 for c in stats if "closed" not in c)
            else:
                done = (await sink.stats("count"))["records"]
            if done >= count:
                return time.monotonic() - bridge.t0
            if time.monotonic() > deadline:
                raise TimeoutError(f"{kind}: {done}/{count} mappings delivering")
            await asyncio.sleep(0.05)


async def _measure(
    kind: str, count: int, env: dict[str, str], idle_seconds: float
) -> dict[str, Any]:
    async with contextlib.AsyncExitStack() as stack:
        tmp = await stack.enter_async_context(workdir(f"idle-{kind}-{count}"))
        sink = await stack.enter_async_context(Sink())
        sources = await stack.enter_async_context(_sources(kind, count, env, tmp, stack))
        feed_url = None
        if kind == "websocket":
            feed_url = sources[0]["url"].replace("ws://", "http://").replace("/ws", "/stats")
        config = bridge_config(tmp, http_function(sink.url), _mappings(sources))
        bridge = BridgeProcess(config + "admin: {port: 0}\n", tmp)
        async with bridge:
            ready = await _ready(bridge)
            delivering = await _delivering(kind, count, bridge, sink, feed_url)
            await asyncio.sleep(SETTLE_SECONDS)
            mark = len(bridge.rss)
            cpu0, t0 = bridge_cpu_seconds(bridge.proc.pid), time.monotonic()  # type: ignore[union-attr]
            await asyncio.sleep(idle_seconds)
            cpu1, t1 = bridge_cpu_seconds(bridge.proc.pid), time.monotonic()  # type: ignore[union-attr]
            pids = bridge_pids(bridge.proc.pid)  # type: ignore[union-attr]
            threads = sum(_threads(pid) for pid in pids)
            bridge.check_alive()
            rss = statistics.median(m for _, m in bridge.rss[mark:])
    return {
        "kind": kind or "empty",
        "mappings": count,
        "ready s": ready,
        "delivering s": delivering if delivering is not None else "",
        "RSS MiB": rss,
        "CPU % of a core": (cpu1 - cpu0) / (t1 - t0) * 100,
        "threads": threads,
    }


def _threads(pid: int) -> int:
    """How many threads the process ``pid`` has (0 if it cannot be read)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


async def run(*, quick: bool, label: str, kinds: list[str] | None = None) -> Report:
    kinds = list(KINDS) if kinds is None else kinds
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown kinds {unknown} (expected some of {', '.join(KINDS)})")
    idle_seconds = 10.0 if quick else 30.0
    env = services_env(*dict.fromkeys(_SERVICES[k] for k in kinds if k in _SERVICES))
    report = Report("idle", quick, label)
    report.params = {
        "idle_seconds": idle_seconds,
        "settle_seconds": SETTLE_SECONDS,
        "counts": ", ".join(map(str, COUNTS)),
        "bridge": "python -m bridge run (subprocess), admin: {port: 0}, http target",
        "sqs": "ElasticMQ",
    }
    empty = await _measure("", 0, env, idle_seconds)
    base = empty["RSS MiB"]
    report.rows.append(empty)
    for kind in kinds:
        rows: dict[int, dict[str, Any]] = {}
        for count in COUNTS:
            row = await _measure(kind, count, env, idle_seconds)
            row["RSS above empty, per mapping MiB"] = (row["RSS MiB"] - base) / count
            row["CPU % of a core per mapping"] = (
                row["CPU % of a core"] - empty["CPU % of a core"]
            ) / count
            rows[count] = row
            report.rows.append(row)
            report.write()  # what came so far, should a later kind fail
        first, last = rows[COUNTS[1]], rows[COUNTS[-1]]  # both with every worker started
        n = COUNTS[-1] - COUNTS[1]
        marginal = (last["RSS MiB"] - first["RSS MiB"]) / n
        cpu = (last["CPU % of a core"] - first["CPU % of a core"]) / n
        start = max(x for x in (last["ready s"], last["delivering s"]) if x != "")
        report.targets.append({
            "kind": kind,
            "one more mapping MiB (50 vs 10)": marginal,
            "one more mapping, % of a core": cpu,
            "50 mappings start s": start,
            "<= 1 MiB": marginal <= 1.0,
            "<= 0.05 %": cpu <= 0.05,
            "< 3 s": start < 3.0,
        })  # fmt: skip
    report.notes.append(
        "'one more mapping' is (figure at 50 - figure at 10) / 40: the marginal cost, without "
        "the libraries the first mapping of a kind imports or the worker processes' own; '50 "
        "mappings start' is the later of ready and delivering."
    )
    report.write()
    return report
