"""The s3 source against a real MinIO, delivering to a real handler under awslambdaric.

Most tests see changes through the reconcile listing (push off, a short interval):
that path works on every S3-compatible store. The webhook tests and the MinIO
restart test run their own MinIO process (it needs its own settings, or is killed);
the push-stream tests first check that the MinIO build streams at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.checkpoints import SqliteCheckpointStore
from bridge.connector import ConnectorContext
from bridge.errors import ConfigError, SourceUnavailable
from connectors.s3 import S3Connector, S3Source
from connectors.s3.listen import LISTEN_EVENTS
from tests.e2e.harness import RunningBridge, runtime_function, wait_for
from tests.services.fixtures import AwsEndpoint, unique_name
from tests.support.jsonl import read_jsonl

REPO = Path(__file__).resolve().parents[2]
HANDLER = REPO / "tests" / "e2e" / "functions" / "s3_recorder"
RECORD_KEYS = [
    "eventVersion",
    "eventSource",
    "awsRegion",
    "eventTime",
    "eventName",
    "userIdentity",
    "requestParameters",
    "responseElements",
    "s3",
]
#: push off, a listing every half second: the store-independent path
LISTING = {"push": False, "reconcile_interval_seconds": 0.5}


def _config(
    tmp: Path,
    endpoint: AwsEndpoint,
    bucket: str,
    source: dict[str, Any] | None = None,
    **mapping: Any,
) -> str:
    options = {
        "endpoint_url": endpoint.url,
        "region": endpoint.region,
        "aws_access_key_id": endpoint.access_key,
        "aws_secret_access_key": endpoint.secret_key,
        "bucket": bucket,
        **(source or {}),
    }
    source_yaml = "".join(f"\n      {k}: {json.dumps(v)}" for k, v in options.items())
    mapping_yaml = "".join(f"\n    {k}: {json.dumps(v)}" for k, v in mapping.items())
    return f"""
state_dir: {tmp}/state
retry_backoff: {{initial_seconds: 0.01, max_seconds: 0.05}}
shutdown_timeout_seconds: 5
functions:
{runtime_function(HANDLER, {"RECORDER_OUT": f"{tmp}/calls.jsonl"})}
mappings:
  - name: objects
    function: recorder
    source:
      type: s3{source_yaml}{mapping_yaml}
