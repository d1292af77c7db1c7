"""pytest plugin: real Kafka, MinIO, DynamoDB Local, moto, ElasticMQ, the Lambda emulator and
websocketd.

Servers (session scope, sync):
    kafka_bootstrap      "127.0.0.1:PORT"
    minio_endpoint       AwsEndpoint for MinIO (its own root credentials)
    dynamodb_endpoint    AwsEndpoint for DynamoDB Local (DynamoDB and DynamoDB Streams APIs)
    moto_endpoint        AwsEndpoint for moto server (any moto API, not only SQS)
    elasticmq_endpoint   AwsEndpoint for ElasticMQ (SQS only)
    sqs_endpoint         AwsEndpoint for SQS, parametrized over SQS_SERVERS: a test using it
                         runs once per server, ids ``[moto]`` and ``[elasticmq]``
    rie_bin              Path of aws-lambda-rie
    websocketd_bin       Path of websocketd

Factories (function scope; everything they make is removed after the test):
    kafka_topic_factory      await make(partitions=1) -> topic name
    minio_bucket_factory     await make() -> bucket name
    dynamodb_table_factory   await make(stream_view_type="NEW_AND_OLD_IMAGES") -> DynamoTable
    sqs_queue_factory        await make(fifo=False, max_receive_count=None) -> SqsQueue
    lambda_function_factory  make(folder, handler="app.handler") -> LambdaFunction (sync)
    websocketd_factory       make(command, port=None, args=()) -> Websocketd (sync)

Where a server comes from: the ``TB_*`` variables of ``scripts/test-services env`` when they
are set (CI exports them), else ``scripts/test-services install NAME`` + ``up NAME``. Servers
that this plugin started are stopped when the session ends unless ``TB_KEEP_SERVICES=1``.
If a server cannot be had the tests that need it FAIL with the reason; they never skip.

A test that uses one of these fixtures gets the matching marker (``kafka``, ``minio``,
``dynamodb``, ``moto``, ``elasticmq``, ``rie``, ``websocketd``) automatically, so ``-m "not kafka"``
deselects it. A test using ``sqs_endpoint`` is marked ``sqs``, and each of its runs is also
marked by its server: ``-m "sqs and not moto"`` runs the SQS tests on ElasticMQ only.

moto's FIFO queues lose a message group's order once a visibility timeout expires (the
messages received last come back first); ElasticMQ keeps it, as SQS does. A test that
depends on that order keeps both runs and marks the moto one ``xfail(strict=True)``::

    @pytest.mark.parametrize(
        "sqs_server",
        [pytest.param("moto", marks=MOTO_FIFO_ORDER_XFAIL), "elasticmq"],
        indirect=True,
    )
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

REPO_DIR = Path(__file__).resolve().parents[2]
SCRIPT = REPO_DIR / "scripts" / "test-services"

#: marker -> (service name in scripts/test-services, fixture that provides it, description)
MARKERS: dict[str, tuple[str, str, str]] = {
    "kafka": ("kafka", "kafka_bootstrap", "uses the loopback Kafka broker (KRaft)"),
    "minio": ("minio", "minio_endpoint", "uses the loopback MinIO server"),
    "dynamodb": ("dynamodb", "dynamodb_endpoint", "uses DynamoDB Local and its Streams API"),
    "moto": ("moto", "moto_endpoint", "uses the loopback moto server (the [moto] SQS runs)"),
    "elasticmq": ("elasticmq", "elasticmq_endpoint", "uses the loopback ElasticMQ server (SQS)"),
    "rie": ("rie", "rie_bin", "starts functions behind aws-lambda-rie"),
    "websocketd": ("websocketd", "websocketd_bin", "starts websocket feeds behind websocketd"),
}

#: the servers a test using ``sqs_endpoint`` runs against, once each (its ``sqs_server``)
SQS_SERVERS = ("moto", "elasticmq")
#: the marker of every test using ``sqs_endpoint`` (each run also gets its server's marker)
SQS_MARKER = "sqs"

#: for the ``moto`` run of a test pinning a FIFO group's order; only a failed assert is
#: expected (a moto that cannot be had still fails the test)
MOTO_FIFO_ORDER_XFAIL = pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="moto bug: after a visibility timeout a FIFO group's messages come back out of "
    "order (those received last first); SQS and ElasticMQ keep the group's order",
)

#: service -> variables of `scripts/test-services env` it needs
ENV_KEYS: dict[str, tuple[str, ...]] = {
    "kafka": ("TB_KAFKA_BOOTSTRAP",),
    "minio": ("TB_MINIO_ENDPOINT", "TB_MINIO_ACCESS_KEY", "TB_MINIO_SECRET_KEY"),
    "dynamodb": ("TB_DYNAMODB_ENDPOINT",),
    "moto": ("TB_MOTO_ENDPOINT",),
    "elasticmq": ("TB_ELASTICMQ_ENDPOINT",),
    "rie": ("TB_RIE_BIN",),
    "websocketd": ("TB_WEBSOCKETD_BIN",),
}

#: services that are binaries the fixtures start per need (`up` only checks they are installed)
#: -> the variable with the binary's path
TOOL_BINS: dict[str, str] = {"rie": "TB_RIE_BIN", "websocketd": "TB_WEBSOCKETD_BIN"}

DEFAULT_REGION = "us-east-1"
DEFAULT_KEY = "tbtest"  # DynamoDB Local accepts only letters and digits in the key id


def unique_name(prefix: str = "tb") -> str:
    """A name no other test (or earlier run against the same server) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# --- plugin hooks ------------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    described = {marker: (fixture, text) for marker, (_, fixture, text) in MARKERS.items()}
    described[SQS_MARKER] = ("sqs_endpoint", f"uses SQS, once on each of {', '.join(SQS_SERVERS)}")
    for marker, (fixture, text) in described.items():
        config.addinivalue_line(
            "markers", f"{marker}: {text} (fixture {fixture}; see tests/services/fixtures.py)"
        )


