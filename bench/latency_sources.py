"""Write -> handler start latency for the ``s3`` and ``dynamodb_streams`` sources.

A writer paces ``RATE`` writes a second (each in a task of its own, at most ``INFLIGHT``
at once) and carries the time taken just before each write in what it writes:

- S3: a 64-byte object PUT to ``lat/<n>/<epoch s>`` (the key is the send time);
- DynamoDB: a PutItem of ``{"pk": <n>, "t": <epoch s>}`` (stream view ``NEW_IMAGE``).

The writer runs without a break from the warm-up to the end: it does not stop when the
measured window closes but goes on until every write of the window was seen by the
handler, so the last writes of the window meet the same steady state as the others (a
MinIO listen stream, for one, holds events back until more follow them). Only writes
sent inside the window count; the warm-up (``WARMUP_SECONDS``, then until every write of
it was seen) opens connections and starts runtimes first.

S3 modes (each alone, the connector's other ways off, batch_size 1 and window 0 as S3
invokes functions):

- ``listen``: MinIO's ListenBucketNotification stream (``push``) on the test MinIO;
- ``webhook``: MinIO's ``notify_webhook`` target POSTing to the connector's receiver.
  A webhook target is server configuration (environment at start-up), so this mode runs
  a MinIO of its own (the same binary, ``scripts/test-services``' build), without a
  ``queue_dir`` (events are posted as they happen; lost if the receiver is down);
- ``webhook-queue``: the same with a ``queue_dir``, as the connector's tests configure it
  (MinIO persists each event and replays the directory: reliable, but slower);
- ``reconcile``: ListObjectsV2 listings every ``RECONCILE_INTERVAL`` s (the default,
  60 s, is a safety net, not a delivery path one would time).

DynamoDB: the connector's default ``poll_interval_seconds`` and ``FAST_POLL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.machinery
import importlib.util
import json
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiobotocore.session
import httpx
from botocore.config import Config

from bench._common import (
    ROOT,
    BridgeProcess,
    Sink,
    bridge_config,
    free_port,
    http_function,
    runtime_function,
    unique,
    workdir,
)

__all__ = [
    "DDB_RATE",
    "FAST_POLL",
    "RECONCILE_INTERVAL",
    "S3_MODES",
    "S3_RATE",
    "ddb_path",
    "measure_dynamodb",
    "measure_s3",
    "s3_path",
]

S3_RATE = 50  # PUT/s
DDB_RATE = 50  # PutItem/s
INFLIGHT = 32
WARMUP_SECONDS = 3.0
DRAIN_TIMEOUT = 120.0
S3_MODES = ("listen", "webhook", "webhook-queue", "reconcile")
RECONCILE_INTERVAL = 1.0
FAST_POLL = 0.05
RUNTIME_PROCESSES = 6
BODY = b"x" * 64
WEBHOOK_TOKEN = "bench-latency-token"
WEBHOOK_ARN = "arn:minio:sqs::TB:webhook"


def s3_path(mode: str, target: str) -> str:
    how = {
        "listen": "listen stream",
        "webhook": "webhook (MinIO without queue_dir)",
        "webhook-queue": "webhook (MinIO with queue_dir)",
        "reconcile": f"reconcile listing every {RECONCILE_INTERVAL:g} s",
    }[mode]
    return f"MinIO PUT -> handler start, {how} ({target})"


def ddb_path(poll: float | None, default_poll: float, target: str) -> str:
    how = f"poll {default_poll:g} s (default)" if poll is None else f"poll {poll:g} s"
    return f"DynamoDB PutItem -> handler start, {how} ({target})"


# ------------------------------------------------------------------ clients & servers


@dataclass(frozen=True)
class Store:
    """Where an S3 / DynamoDB API is, and the credentials it takes."""

    url: str
    access_key: str
    secret_key: str
    region: str

    def client(self, service: str) -> Any:
        return aiobotocore.session.get_session().create_client(
            service,
            region_name=self.region,
            endpoint_url=self.url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(
                max_pool_connections=INFLIGHT,
                retries={"max_attempts": 2, "mode": "standard"},
                s3={"addressing_style": "path"},
            ),
        )

    def source_options(self) -> dict[str, Any]:
        return {
            "endpoint_url": self.url,
            "region": self.region,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
        }


def _minio_binary() -> Path:
    """The MinIO binary ``scripts/test-services`` installed (it is running already)."""
    loader = importlib.machinery.SourceFileLoader(
        "tb_test_services", str(ROOT / "scripts" / "test-services")
    )
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return Path(module.SERVICES["minio"].binary)


@contextlib.asynccontextmanager
async def webhook_minio(home: Path, webhook_port: int, *, queue_dir: bool) -> AsyncIterator[Store]:
    """A MinIO of its own whose ``notify_webhook`` target TB posts to the connector's
    receiver on ``webhook_port``; ``queue_dir``: with a queue directory (as the
    connector's tests, and its README's "a store that retries failed posts", have it)."""
    port = free_port()
    store = Store(f"http://127.0.0.1:{port}", "benchminio", "benchminio-secret", "us-east-1")
    (home / "data").mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "MINIO_ROOT_USER": store.access_key,
        "MINIO_ROOT_PASSWORD": store.secret_key,
        "MINIO_BROWSER": "off",
        "MINIO_UPDATE": "off",
        "MINIO_REGION": store.region,
        "MINIO_NOTIFY_WEBHOOK_ENABLE_TB": "on",
        "MINIO_NOTIFY_WEBHOOK_ENDPOINT_TB": f"http://127.0.0.1:{webhook_port}/minio",
        "MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_TB": WEBHOOK_TOKEN,
    }
    if queue_dir:
        env["MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_TB"] = str(home / "queue")
    cmd = [str(_minio_binary()), "server", str(home / "data"), "--quiet"]
    cmd += ["--address", f"127.0.0.1:{port}", "--console-address", f"127.0.0.1:{free_port()}"]
    with (home / "minio.log").open("ab") as log:
        # started once, before any clock, and stopped below
        proc = subprocess.Popen(  # noqa: ASYNC220
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(timeout=2, trust_env=False) as client:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError((home / "minio.log").read_text()[-2000:])
                with contextlib.suppress(httpx.HTTPError):
                    ready = await client.get(f"{store.url}/minio/health/ready")
                    if ready.status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError("the webhook MinIO did not become ready in 60 s")
                await asyncio.sleep(0.1)
        yield store
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@contextlib.asynccontextmanager
async def bucket(store: Store, *, webhook: bool) -> AsyncIterator[str]:
    name = unique("lat")
    async with store.client("s3") as s3:
        await s3.create_bucket(Bucket=name)
        if webhook:
            queues = [
                {
                    "QueueArn": WEBHOOK_ARN,
                    "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
                }
            ]
            await s3.put_bucket_notification_configuration(
                Bucket=name, NotificationConfiguration={"QueueConfigurations": queues}
            )
    try:
        yield name
    finally:
        with contextlib.suppress(Exception):  # best effort: the figures do not depend on it
            async with store.client("s3") as s3:
                if webhook:
                    await s3.put_bucket_notification_configuration(
                        Bucket=name, NotificationConfiguration={}
                    )
                pages = s3.get_paginator("list_objects_v2").paginate(Bucket=name)
                async for page in pages:
                    keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                    if keys:
                        await s3.delete_objects(Bucket=name, Delete={"Objects": keys})
                await s3.delete_bucket(Bucket=name)


@contextlib.asynccontextmanager
async def table(store: Store) -> AsyncIterator[str]:
    name = unique("lat")
    async with store.client("dynamodb") as ddb:
        await ddb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
        )
        await ddb.get_waiter("table_exists").wait(
            TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100}
        )
    try:
        yield name
    finally:
        with contextlib.suppress(Exception):
            async with store.client("dynamodb") as ddb:
                await ddb.delete_table(TableName=name)


# ------------------------------------------------------------------ the steady writer


@dataclass
class Writer:
    """Calls ``write(n, t)`` ``rate`` times a second until stopped; ``t`` is the send time
    (epoch s, 6 decimals), taken when the write starts and kept in ``sent``."""

    rate: float
    write: Callable[[int, float], Awaitable[None]]
    sent: list[float] = field(default_factory=list)
    failed: list[BaseException] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _writes: set[asyncio.Task[None]] = field(default_factory=set)

    def start(self) -> None:
        self._task = asyncio.create_task(self._pace())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.gather(*self._writes, return_exceptions=True)

    def check(self) -> None:
        if self.failed:
            raise RuntimeError(f"{len(self.failed)} writes failed, first: {self.failed[0]!r}")

    async def _pace(self) -> None:
        slots = asyncio.Semaphore(INFLIGHT)
        started = time.monotonic()
        n = 0
        while True:
            due = int((time.monotonic() - started) * self.rate)
            while n < due:
                task = asyncio.create_task(self._one(slots, n))
                self._writes.add(task)
                task.add_done_callback(self._writes.discard)
                n += 1
            await asyncio.sleep(0.002)

    async def _one(self, slots: asyncio.Semaphore, n: int) -> None:
        async with slots:
            t = round(time.time(), 6)
            self.sent.append(t)
            try:
                await self.write(n, t)
            except Exception as exc:
                self.failed.append(exc)


# ------------------------------------------------------------------ where stamps are read


class Stamps:
    """The ``(produced_at, started_at)`` pairs seen so far, by the endpoint (``http``) or
    by the ``stamp`` handler (``runtime``, from its file)."""

    def __init__(self, target: str, sink: Sink, path: Path) -> None:
        self.target = target
        self.sink = sink
        self.path = path

    def function(self) -> str:
        if self.target == "http":
            return http_function(self.sink.url)
        return runtime_function("stamp", RUNTIME_PROCESSES, {"STAMP_OUT": str(self.path)})

    async def pairs(self) -> list[tuple[float, float]]:
        if self.target == "http":
            return [(p, s) for p, s in (await self.sink.stats())["pairs"]]
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            produced, started = line.split()
            out.append((float(produced), float(started)))
        return out


async def _wait_window(
    writer: Writer, stamps: Stamps, bridge: BridgeProcess, lo: float, hi: float, what: str
) -> list[tuple[float, float]]:
    """Wait until every write sent in [lo, hi) was seen; return their pairs (the first
    start of each write: a duplicate delivery is not a second sample)."""
    expected = {t for t in writer.sent if lo <= t < hi}
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while True:
        writer.check()
        first: dict[float, float] = {}
        for p, s in await stamps.pairs():
            if lo <= p < hi and (p not in first or s < first[p]):
                first[p] = s
        if expected <= first.keys():
            return sorted(first.items())
        if time.monotonic() > deadline:
            bridge.check_alive()
            raise TimeoutError(
                f"{what}: {len(expected & first.keys())}/{len(expected)} writes seen "
                f"in {DRAIN_TIMEOUT:.0f} s"
            )
        await asyncio.sleep(0.5)


async def _steady(
    writer: Writer, stamps: Stamps, bridge: BridgeProcess, seconds: float, what: str
) -> list[float]:
    """Warm up, measure ``seconds`` of writes, drain; latencies (ms) of the window."""
    writer.start()
    try:
        warm_start = time.time()
        await asyncio.sleep(WARMUP_SECONDS)
        # the second half of the warm-up must be seen in full (what was written before a
        # push subscription reached the store is lost to push)
        half = warm_start + WARMUP_SECONDS / 2
        await _wait_window(writer, stamps, bridge, half, time.time(), f"{what} warm-up")
        start = time.time()
        await asyncio.sleep(seconds)
        end = time.time()
        pairs = await _wait_window(writer, stamps, bridge, start, end, what)
    finally:
        await writer.stop()
    return [(s - p) * 1000 for p, s in pairs]


async def _wait_log(bridge: BridgeProcess, text: str, timeout: float = 60) -> None:
    log = bridge.workdir / "bridge.log"
    deadline = time.monotonic() + timeout
    while not (log.exists() and text in log.read_text(errors="replace")):
        bridge.check_alive()
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise TimeoutError(f"the bridge did not log {text!r} in {timeout:.0f} s:\n{tail}")
        await asyncio.sleep(0.1)


async def _wait_port(bridge: BridgeProcess, port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        bridge.check_alive()
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            await w.wait_closed()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def _mapping(source: dict[str, Any], *, batch_size: int) -> str:
    options = "".join(f"\n      {k}: {json.dumps(v)}" for k, v in source.items())
    return f"""
  - name: latency
    function: fn
    batch_size: {batch_size}
    maximum_batching_window_seconds: 0
    source:{options}