"""


def _calls(tmp: Path) -> list[list[dict[str, Any]]]:
    return [call["records"] for call in read_jsonl(tmp / "calls.jsonl")]


def _events(tmp: Path) -> list[dict[str, Any]]:
    return [r for call in _calls(tmp) for r in call]


def _seen(tmp: Path) -> list[tuple[str, str]]:
    """(eventName, encoded key) of every delivered record, in delivery order."""
    return [(e["eventName"], e["s3"]["object"]["key"]) for e in _events(tmp)]


async def _put(endpoint: AwsEndpoint, bucket: str, key: str, body: bytes) -> str:
    async with endpoint.client("s3") as s3:
        return str((await s3.put_object(Bucket=bucket, Key=key, Body=body))["ETag"]).strip('"')


async def _delete(endpoint: AwsEndpoint, bucket: str, key: str) -> None:
    async with endpoint.client("s3") as s3:
        await s3.delete_object(Bucket=bucket, Key=key)


async def _quiet(tmp: Path, seconds: float) -> None:
    """Let a few more reconcile rounds run: what is asserted next is that nothing came."""
    await asyncio.sleep(seconds)


def _connector(tmp: Path, endpoint: AwsEndpoint, **options: Any) -> tuple[S3Connector, Any]:
    config = S3Source.model_validate(
        {
            "type": "s3",
            "endpoint_url": endpoint.url,
            "region": endpoint.region,
            "aws_access_key_id": endpoint.access_key,
            "aws_secret_access_key": endpoint.secret_key,
            **options,
        }
    )
    store = SqliteCheckpointStore(tmp / "c.sqlite3")
    context = ConnectorContext(mapping="m", checkpoints=store.namespace("m"), state_dir=str(tmp))
    return S3Connector(config, context), store


# --- a MinIO process of the test's own -----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _minio_binary() -> Path:
    """The binary scripts/test-services installed (the minio_endpoint fixture ensures it)."""
    loader = importlib.machinery.SourceFileLoader(
        "tb_test_services", str(REPO / "scripts/test-services")
    )
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return Path(module.SERVICES["minio"].binary)


class OwnMinio:
    """A MinIO server on a free loopback port with its own data folder and settings."""

    def __init__(self, binary: Path, home: Path, env: dict[str, str] | None = None) -> None:
        self.binary = binary
        self.home = home
        self.port = _free_port()
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.endpoint = AwsEndpoint(
            url=f"http://127.0.0.1:{self.port}", access_key="tbown", secret_key="tbown-secret"
        )

    def start(self) -> None:
        (self.home / "data").mkdir(parents=True, exist_ok=True)
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(self.home),
            "MINIO_ROOT_USER": self.endpoint.access_key,
            "MINIO_ROOT_PASSWORD": self.endpoint.secret_key,
            "MINIO_BROWSER": "off",
            "MINIO_UPDATE": "off",
            "MINIO_REGION": self.endpoint.region,
            **self.env,
        }
        cmd = [str(self.binary), "server", str(self.home / "data")]
        cmd += ["--address", f"127.0.0.1:{self.port}", "--quiet"]
        cmd += ["--console-address", f"127.0.0.1:{_free_port()}"]
        with (self.home / "minio.log").open("ab") as log:
            self.process = subprocess.Popen(
                cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 60
        with httpx.Client(timeout=2, trust_env=False) as client:
            while True:
                assert self.process.poll() is None, (self.home / "minio.log").read_text()
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{self.endpoint.url}/minio/health/ready").status_code == 200:
                        return
                assert time.monotonic() < deadline, "own MinIO did not become ready"
                time.sleep(0.1)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def minio_binary(minio_endpoint: AwsEndpoint) -> Path:
    return _minio_binary()


@contextlib.contextmanager
def _own_minio(binary: Path, home: Path, env: dict[str, str] | None = None) -> Iterator[OwnMinio]:
    server = OwnMinio(binary, home, env)
    try:
        server.start()
        yield server
    finally:
        server.stop()


async def _flush_burst(endpoint: AwsEndpoint, bucket: str, n: int = 24) -> set[str]:
    """Puts ``n`` filler objects (``zz/filler-i``): current MinIO builds hold the listen
    stream back until about 4 KB of events have piled up (their response writer has no
    Flush, a regression of minio PR #21651), so events before a burst come out. Returns
    the fillers' encoded keys."""
    async with endpoint.client("s3") as s3:
        for i in range(n):
            await s3.put_object(Bucket=bucket, Key=f"zz/filler-{i}", Body=b"f" * i)
    return {f"zz/filler-{i}" for i in range(n)}


# --- through the listing (any S3-compatible store) ----------------------------------------------


async def test_create_overwrite_delete_are_aws_s3_events_one_per_invocation(
    tmp_path: Path, minio_endpoint: AwsEndpoint, minio_bucket_factory: Any
) -> None:
    bucket = await minio_bucket_factory()
    async with RunningBridge(_config(tmp_path, minio_endpoint, bucket, LISTING)):
        await _put(minio_endpoint, bucket, "docs/a.txt", b"one")
        await wait_for(lambda: len(_events(tmp_path)) == 1)
        await _put(minio_endpoint, bucket, "docs/a.txt", b"two!")
        await wait_for(lambda: len(_events(tmp_path)) == 2)
        await _delete(minio_endpoint, bucket, "docs/a.txt")
        await wait_for(lambda: len(_events(tmp_path)) == 3)
        await _quiet(tmp_path, 1.5)
    assert _seen(tmp_path) == [
        ("ObjectCreated:Put", "docs/a.txt"),
        ("ObjectCreated:Put", "docs/a.txt"),
        ("ObjectRemoved:Delete", "docs/a.txt"),
    ]
    assert all(len(call) == 1 for call in _calls(tmp_path))  # as S3: one record per event
    created, overwritten, removed = _events(tmp_path)
    assert list(created) == RECORD_KEYS
    assert created["eventVersion"] == "2.1"
    assert created["eventSource"] == "aws:s3"
    assert created["awsRegion"] == minio_endpoint.region
    assert created["eventTime"].endswith("Z")
    assert created["s3"]["s3SchemaVersion"] == "1.0"
    assert created["s3"]["configurationId"] == "objects"
    assert created["s3"]["bucket"]["name"] == bucket
    assert created["s3"]["bucket"]["arn"] == f"arn:aws:s3:::{bucket}"
    obj = created["s3"]["object"]
    assert list(obj) == ["key", "size", "eTag", "sequencer"]
    assert obj["size"] == 3
    assert obj["eTag"] == hashlib.md5(b"one").hexdigest()  # no quotes
    assert overwritten["s3"]["object"]["eTag"] == hashlib.md5(b"two!").hexdigest()
    assert overwritten["s3"]["object"]["size"] == 4
    assert list(removed["s3"]["object"]) == ["key", "sequencer"]  # no size or eTag
    sequencers = [e["s3"]["object"]["sequencer"] for e in (created, overwritten, removed)]
    assert sequencers == sorted(sequencers) and len(set(sequencers)) == 3


async def test_multipart_upload_and_keys_with_spaces_and_unicode(
    tmp_path: Path, minio_endpoint: AwsEndpoint, minio_bucket_factory: Any
) -> None:
    bucket = await minio_bucket_factory()
    part = b"x" * (5 * 1024 * 1024)
    async with RunningBridge(_config(tmp_path, minio_endpoint, bucket, LISTING)):
        async with minio_endpoint.client("s3") as s3:
            upload = await s3.create_multipart_upload(Bucket=bucket, Key="big file.bin")
            parts = []
            for number, body in ((1, part), (2, b"tail")):
                done = await s3.upload_part(
                    Bucket=bucket,
                    Key="big file.bin",
                    UploadId=upload["UploadId"],
                    PartNumber=number,
                    Body=body,
                )
                parts.append({"PartNumber": number, "ETag": done["ETag"]})
            completed = await s3.complete_multipart_upload(
                Bucket=bucket,
                Key="big file.bin",
                UploadId=upload["UploadId"],
                MultipartUpload={"Parts": parts},
            )
        await _put(minio_endpoint, bucket, "my photos/été 1+2.txt", "ü".encode())
        await wait_for(lambda: len(_events(tmp_path)) == 2)
    by_key = {e["s3"]["object"]["key"]: e["s3"]["object"] for e in _events(tmp_path)}
    assert set(by_key) == {"big+file.bin", "my+photos/%C3%A9t%C3%A9+1%2B2.txt"}
    big = by_key["big+file.bin"]
    assert big["size"] == len(part) + 4
    assert big["eTag"] == completed["ETag"].strip('"') and big["eTag"].endswith("-2")
    assert by_key["my+photos/%C3%A9t%C3%A9+1%2B2.txt"]["size"] == 2


async def test_prefix_suffix_and_filter_criteria_select_what_is_delivered(
    tmp_path: Path, minio_endpoint: AwsEndpoint, minio_bucket_factory: Any
) -> None:
    bucket = await minio_bucket_factory()
    source = {**LISTING, "prefix": "in/", "suffix": ".jpg"}
    pattern = {"s3": {"object": {"key": [{"prefix": "in/keep"}]}}}
    text = _config(
        tmp_path,
        minio_endpoint,
        bucket,
        source,
        filter_criteria={"filters": [{"pattern": json.dumps(pattern)}]},
    )
    async with RunningBridge(text):
        for key in ("in/keep1.jpg", "in/drop1.jpg", "in/keep2.png", "out/keep3.jpg"):
            await _put(minio_endpoint, bucket, key, b"data")
        await _put(minio_endpoint, bucket, "in/keep-last.jpg", b"data")
        await wait_for(lambda: ("ObjectCreated:Put", "in/keep-last.jpg") in _seen(tmp_path))
        await _quiet(tmp_path, 1.5)
    assert sorted(_seen(tmp_path)) == [
        ("ObjectCreated:Put", "in/keep-last.jpg"),
        ("ObjectCreated:Put", "in/keep1.jpg"),
    ]


async def test_changes_while_the_bridge_is_stopped_are_delivered_after_start_once(
    tmp_path: Path, minio_endpoint: AwsEndpoint, minio_bucket_factory: Any
) -> None:
    bucket = await minio_bucket_factory()
    text = _config(tmp_path, minio_endpoint, bucket, LISTING)
    etag_a = await _put(minio_endpoint, bucket, "a", b"a1")
    async with RunningBridge(text):
        await _put(minio_endpoint, bucket, "b", b"b1")
        await wait_for(lambda: len(_events(tmp_path)) == 2)
    await _put(minio_endpoint, bucket, "c", b"c1")  # created while stopped
    etag_b2 = await _put(minio_endpoint, bucket, "b", b"b2")  # changed while stopped
    await _delete(minio_endpoint, bucket, "a")  # deleted while stopped
    async with RunningBridge(text):
        await wait_for(lambda: len(_events(tmp_path)) == 5)
        await _quiet(tmp_path, 2)
    seen = _seen(tmp_path)
    assert sorted(seen[:2]) == [("ObjectCreated:Put", "a"), ("ObjectCreated:Put", "b")]
    assert sorted(seen[2:]) == [
        ("ObjectCreated:Put", "b"),
        ("ObjectCreated:Put", "c"),
        ("ObjectRemoved:Delete", "a"),
    ]
    etags = {(e["s3"]["object"]["key"], e["s3"]["object"].get("eTag")) for e in _events(tmp_path)}
    assert ("a", etag_a) in etags and ("b", etag_b2) in etags


async def test_failing_function_is_retried_twice_then_gets_the_async_failure_record(
    tmp_path: Path, minio_endpoint: AwsEndpoint, minio_bucket_factory: Any
) -> None:
    bucket = await minio_bucket_factory()
    failures = tmp_path / "state" / "failures" / "objects.jsonl"
    async with RunningBridge(_config(tmp_path, minio_endpoint, bucket, LISTING)):
        await _put(minio_endpoint, bucket, "poison.txt", b"x")
        await wait_for(lambda: failures.exists() and failures.read_text().strip() != "")
        await _put(minio_endpoint, bucket, "fine.txt", b"x")
        await wait_for(lambda: ("ObjectCreated:Put", "fine.txt") in _seen(tmp_path))
        await _quiet(tmp_path, 1.5)
    assert _seen(tmp_path).count(("ObjectCreated:Put", "poison.txt")) == 3  # 1 + 2 retries
    [doc] = [json.loads(line) for line in failures.read_text().splitlines()]
    assert doc["requestContext"]["condition"] == "RetriesExhausted"
    assert doc["requestContext"]["approximateInvokeCount"] == 3
    assert doc["requestPayload"]["Records"][0]["s3"]["object"]["key"] == "poison.txt"
    assert doc["responseContext"]["functionError"] == "Unhandled"


async def test_wrong_credentials_are_a_clear_error(
    tmp_path: Path, minio_endpoint: AwsEndpoint, minio_bucket_factory: Any
) -> None:
    bucket = await minio_bucket_factory()
    wrong = AwsEndpoint(minio_endpoint.url, "nobody", "wrong-secret", minio_endpoint.region)
    connector, store = _connector(tmp_path, wrong, bucket=bucket)
    try:
        with pytest.raises(SourceUnavailable) as info:
            await connector.open()
        assert f"S3 bucket {bucket} at {minio_endpoint.url}" in str(info.value)
        assert "InvalidAccessKeyId" in str(info.value)
        assert "check the credentials" in str(info.value)
    finally:
        await connector.aclose()
        store.close()


async def test_a_bucket_that_does_not_exist_is_a_config_error_naming_it(
    tmp_path: Path, minio_endpoint: AwsEndpoint
) -> None:
    bucket = unique_name("missing")
    connector, store = _connector(tmp_path, minio_endpoint, bucket=bucket)
    try:
        with pytest.raises(ConfigError) as info:
            await connector.open()
        assert f"S3 bucket {bucket} at {minio_endpoint.url}" in str(info.value)
        assert "NoSuchBucket" in str(info.value)
    finally:
        await connector.aclose()
        store.close()


def test_options_that_cannot_work_are_config_errors() -> None:
    with pytest.raises(ValueError, match="nothing would be seen"):
        S3Source(type="s3", bucket="b", push=False, reconcile=False)
    with pytest.raises(ValueError, match="unknown event type"):
        S3Source(type="s3", bucket="b", events=["s3:ObjectCreated:Bogus"])


# --- MinIO restarted under a running bridge -------------------------------------------------------


async def test_minio_restarted_under_a_running_bridge_loses_no_change(
    tmp_path: Path, minio_binary: Path
) -> None:
    with _own_minio(minio_binary, tmp_path / "minio") as server:
        endpoint = server.endpoint
        async with endpoint.client("s3") as s3:
            await s3.create_bucket(Bucket="restarts")
        source = {"reconcile_interval_seconds": 1.0, "ping_seconds": 2}  # push and listing
        async with RunningBridge(_config(tmp_path, endpoint, "restarts", source)):
            await _put(endpoint, "restarts", "before", b"1")
            await wait_for(lambda: len(_events(tmp_path)) == 1)
            server.stop()
            server.start()  # same port, same data: the push stream is cut, events are lost
            await _put(endpoint, "restarts", "after", b"2")
            await _delete(endpoint, "restarts", "before")
            await wait_for(lambda: len(_events(tmp_path)) >= 3, timeout=60)
            await _quiet(tmp_path, 2.5)
    seen = _seen(tmp_path)
    assert seen[0] == ("ObjectCreated:Put", "before")
    assert sorted(seen[1:]) == [("ObjectCreated:Put", "after"), ("ObjectRemoved:Delete", "before")]


# --- webhook notifications (MinIO notify_webhook) ------------------------------------------------


def _webhook_env(home: Path, port: int, token: str) -> dict[str, str]:
    return {
        "MINIO_NOTIFY_WEBHOOK_ENABLE_TB": "on",
        "MINIO_NOTIFY_WEBHOOK_ENDPOINT_TB": f"http://127.0.0.1:{port}/minio",
        "MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_TB": token,
        "MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_TB": str(home / "queue"),
    }


async def _notify_webhook(endpoint: AwsEndpoint, bucket: str, on: bool = True) -> None:
    queues = [{"QueueArn": "arn:minio:sqs::TB:webhook", "Events": list(LISTEN_EVENTS)}]
    async with endpoint.client("s3") as s3:
        await s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={"QueueConfigurations": queues} if on else {}
        )