SERVICE_ORDER = ("kafka", "minio", "dynamodb", "moto", "elasticmq", "rie", "websocketd")
NEEDED_SERVICES = pytest.StashKey[set[str]]()


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test by the servers its fixtures use, so `-m` can select on them."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        wanted = [marker for marker, (_, fixture, _) in MARKERS.items() if fixture in names]
        if "sqs_endpoint" in names:
            wanted.append(SQS_MARKER)
        callspec = getattr(item, "callspec", None)
        server = callspec.params.get("sqs_server") if callspec is not None else None
        if server is not None:  # sqs_endpoint picks its server at run time: mark it here
            wanted.append(server)
        for marker in wanted:
            if item.get_closest_marker(marker) is None:
                item.add_marker(marker)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Remember which servers the selected tests need, to start them together."""
    needed = set()
    for item in session.items:
        for marker, (service, _, _) in MARKERS.items():
            if item.get_closest_marker(marker) is not None:
                needed.add(service)
    session.config.stash[NEEDED_SERVICES] = needed


# --- getting the servers -----------------------------------------------------------------------


@dataclass(frozen=True)
class AwsEndpoint:
    """Where an AWS-compatible loopback server answers, with credentials it accepts."""

    url: str
    access_key: str = DEFAULT_KEY
    secret_key: str = DEFAULT_KEY
    region: str = DEFAULT_REGION

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for aiobotocore's ``session.create_client(service, **kwargs)``."""
        return {
            "endpoint_url": self.url,
            "region_name": self.region,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "config": AioConfig(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 2, "mode": "standard"},
                connect_timeout=5,
                read_timeout=30,
            ),
        }

    def client(self, service: str) -> Any:
        """An aiobotocore client context manager: ``async with endpoint.client("sqs") as c``."""
        return get_session().create_client(service, **self.client_kwargs())


def _reachable(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=2):
        return True
    return False