"""


# ------------------------------------------------------------------ the scenarios


async def measure_s3(mode: str, target: str, env: dict[str, str], seconds: float) -> list[float]:
    """Latencies (ms) of MinIO PUT -> handler start through one mode of the s3 source."""
    async with contextlib.AsyncExitStack() as stack:
        tmp = await stack.enter_async_context(workdir(f"latency-s3-{mode}-{target}"))
        webhook_port = free_port()
        webhook = mode.startswith("webhook")
        if webhook:
            queue_dir = mode == "webhook-queue"
            store = await stack.enter_async_context(
                webhook_minio(tmp / "minio", webhook_port, queue_dir=queue_dir)
            )
        else:
            store = Store(
                env["TB_MINIO_ENDPOINT"],
                env["TB_MINIO_ACCESS_KEY"],
                env["TB_MINIO_SECRET_KEY"],
                env.get("TB_MINIO_REGION", "us-east-1"),
            )
        name = await stack.enter_async_context(bucket(store, webhook=webhook))
        sink = await stack.enter_async_context(Sink(stamp=True))
        stamps = Stamps(target, sink, tmp / "stamps.txt")
        source: dict[str, Any] = {"type": "s3", **store.source_options(), "bucket": name}
        if mode == "listen":
            source |= {"push": True, "reconcile": False}
        elif webhook:
            receiver = {"port": webhook_port, "path": "/minio", "auth_token": WEBHOOK_TOKEN}
            source |= {"push": False, "reconcile": False, "webhook": receiver}
        else:
            source |= {
                "push": False,
                "reconcile": True,
                "reconcile_interval_seconds": RECONCILE_INTERVAL,
            }
        config = bridge_config(tmp, stamps.function(), _mapping(source, batch_size=1))
        bridge = await stack.enter_async_context(BridgeProcess(config, tmp))
        # what is PUT before the stream / receiver is up is lost to push: wait for it.
        # The listen stream's "connected" is logged only once MinIO sends the response
        # headers, which this build holds back with the first 4 KB of events (see the
        # notes): wait for the mapping to start and give the request a second to arrive.
        await _wait_log(bridge, "mapping.started")
        if mode == "listen":
            await asyncio.sleep(1.0)
        elif webhook:
            await _wait_port(bridge, webhook_port)
        s3 = await stack.enter_async_context(store.client("s3"))

        async def put(n: int, t: float) -> None:
            await s3.put_object(Bucket=name, Key=f"lat/{n:06d}/{t:.6f}", Body=BODY)

        writer = Writer(S3_RATE, put)
        return await _steady(writer, stamps, bridge, seconds, s3_path(mode, target))
    raise AssertionError("unreachable")  # mypy: the exit stack may swallow exceptions


async def measure_dynamodb(
    poll: float | None, target: str, env: dict[str, str], seconds: float
) -> list[float]:
    """Latencies (ms) of DynamoDB PutItem -> handler start; ``poll``: the source's
    ``poll_interval_seconds`` (None: the connector's default)."""
    store = Store(
        env["TB_DYNAMODB_ENDPOINT"],
        env.get("TB_AWS_ACCESS_KEY_ID", "tbtest"),
        env.get("TB_AWS_SECRET_ACCESS_KEY", "tbtest"),
        env.get("TB_AWS_REGION", "us-east-1"),
    )
    label = "default" if poll is None else f"{poll:g}"
    async with contextlib.AsyncExitStack() as stack:
        tmp = await stack.enter_async_context(workdir(f"latency-ddb-{label}-{target}"))
        name = await stack.enter_async_context(table(store))
        sink = await stack.enter_async_context(Sink(stamp=True))
        stamps = Stamps(target, sink, tmp / "stamps.txt")
        source: dict[str, Any] = {
            "type": "dynamodb_streams",
            **store.source_options(),
            "table_name": name,
            "starting_position": "TRIM_HORIZON",
        }
        if poll is not None:
            source["poll_interval_seconds"] = poll
        config = bridge_config(tmp, stamps.function(), _mapping(source, batch_size=100))
        bridge = await stack.enter_async_context(BridgeProcess(config, tmp))
        ddb = await stack.enter_async_context(store.client("dynamodb"))

        async def put(n: int, t: float) -> None:
            item = {"pk": {"S": f"{n:06d}"}, "t": {"N": f"{t:.6f}"}}
            await ddb.put_item(TableName=name, Item=item)

        writer = Writer(DDB_RATE, put)
        what = ddb_path(poll, default_poll(), target)
        return await _steady(writer, stamps, bridge, seconds, what)
    raise AssertionError("unreachable")


def default_poll() -> float:
    """The connector's default ``poll_interval_seconds`` (read, not assumed)."""
    from connectors.dynamodb_streams.config import DynamoDBStreamsSource

    default = DynamoDBStreamsSource.model_fields["poll_interval_seconds"].default
    return float(default)