async def test_webhook_notifications_are_aws_events_and_the_token_is_checked(
    tmp_path: Path, minio_binary: Path
) -> None:
    port, token = _free_port(), "hook-token-1"
    home = tmp_path / "minio"
    with _own_minio(minio_binary, home, _webhook_env(home, port, token)) as server:
        endpoint = server.endpoint
        async with endpoint.client("s3") as s3:
            await s3.create_bucket(Bucket="hooked")
        await _notify_webhook(endpoint, "hooked")
        webhook = {"port": port, "path": "/minio", "auth_token": token}
        first = {"push": False, "reconcile_interval_seconds": 0, "webhook": webhook}
        async with RunningBridge(_config(tmp_path, endpoint, "hooked", first)):
            url = f"http://127.0.0.1:{port}/minio"
            async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
                status = 0
                deadline = time.monotonic() + 30
                while status != 401 and time.monotonic() < deadline:
                    with contextlib.suppress(httpx.TransportError):
                        status = (await client.post(url, json={"Records": []})).status_code
                    await asyncio.sleep(0.05)
                assert status == 401  # no token
                wrong = {"Authorization": "Bearer nope"}
                assert (await client.post(url, json={}, headers=wrong)).status_code == 401
                right = {"Authorization": f"Bearer {token}"}
                assert (await client.post(url, content=b"[", headers=right)).status_code == 400
            await _put(endpoint, "hooked", "w/a b+é.txt", b"hook")
            await wait_for(lambda: len(_events(tmp_path)) == 1)
            await _delete(endpoint, "hooked", "w/a b+é.txt")
            await wait_for(lambda: len(_events(tmp_path)) == 2)
        # a listing after a restart finds nothing new: both changes were checkpointed
        second = {**first, "reconcile_interval_seconds": 0.5}
        async with RunningBridge(_config(tmp_path, endpoint, "hooked", second)):
            await _quiet(tmp_path, 2)
    assert _seen(tmp_path) == [
        ("ObjectCreated:Put", "w/a+b%2B%C3%A9.txt"),
        ("ObjectRemoved:Delete", "w/a+b%2B%C3%A9.txt"),
    ]
    created, removed = _events(tmp_path)
    assert list(created) == RECORD_KEYS
    assert (created["eventVersion"], created["eventSource"]) == ("2.1", "aws:s3")
    assert created["userIdentity"]["principalId"] == endpoint.access_key  # told by MinIO
    assert created["s3"]["object"]["eTag"] == hashlib.md5(b"hook").hexdigest()
    assert created["s3"]["object"]["size"] == 4
    assert created["s3"]["bucket"]["arn"] == "arn:aws:s3:::hooked"
    assert "size" not in removed["s3"]["object"]