def _host_port(value: str) -> tuple[str, int]:
    """'127.0.0.1:9092' or 'http://127.0.0.1:9000' -> ('127.0.0.1', port)."""
    hostport = value.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    return host.strip("[]"), int(port)


class TestServices:
    """Finds or starts the loopback servers through scripts/test-services (once per session)."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.started: list[str] = []
        self._env: dict[str, dict[str, str]] = {}
        self._errors: dict[str, str] = {}

    def env(self, service: str) -> dict[str, str]:
        """The TB_* variables for one service, starting it if need be; fails the test if not."""
        if service not in self._env and service not in self._errors:
            given = self._given(service)
            if given is not None:
                try:
                    self._check_given(service, given)
                    self._env[service] = given
                except _ServiceError as exc:
                    self._errors[service] = str(exc)
            else:
                # Start every server this session's tests need in one go: they boot in parallel.
                needed = self.config.stash.get(NEEDED_SERVICES, set()) | {service}
                batch = [
                    s
                    for s in SERVICE_ORDER
                    if s in needed
                    and s not in self._env
                    and s not in self._errors
                    and self._given(s) is None
                ]
                self._start(batch)
        if service in self._errors:
            pytest.fail(self._errors[service], pytrace=False)
        return self._env[service]

    @staticmethod
    def _given(service: str) -> dict[str, str] | None:
        """The service's variables when the environment has them all (CI exports them)."""
        keys = ENV_KEYS[service]
        if not all(os.environ.get(k) for k in keys):
            return None
        return {k: v for k, v in os.environ.items() if k.startswith("TB_")}

    def _start(self, services: list[str]) -> None:
        """install + up through the script; fills self._env, or self._errors with the reason."""
        not_up = [s for s in services if self._script("env", s, check=False).returncode != 0]
        output = ""
        try:
            if not_up:
                output = self._script("install", *not_up, check=False).stdout
                self.started.extend(s for s in not_up if s not in TOOL_BINS)
            # For servers that were up already this is a health check, never a restart.
            output += "\n" + self._script("up", *services, check=False, live=bool(not_up)).stdout
        except OSError as exc:
            output += f"\ncannot run {SCRIPT}: {exc}"
        for service in services:
            done = self._script("env", service, check=False)
            values = self._parse_env(done.stdout)
            missing = [k for k in ENV_KEYS[service] if k not in values]
            if done.returncode == 0 and not missing:
                self._env[service] = values
                continue
            lines = [ln for ln in output.splitlines() if ln.strip()][-40:]
            self._errors[service] = (
                f"test server {service!r} is not available: `scripts/test-services install "
                f"{service}` / `up {service}` did not bring it up. Their output:\n"
                + "\n".join(lines)
            )

    @staticmethod
    def _check_given(service: str, given: Mapping[str, str]) -> None:
        if service in TOOL_BINS:
            key = TOOL_BINS[service]
            path = Path(given[key])
            if not os.access(path, os.X_OK):
                raise _ServiceError(f"{key}={path} from the environment is not executable")
            return
        name = ENV_KEYS[service][0]
        host, port = _host_port(given[name])
        if not _reachable(host, port):
            raise _ServiceError(
                f"{service}: {name}={given[name]} is set in the environment but nothing answers "
                f"there; run `scripts/test-services up {service}` and export its env again, "
                f"or unset {name} to let the tests start it"
            )

    @staticmethod
    def _parse_env(text: str) -> dict[str, str]:
        values = {}
        for line in text.splitlines():
            key, sep, value = line.removeprefix("export ").partition("=")
            if sep:
                words = shlex.split(value)
                values[key.strip()] = words[0] if words else ""
        return values

    def _script(
        self, *args: str, check: bool = True, live: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run scripts/test-services; with `live`, its progress shows even under capture."""
        cmd = [sys.executable, str(SCRIPT), *args]
        env = {**os.environ, "TB_PYTHON": os.environ.get("TB_PYTHON") or sys.executable}
        if args[0] == "env" or not live:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            if check and done.returncode != 0:
                raise _ServiceError(
                    f"`scripts/test-services {' '.join(args)}` failed: {done.stderr.strip()}"
                )
            return done
        output_tail: deque[str] = deque(maxlen=60)
        with (
            self._capture_disabled(),
            subprocess.Popen(
                cmd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ) as proc,
        ):
            assert proc.stdout is not None
            for line in proc.stdout:
                sys.stderr.write(line)
                sys.stderr.flush()
                output_tail.append(line.rstrip("\n"))
            code = proc.wait()
        if check and code != 0:
            raise _ServiceError(
                f"`scripts/test-services {' '.join(args)}` failed (exit {code}):\n"
                + "\n".join(output_tail)
            )
        return subprocess.CompletedProcess(cmd, code, "\n".join(output_tail), "")

    @contextlib.contextmanager
    def _capture_disabled(self) -> Iterator[None]:
        capman = self.config.pluginmanager.getplugin("capturemanager")
        if capman is None:
            yield
            return
        with capman.global_and_fixture_disabled():
            yield

    def stop_started(self) -> None:
        """Stop the servers this session started (not those that were already up)."""
        if not self.started or os.environ.get("TB_KEEP_SERVICES") == "1" or _KEEP_FLAG.exists():
            return
        with contextlib.suppress(_ServiceError):
            self._script("down", *self.started)
        self.started.clear()


class _ServiceError(Exception):
    pass


# `touch` this file to keep servers up across pytest sessions that share a machine (several
# developers or agents testing at once): a session then never stops what it started.
_KEEP_FLAG = (
    Path(
        os.environ.get("TB_RUN_DIR")
        or Path(os.environ.get("TB_CACHE_DIR") or Path.home() / ".cache" / "trigger-bridge") / "run"
    )
    / "keep"
)


@pytest.fixture(scope="session")
def test_services(pytestconfig: pytest.Config) -> Iterator[TestServices]:
    """The session's access to the loopback servers; stops what it started at the end."""
    services = TestServices(pytestconfig)
    yield services
    services.stop_started()


@pytest.fixture(scope="session")
def kafka_bootstrap(test_services: TestServices) -> str:
    """Bootstrap servers of the loopback Kafka broker, "127.0.0.1:PORT"."""
    return test_services.env("kafka")["TB_KAFKA_BOOTSTRAP"]


@pytest.fixture(scope="session")
def minio_endpoint(test_services: TestServices) -> AwsEndpoint:
    """The loopback MinIO server (S3 API, path-style addressing)."""
    env = test_services.env("minio")
    return AwsEndpoint(
        url=env["TB_MINIO_ENDPOINT"],
        access_key=env["TB_MINIO_ACCESS_KEY"],
        secret_key=env["TB_MINIO_SECRET_KEY"],
        region=env.get("TB_MINIO_REGION") or DEFAULT_REGION,
    )


def _aws_endpoint(env: Mapping[str, str], url_key: str) -> AwsEndpoint:
    return AwsEndpoint(
        url=env[url_key],
        access_key=env.get("TB_AWS_ACCESS_KEY_ID") or DEFAULT_KEY,
        secret_key=env.get("TB_AWS_SECRET_ACCESS_KEY") or DEFAULT_KEY,
        region=env.get("TB_AWS_REGION") or DEFAULT_REGION,
    )


@pytest.fixture(scope="session")
def dynamodb_endpoint(test_services: TestServices) -> AwsEndpoint:
    """DynamoDB Local: the DynamoDB and DynamoDB Streams APIs on one endpoint."""
    return _aws_endpoint(test_services.env("dynamodb"), "TB_DYNAMODB_ENDPOINT")


@pytest.fixture(scope="session")
def moto_endpoint(test_services: TestServices) -> AwsEndpoint:
    """moto server: SQS and any other API moto has (e.g. DynamoDB Streams)."""
    return _aws_endpoint(test_services.env("moto"), "TB_MOTO_ENDPOINT")


@pytest.fixture(scope="session")
def elasticmq_endpoint(test_services: TestServices) -> AwsEndpoint:
    """ElasticMQ: the SQS API only."""
    return _aws_endpoint(test_services.env("elasticmq"), "TB_ELASTICMQ_ENDPOINT")


@pytest.fixture(scope="session", params=SQS_SERVERS)
def sqs_server(request: pytest.FixtureRequest) -> str:
    """Which SQS server this run of the test uses; parametrize it (indirect=True) to give
    one server's run a mark of its own."""
    if request.param not in SQS_SERVERS:
        raise ValueError(f"sqs_server {request.param!r} is none of {SQS_SERVERS}")
    return str(request.param)


@pytest.fixture(scope="session")
def sqs_endpoint(sqs_server: str, request: pytest.FixtureRequest) -> AwsEndpoint:
    """An SQS endpoint: moto in the ``[moto]`` run of a test, ElasticMQ in ``[elasticmq]``."""
    endpoint: AwsEndpoint = request.getfixturevalue(f"{sqs_server}_endpoint")
    return endpoint


@pytest.fixture(scope="session")
def rie_bin(test_services: TestServices) -> Path:
    """Path of the aws-lambda-rie binary."""
    return Path(test_services.env("rie")["TB_RIE_BIN"])


@pytest.fixture(scope="session")
def websocketd_bin(test_services: TestServices) -> Path:
    """Path of the websocketd binary."""
    return Path(test_services.env("websocketd")["TB_WEBSOCKETD_BIN"])


# --- factories ---------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def kafka_topic_factory(
    kafka_bootstrap: str,
) -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """``await make(partitions=1, prefix="tb", config=None)`` creates a fresh topic."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap, request_timeout_ms=30000)
    await admin.start()
    created: list[str] = []

    async def make(
        partitions: int = 1, *, prefix: str = "tb", config: dict[str, str] | None = None
    ) -> str:
        name = unique_name(prefix)
        topic = NewTopic(name, partitions, 1, topic_configs=config or {})
        await admin.create_topics([topic])
        created.append(name)
        await _wait_for_leaders(admin, name, partitions)
        return name

    try:
        yield make
    finally:
        try:
            if created:
                await admin.delete_topics(created)
        finally:
            await admin.close()


async def _wait_for_leaders(admin: AIOKafkaAdminClient, topic: str, partitions: int) -> None:
    """Creation returns before every partition has a leader; wait so clients never race it."""
    deadline = time.monotonic() + 30
    while True:
        described = await admin.describe_topics([topic])
        parts = described[0].get("partitions", []) if described else []
        if len(parts) == partitions and all(p.get("leader", -1) >= 0 for p in parts):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"topic {topic}: partitions without a leader after 30s: {parts}")
        await asyncio.sleep(0.1)


@pytest_asyncio.fixture
async def minio_bucket_factory(
    minio_endpoint: AwsEndpoint,
) -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """``await make(prefix="tb")`` creates a fresh, empty bucket on MinIO."""
    async with minio_endpoint.client("s3") as s3:
        created: list[str] = []

        async def make(*, prefix: str = "tb") -> str:
            name = unique_name(prefix)
            await s3.create_bucket(Bucket=name)
            created.append(name)
            return name

        try:
            yield make
        finally:
            for bucket in created:
                await _empty_and_delete_bucket(s3, bucket)


async def _empty_and_delete_bucket(s3: Any, bucket: str) -> None:
    paginator = s3.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=bucket):
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
        if keys:
            await s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    await s3.delete_bucket(Bucket=bucket)


@dataclass(frozen=True)
class DynamoTable:
    """A table made by dynamodb_table_factory."""

    name: str
    arn: str
    stream_arn: str | None
    hash_key: str
    range_key: str | None = None


@pytest_asyncio.fixture
async def dynamodb_table_factory(
    dynamodb_endpoint: AwsEndpoint,
) -> AsyncIterator[Callable[..., Awaitable[DynamoTable]]]:
    """``await make(stream_view_type="NEW_AND_OLD_IMAGES", hash_key="pk", range_key=None)``.

    Creates an on-demand table with string keys and, unless ``stream_view_type`` is None, a
    stream of that view type (KEYS_ONLY, NEW_IMAGE, OLD_IMAGE, NEW_AND_OLD_IMAGES).
    """
    async with dynamodb_endpoint.client("dynamodb") as ddb:
        created: list[str] = []

        async def make(
            stream_view_type: str | None = "NEW_AND_OLD_IMAGES",
            *,
            hash_key: str = "pk",
            range_key: str | None = None,
            prefix: str = "tb",
        ) -> DynamoTable:
            name = unique_name(prefix)
            keys = [{"AttributeName": hash_key, "KeyType": "HASH"}]
            attrs = [{"AttributeName": hash_key, "AttributeType": "S"}]
            if range_key:
                keys.append({"AttributeName": range_key, "KeyType": "RANGE"})
                attrs.append({"AttributeName": range_key, "AttributeType": "S"})
            kwargs: dict[str, Any] = {
                "TableName": name,
                "KeySchema": keys,
                "AttributeDefinitions": attrs,
                "BillingMode": "PAY_PER_REQUEST",
            }
            if stream_view_type:
                kwargs["StreamSpecification"] = {
                    "StreamEnabled": True,
                    "StreamViewType": stream_view_type,
                }
            desc = (await ddb.create_table(**kwargs))["TableDescription"]
            created.append(name)
            waiter = ddb.get_waiter("table_exists")
            await waiter.wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
            return DynamoTable(
                name=name,
                arn=desc["TableArn"],
                stream_arn=desc.get("LatestStreamArn"),
                hash_key=hash_key,
                range_key=range_key,
            )

        try:
            yield make
        finally:
            for name in created:
                with contextlib.suppress(ddb.exceptions.ResourceNotFoundException):
                    await ddb.delete_table(TableName=name)


@dataclass(frozen=True)
class SqsQueue:
    """A queue made by sqs_queue_factory; ``dead_letter`` is set when a redrive was asked."""

    url: str
    arn: str
    name: str
    fifo: bool = False
    dead_letter: SqsQueue | None = field(default=None)


@pytest_asyncio.fixture
async def sqs_queue_factory(
    sqs_endpoint: AwsEndpoint,
) -> AsyncIterator[Callable[..., Awaitable[SqsQueue]]]:
    """``await make(fifo=False, max_receive_count=None, visibility_timeout=None, attributes=None)``

    ``max_receive_count=N`` also creates a dead-letter queue (FIFO if the queue is) and sets
    the redrive policy; FIFO queues get content-based deduplication unless told otherwise.
    """
    async with sqs_endpoint.client("sqs") as sqs:
        created: list[str] = []

        async def create(name: str, attributes: dict[str, str]) -> SqsQueue:
            url = (await sqs.create_queue(QueueName=name, Attributes=attributes))["QueueUrl"]
            created.append(url)
            got = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
            arn = got["Attributes"]["QueueArn"]
            return SqsQueue(url=url, arn=arn, name=name, fifo=name.endswith(".fifo"))

        async def make(
            *,
            fifo: bool = False,
            max_receive_count: int | None = None,
            visibility_timeout: int | None = None,
            attributes: dict[str, str] | None = None,
            prefix: str = "tb",
        ) -> SqsQueue:
            base = unique_name(prefix)
            suffix = ".fifo" if fifo else ""
            attrs: dict[str, str] = {}
            if fifo:
                attrs = {"FifoQueue": "true", "ContentBasedDeduplication": "true"}
            if visibility_timeout is not None:
                attrs["VisibilityTimeout"] = str(visibility_timeout)
            dead_letter = None
            if max_receive_count is not None:
                dlq_attrs = {"FifoQueue": "true"} if fifo else {}
                dead_letter = await create(f"{base}-dlq{suffix}", dlq_attrs)
                attrs["RedrivePolicy"] = json.dumps(
                    {"deadLetterTargetArn": dead_letter.arn, "maxReceiveCount": max_receive_count}
                )
            attrs.update(attributes or {})
            queue = await create(f"{base}{suffix}", attrs)
            return SqsQueue(queue.url, queue.arn, queue.name, queue.fifo, dead_letter)

        try:
            yield make
        finally:
            for url in reversed(created):
                with contextlib.suppress(sqs.exceptions.QueueDoesNotExist):
                    await sqs.delete_queue(QueueUrl=url)


# --- a real function behind the Runtime Interface Emulator -------------------------------------


@dataclass
class LambdaFunction:
    """A function served by aws-lambda-rie: POST an event to ``invoke_url``.

    The emulator serves ONE invocation at a time (a second concurrent one crashes it), and
    returns function errors as HTTP 200 without ``X-Amz-Function-Error``.
    """

    base_url: str
    folder: Path
    handler: str
    log: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def invoke_url(self) -> str:
        return f"{self.base_url}/2015-03-31/functions/function/invocations"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return f"(no log at {self.log})"

    def stop(self) -> None:
        """TERM the emulator and its runtime process (one process group), KILL after 5 s."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError):  # the runtime child, if it outlived RIE
            os.killpg(self.process.pid, signal.SIGKILL)