async def test_a_change_seen_by_webhook_then_by_a_listing_is_delivered_once(
    tmp_path: Path, minio_binary: Path
) -> None:
    port, token = _free_port(), "hook-token-2"
    home = tmp_path / "minio"
    with _own_minio(minio_binary, home, _webhook_env(home, port, token)) as server:
        endpoint = server.endpoint
        async with endpoint.client("s3") as s3:
            await s3.create_bucket(Bucket="dedupe")
        await _notify_webhook(endpoint, "dedupe")
        webhook = {"port": port, "path": "/minio", "auth_token": token}
        connector, store = _connector(
            tmp_path, endpoint, bucket="dedupe", push=False, reconcile=False, webhook=webhook
        )
        try:
            await connector.open()
            reader = aiter(connector.read())
            await _put(endpoint, "dedupe", "seen-by-push", b"p")
            [pushed] = await asyncio.wait_for(anext(reader), 30)
            assert pushed.data.principal == endpoint.access_key  # it came by webhook
            await _notify_webhook(endpoint, "dedupe", on=False)
            await _put(endpoint, "dedupe", "seen-by-listing", b"l")
            await connector.reconcile()
            [listed] = await asyncio.wait_for(anext(reader), 30)
            assert (listed.partition, listed.data.event) == ("seen-by-listing", "ObjectCreated:Put")
            await connector.reconcile()  # nothing new any more
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(reader), 1.0)
            await connector.commit([pushed])  # each key's newest settled change
            await connector.commit([listed])
            saved = await store.namespace("m").items()
            assert set(saved) == {"seen-by-push", "seen-by-listing"}
        finally:
            await connector.aclose()
            store.close()