def _free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


@pytest.fixture
def lambda_function_factory(
    rie_bin: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., LambdaFunction]]:
    """``make(folder, handler="app.handler", env=None, timeout=30)`` -> LambdaFunction.

    Starts ``aws-lambda-rie ... <this Python> -m awslambdaric <handler>`` in ``folder`` on
    free loopback ports and waits until a POST to the invocations URL answers (that first
    POST invokes the handler once with ``probe_event``, ``{}`` by default). Every function
    started is stopped after the test.
    """
    started: list[LambdaFunction] = []
    logs = tmp_path_factory.mktemp("rie")

    def make(
        folder: str | Path,
        handler: str = "app.handler",
        *,
        env: Mapping[str, str] | None = None,
        timeout: int = 30,
        probe_event: Any = None,
        ready_timeout: float = 30.0,
    ) -> LambdaFunction:
        folder = Path(folder).resolve()
        port, api_port = _free_ports(2)
        cmd = [
            str(rie_bin),
            "--runtime-interface-emulator-address",
            f"127.0.0.1:{port}",
            "--runtime-api-address",
            f"127.0.0.1:{api_port}",
            sys.executable,
            "-m",
            "awslambdaric",
            handler,
        ]
        proc_env = {
            **os.environ,
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(timeout),
            "AWS_LAMBDA_FUNCTION_NAME": folder.name,
            "AWS_REGION": DEFAULT_REGION,
            "AWS_DEFAULT_REGION": DEFAULT_REGION,
            "LAMBDA_TASK_ROOT": str(folder),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        proc_env.pop("PYTHONWARNINGS", None)
        log = logs / f"{folder.name}-{port}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                cmd,
                cwd=folder,
                env=proc_env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        function = LambdaFunction(f"http://127.0.0.1:{port}", folder, handler, log, proc)
        started.append(function)
        _wait_for_function(function, {} if probe_event is None else probe_event, ready_timeout)
        return function

    try:
        yield make
    finally:
        for function in started:
            function.stop()


def _wait_for_function(function: LambdaFunction, probe_event: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    with httpx.Client(timeout=10, trust_env=False) as client:  # loopback: never via a proxy
        while True:
            if function.process.poll() is not None:
                pytest.fail(
                    f"aws-lambda-rie for {function.folder} exited with "
                    f"{function.process.returncode}:\n{function.log_tail()}",
                    pytrace=False,
                )
            try:
                client.post(function.invoke_url, json=probe_event)
                return
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                function.stop()
                pytest.fail(
                    f"aws-lambda-rie for {function.folder} did not answer in {timeout:.0f}s "
                    f"({last}):\n{function.log_tail()}",
                    pytrace=False,
                )
            time.sleep(0.1)


# --- a program's stdin/stdout as a websocket feed, behind websocketd ---------------------------


@dataclass
class Websocketd:
    """A websocketd serving ``command`` at ``url``: each client connection starts the command
    once, every line it prints is one text message, and every message received is one line
    of its stdin. ``stop()`` and ``restart()`` (same port) let a test kill the feed server.
    """

    port: int
    command: list[str]
    args: list[str]
    binary: Path = field(repr=False)
    log: Path = field(repr=False)
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    @property
    def argv(self) -> list[str]:
        return _websocketd_argv(self.binary, self.port, self.args, self.command)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return f"(no log at {self.log})"

    def stop(self) -> None:
        """TERM websocketd and the commands it runs (one process group), KILL after 5 s.

        websocketd itself does not forward a TERM to its commands, so the whole group is
        signalled; clients see their connections drop.
        """
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError):  # commands that outlived websocketd
            os.killpg(self.process.pid, signal.SIGKILL)

    def restart(self, ready_timeout: float = 10.0) -> None:
        """Stop it if it runs, then start it again on the same port and wait until it listens."""
        self.stop()
        self.process = _spawn_websocketd(self.argv, self.log)
        _wait_for_websocketd(self, ready_timeout)


def _websocketd_argv(
    binary: Path, port: int, args: Sequence[str], command: Sequence[str]
) -> list[str]:
    return [str(binary), f"--port={port}", "--address=127.0.0.1", *args, "--", *command]


def _spawn_websocketd(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        out.write(f"\n=== {time.strftime('%H:%M:%S')} $ {shlex.join(argv)}\n".encode())
        out.flush()
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stop() reaches the commands too
        )


def _wait_for_websocketd(server: Websocketd, timeout: float) -> None:
    """Until 127.0.0.1:port accepts a TCP connection; fails the test if it exits or times out."""
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            pytest.fail(
                f"websocketd on port {server.port} exited with {server.process.returncode}:\n"
                f"{server.log_tail()}",
                pytrace=False,
            )
        if _reachable("127.0.0.1", server.port):
            return
        if time.monotonic() > deadline:
            server.stop()
            pytest.fail(
                f"websocketd did not listen on 127.0.0.1:{server.port} in {timeout:.0f}s:\n"
                f"{server.log_tail()}",
                pytrace=False,
            )
        time.sleep(0.05)


@pytest.fixture
def websocketd_factory(
    websocketd_bin: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Websocketd]]:
    """``make(command, *, port=None, args=(), ready_timeout=10)`` -> Websocketd.

    Starts ``websocketd --port=P --address=127.0.0.1 [args] -- command...`` on ``port`` (a
    free one by default) and waits until the port accepts TCP connections. Every websocketd
    started is stopped after the test (TERM to its process group, KILL after 5 s).

    websocketd hands its commands only PATH and LD_LIBRARY_PATH of the environment; pass
    ``args=["--passenv=PATH,HOME,..."]`` for more. Its log (with the commands' stderr) is
    ``server.log``.
    """
    started: list[Websocketd] = []
    logs = tmp_path_factory.mktemp("websocketd")

    def make(
        command: Sequence[str],
        *,
        port: int | None = None,
        args: Sequence[str] = (),
        ready_timeout: float = 10.0,
    ) -> Websocketd:
        if not command:
            raise ValueError("websocketd_factory: command is empty")
        port = _free_ports(1)[0] if port is None else port
        log = logs / f"websocketd-{port}.log"
        argv = _websocketd_argv(websocketd_bin, port, args, command)
        server = Websocketd(
            port=port,
            command=list(command),
            args=list(args),
            binary=websocketd_bin,
            log=log,
            process=_spawn_websocketd(argv, log),
        )
        started.append(server)
        _wait_for_websocketd(server, ready_timeout)
        return server

    try:
        yield make
    finally:
        for server in started:
            server.stop()