async def test_a_webhook_notification_answered_200_survives_kill_9(
    tmp_path: Path, minio_binary: Path
) -> None:
    """MinIO hears 200 only once the notification is in the spool: a bridge killed with
    SIGKILL before it could deliver (its function unreachable) delivers it after a restart,
    with no listing to find it again and no retry by MinIO (no queue_dir)."""
    port, token = _free_port(), "hook-token-3"
    home = tmp_path / "minio"
    with _own_minio(minio_binary, home, _webhook_env(home, port, token)) as server:
        endpoint = server.endpoint
        async with endpoint.client("s3") as s3:
            await s3.create_bucket(Bucket="spooled")
        await _notify_webhook(endpoint, "spooled")
        webhook = {"port": port, "path": "/minio", "auth_token": token}
        source = {"push": False, "reconcile": False, "webhook": webhook}
        config = tmp_path / "bridge.yaml"
        unreachable = "  recorder: {type: http, url: 'http://127.0.0.1:9/', timeout: 1}"
        text = _config(tmp_path, endpoint, "spooled", source)
        functions = text[text.index("functions:\n") + 11 : text.index("mappings:")]
        config.write_text(text.replace(functions, unreachable + "\n"))
        launch = [sys.executable, "-m", "bridge", "run", "--config", str(config), "--no-reload"]
        log = (tmp_path / "bridge.log").open("ab")
        first = subprocess.Popen(launch, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            spool = tmp_path / "state" / "spool" / "objects"
            await wait_for(
                lambda: (tmp_path / "bridge.log").read_text().count("mapping.started") > 0
            )
            await asyncio.sleep(1)
            await _put(endpoint, "spooled", "kept.txt", b"k")
            await wait_for(lambda: sum(p.stat().st_size for p in spool.glob("*.log")) > 0)
        finally:
            first.kill()
            first.wait(timeout=30)
        config.write_text(text)
        second = subprocess.Popen(launch, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            await wait_for(lambda: len(_events(tmp_path)) >= 1, 60)
        finally:
            second.terminate()
            second.wait(timeout=30)
            log.close()
    assert _seen(tmp_path) == [("ObjectCreated:Put", "kept.txt")]


# --- the push stream --------------------------------------------------------------------------


async def test_push_stream_events_are_aws_events_with_keys_encoded_once(
    tmp_path: Path, minio_endpoint: AwsEndpoint, minio_bucket_factory: Any
) -> None:
    """Push alone (no listing). A burst, so that it also passes on MinIO builds that
    flush the stream only when their 4 KB write buffer fills (see streaming_minio)."""
    bucket = await minio_bucket_factory()
    source = {"reconcile": False, "ping_seconds": 1}
    async with RunningBridge(_config(tmp_path, minio_endpoint, bucket, source)):
        await asyncio.sleep(1)  # the stream subscribes; what happens before is lost to push
        async with minio_endpoint.client("s3") as s3:
            for i in range(24):
                await s3.put_object(Bucket=bucket, Key=f"burst {i}/é+.txt", Body=b"x" * i)
        await wait_for(lambda: len(_events(tmp_path)) >= 10, timeout=30)
    events = _events(tmp_path)
    expected = {f"burst+{i}/%C3%A9%2B.txt": i for i in range(24)}
    for event in events:
        obj = event["s3"]["object"]
        assert event["eventName"] == "ObjectCreated:Put"
        assert event["userIdentity"]["principalId"] == minio_endpoint.access_key  # from MinIO
        assert obj["size"] == expected[obj["key"]]
        assert obj["eTag"] == hashlib.md5(b"x" * obj["size"]).hexdigest()


async def test_push_stream_alone_delivers_minio_events_in_aws_shape(
    tmp_path: Path, minio_endpoint: AwsEndpoint, minio_bucket_factory: Any
) -> None:
    endpoint = minio_endpoint
    bucket = await minio_bucket_factory()
    source = {"reconcile": False, "ping_seconds": 1}
    async with RunningBridge(_config(tmp_path, endpoint, bucket, source)):
        await asyncio.sleep(1)  # the stream subscribes; what happens before is lost to push
        await _put(endpoint, bucket, "p/one two.txt", b"1")
        async with endpoint.client("s3") as s3:
            await s3.copy_object(
                Bucket=bucket, Key="p/copy", CopySource={"Bucket": bucket, "Key": "p/one two.txt"}
            )
        await _delete(endpoint, bucket, "p/one two.txt")
        await _flush_burst(endpoint, bucket)
        await wait_for(lambda: len([k for _, k in _seen(tmp_path) if k.startswith("p/")]) == 3)
    seen = [(n, k) for n, k in _seen(tmp_path) if k.startswith("p/")]
    # order is guaranteed per key (the partition); different keys are delivered in parallel
    assert [n for n, k in seen if k == "p/one+two.txt"] == [
        "ObjectCreated:Put",
        "ObjectRemoved:Delete",
    ]
    assert [n for n, k in seen if k == "p/copy"] == ["ObjectCreated:Copy"]
    assert len(seen) == 3
    assert all(e["userIdentity"]["principalId"] == endpoint.access_key for e in _events(tmp_path))


async def test_a_change_seen_by_push_and_by_listings_is_delivered_once(
    tmp_path: Path, minio_endpoint: AwsEndpoint, minio_bucket_factory: Any
) -> None:
    endpoint = minio_endpoint
    bucket = await minio_bucket_factory()
    source = {"reconcile_interval_seconds": 0.5, "ping_seconds": 1}
    async with RunningBridge(_config(tmp_path, endpoint, bucket, source)):
        await asyncio.sleep(1)
        await _put(endpoint, bucket, "x", b"1")
        fillers = await _flush_burst(endpoint, bucket)
        await wait_for(lambda: ("ObjectCreated:Put", "x") in _seen(tmp_path))
        await _quiet(tmp_path, 2)  # listings every 0.5 s see x and the fillers again
        await _delete(endpoint, bucket, "x")
        await _flush_burst(endpoint, bucket)  # overwrites the fillers: one more Put each
        await wait_for(lambda: ("ObjectRemoved:Delete", "x") in _seen(tmp_path))
        await _quiet(tmp_path, 2)
    seen = _seen(tmp_path)
    assert [(n, k) for n, k in seen if k == "x"] == [
        ("ObjectCreated:Put", "x"),
        ("ObjectRemoved:Delete", "x"),
    ]
    import shutil

    shutil.copy(tmp_path / "calls.jsonl", "/tmp/s3calls.jsonl")
    for key in fillers:  # created, then overwritten with the same bytes: push saw two PUTs
        assert 1 <= [k for _, k in seen].count(key) <= 2


async def test_an_identical_put_told_by_push_is_an_event_each_time(
    tmp_path: Path, minio_endpoint: AwsEndpoint, minio_bucket_factory: Any
) -> None:
    """S3 sends one event per PUT, the same bytes or not; only a listing compares."""
    bucket = await minio_bucket_factory()
    source = {"reconcile": False, "ping_seconds": 1}
    async with RunningBridge(_config(tmp_path, minio_endpoint, bucket, source)):
        await asyncio.sleep(1)  # the stream subscribes
        for _ in range(3):
            await _put(minio_endpoint, bucket, "same", b"identical bytes")
        await _flush_burst(minio_endpoint, bucket)
        await wait_for(lambda: [k for _, k in _seen(tmp_path)].count("same") == 3, timeout=30)
    assert [n for n, k in _seen(tmp_path) if k == "same"] == ["ObjectCreated:Put"] * 3


async def test_versioned_deletes_are_events_and_uncovered_versions_are_no_news(
    tmp_path: Path, minio_endpoint: AwsEndpoint, minio_bucket_factory: Any
) -> None:
    """put v1; delete (a delete marker); delete the marker by its version id (MinIO calls
    that DeleteMarkerCreated again; AWS says ObjectRemoved:Delete); delete v1 by its id.
    Every step is an event of AWS's name, and a listing after the marker's removal does not
    report the version it uncovered as a new object."""
    endpoint = minio_endpoint
    bucket = await minio_bucket_factory()
    async with endpoint.client("s3") as s3:
        await s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    connector, store = _connector(
        tmp_path, endpoint, bucket=bucket, reconcile=False, ping_seconds=1
    )
    records: list[Any] = []

    async def settle_all() -> None:
        async for chunk in connector.read():
            for record in chunk:
                records.append(record)
                await connector.commit([record])

    def doc() -> list[tuple[str, str | None]]:
        return [(r.data.event, r.data.version_id) for r in records if r.partition == "doc"]

    try:
        await connector.open()
        consumer = asyncio.create_task(settle_all())
        await asyncio.sleep(1)  # the stream subscribes
        async with endpoint.client("s3") as s3:
            v1 = (await s3.put_object(Bucket=bucket, Key="doc", Body=b"v1"))["VersionId"]
            marker = (await s3.delete_object(Bucket=bucket, Key="doc"))["VersionId"]
            await s3.delete_object(Bucket=bucket, Key="doc", VersionId=marker)
            await _flush_burst(endpoint, bucket)
            await wait_for(lambda: len(doc()) == 3, timeout=30)
            await connector.reconcile()  # doc is there again: v1, which is no news
            await asyncio.sleep(0.5)
            assert len(doc()) == 3
            await s3.delete_object(Bucket=bucket, Key="doc", VersionId=v1)
            await _flush_burst(endpoint, bucket)
            await wait_for(lambda: len(doc()) == 4, timeout=30)
            await connector.reconcile()
            await asyncio.sleep(0.5)
            listing = await s3.list_object_versions(Bucket=bucket)  # empty it, version by version
            for item in listing.get("Versions", []) + listing.get("DeleteMarkers", []):
                await s3.delete_object(Bucket=bucket, Key=item["Key"], VersionId=item["VersionId"])
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
    finally:
        await connector.aclose()
        store.close()
    assert doc() == [
        ("ObjectCreated:Put", v1),
        ("ObjectRemoved:DeleteMarkerCreated", marker),
        ("ObjectRemoved:Delete", marker),
        ("ObjectRemoved:Delete", v1),
    ]


async def test_a_change_found_by_a_listing_is_as_old_as_its_discovery(
    tmp_path: Path, minio_endpoint: AwsEndpoint, minio_bucket_factory: Any
) -> None:
    """Objects written long before the mapping's first start (here: a maximum event age
    shorter than their age) are delivered, not dead-lettered as too old; the event keeps
    the object's own time."""
    bucket = await minio_bucket_factory()
    await _put(minio_endpoint, bucket, "old", b"written before")
    await asyncio.sleep(2.5)
    failures = tmp_path / "failures.jsonl"
    text = _config(
        tmp_path,
        minio_endpoint,
        bucket,
        LISTING,
        maximum_record_age_seconds=2,
        on_failure=f"file://{failures}",
    )
    async with RunningBridge(text):
        await wait_for(lambda: ("ObjectCreated:Put", "old") in _seen(tmp_path), timeout=30)
    assert not failures.exists() or failures.read_text() == ""
    [event] = _events(tmp_path)
    written = time.mktime(time.strptime(event["eventTime"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert time.time() - time.timezone - written > 2  # the object's LastModified


async def test_push_alone_keeps_no_state_per_key(
    tmp_path: Path, minio_endpoint: AwsEndpoint, minio_bucket_factory: Any
) -> None:
    """reconcile off: what the source holds per key is only what is in flight, however many
    keys come and go."""
    bucket = await minio_bucket_factory()
    connector, store = _connector(
        tmp_path, minio_endpoint, bucket=bucket, reconcile=False, ping_seconds=1
    )
    try:
        await connector.open()
        seen = 0

        async def settle_all() -> None:
            nonlocal seen
            async for chunk in connector.read():
                for record in chunk:
                    await connector.commit([record])  # settled: committed one by one
                seen += len(chunk)

        consumer = asyncio.create_task(settle_all())
        await asyncio.sleep(1)  # the stream subscribes
        async with minio_endpoint.client("s3") as s3:
            for i in range(300):
                await s3.put_object(Bucket=bucket, Key=f"churn/{i}", Body=b"x")
                await s3.delete_object(Bucket=bucket, Key=f"churn/{i}")
        await wait_for(lambda: seen >= 500)  # in 4 KB bursts: most of the 600 events
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
        # at most the chunk being settled when the consumer stopped; not one per key (300)
        assert len(connector._in_flight) < 50
        assert connector._pushed_during is None and len(connector._listed_lately) == 0
        stored = await store.namespace("m").items("churn/")
        assert len(stored) < 50  # the deletes left nothing, but for the last chunk
    finally:
        await connector.aclose()
        store.close()


async def test_a_new_users_defaults_deliver_a_put_within_seconds(
    tmp_path: Path, minio_endpoint: AwsEndpoint, minio_bucket_factory: Any
) -> None:
    """Nothing but the bucket and where it is: a PUT after start reaches the function in
    seconds, whether or not the store's listen stream flushes (the MinIO build the tests
    use does not: then the 5 s listing finds it)."""
    bucket = await minio_bucket_factory()
    async with RunningBridge(_config(tmp_path, minio_endpoint, bucket)):
        await asyncio.sleep(1)
        started = time.monotonic()
        await _put(minio_endpoint, bucket, "hello.txt", b"hello")
        await wait_for(lambda: ("ObjectCreated:Put", "hello.txt") in _seen(tmp_path), timeout=20)
        took = time.monotonic() - started
    assert took < 12


async def test_a_quiet_stream_keeps_what_the_store_held_back(
    tmp_path: Path, minio_endpoint: AwsEndpoint, minio_bucket_factory: Any
) -> None:
    """A PUT and a DELETE right after start, then silence for longer than three ping
    intervals: a stream reconnected on silence would throw away what the store still held
    in its buffer (a listing cannot see a key created and deleted between two listings).
    Kept open, they come out with the next traffic."""
    bucket = await minio_bucket_factory()
    source = {"reconcile": False, "ping_seconds": 1}
    async with RunningBridge(_config(tmp_path, minio_endpoint, bucket, source)):
        await asyncio.sleep(1)  # the stream subscribes
        await _put(minio_endpoint, bucket, "brief", b"here and gone")
        await _delete(minio_endpoint, bucket, "brief")
        await asyncio.sleep(5)  # quiet: no bytes from a store that holds the stream back
        await _flush_burst(minio_endpoint, bucket)
        await wait_for(lambda: [k for _, k in _seen(tmp_path)].count("brief") == 2, timeout=30)
    assert [n for n, k in _seen(tmp_path) if k == "brief"] == [
        "ObjectCreated:Put",
        "ObjectRemoved:Delete",
    ]


def test_public_surface() -> None:
    import connectors.s3

    assert connectors.s3.__all__ == ["S3Connector", "S3Source"]
    assert S3Connector.type == "s3" and S3Connector.config_model is S3Source
    assert S3Connector.ordered is True and S3Connector.redelivery == "bridge"
