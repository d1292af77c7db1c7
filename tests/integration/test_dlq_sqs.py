"""Dead letters on an ``sqs://`` destination queue (ElasticMQ and moto): listed without
being consumed, replayed to a real function, deleted from the queue once replayed."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import RunningBridge
from tests.services.fixtures import AwsEndpoint
from tests.support.dlq import cli, events, fix_function, flaky_function


async def queue_size(endpoint: AwsEndpoint, url: str) -> int:
    """Messages in the queue, visible or not."""
    async with endpoint.client("sqs") as sqs:
        got = await sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
    return sum(int(v) for v in got["Attributes"].values())


async def visible(endpoint: AwsEndpoint, url: str) -> int:
    async with endpoint.client("sqs") as sqs:
        got = await sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
        )
    return int(got["Attributes"]["ApproximateNumberOfMessages"])


async def test_sqs_dead_letters_are_replayed_then_deleted_from_the_queue(
    tmp_path: Path,
    sqs_endpoint: AwsEndpoint,
    sqs_queue_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a folder mapping's sqs:// destination uses the default AWS chain: point it here
    monkeypatch.setenv("AWS_ENDPOINT_URL", sqs_endpoint.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", sqs_endpoint.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", sqs_endpoint.secret_key)
    queue = await sqs_queue_factory()
    config = tmp_path / "bridge.yaml"
    config.write_text(f"""
state_dir: {tmp_path}/state
retry_backoff: {{initial_seconds: 0.01, max_seconds: 0.05}}
functions:
{flaky_function(tmp_path)}
mappings:
  - name: inbox
    function: flaky
    source: {{type: local_dir, path: {tmp_path}/inbox, events: ["s3:ObjectCreated:*"]}}
    maximum_retry_attempts: 0
    on_failure: sqs://{queue.name}
""")
    (tmp_path / "inbox").mkdir()
    async with RunningBridge(config.read_text()):
        for name in ("a.txt", "b.txt", "c.txt"):
            (tmp_path / "inbox" / name).write_text(name)
        deadline = time.monotonic() + 30
        while await queue_size(sqs_endpoint, queue.url) < 3:
            assert time.monotonic() < deadline, "records not dead-lettered in time"
            await asyncio.sleep(0.2)
    dead_lettered = [e["Records"][0]["s3"]["object"]["key"] for e in events(tmp_path)]

    listed = await cli("dlq", "list", "--config", str(config), "--json")
    assert listed.status == 0, listed.err
    letters = listed.json()
    assert len(letters) == 3 and {x["condition"] for x in letters} == {"RetriesExhausted"}
    assert all(x["location"].startswith(f"{queue.name} message ") for x in letters)
    assert await visible(sqs_endpoint, queue.url) == 3  # listing hid nothing
    shown = await cli("dlq", "show", letters[1]["id"], "--config", str(config), "--json")
    assert shown.json()["document"]["requestContext"]["condition"] == "RetriesExhausted"
    assert await visible(sqs_endpoint, queue.url) == 3

    fix_function(tmp_path)
    first = await cli("dlq", "replay", letters[0]["id"], "--config", str(config))
    assert first.status == 0, first.out + first.err
    assert await queue_size(sqs_endpoint, queue.url) == 2  # deleted once replayed
    assert await visible(sqs_endpoint, queue.url) == 2  # the others are back at once

    rest = await cli("dlq", "replay", "--config", str(config))
    assert rest.status == 0 and "replayed 2," in rest.out, rest.out + rest.err
    assert await queue_size(sqs_endpoint, queue.url) == 0
    replayed = [e["Records"][0]["s3"]["object"]["key"] for e in events(tmp_path)[3:]]
    assert sorted(replayed) == sorted(dead_lettered)

    listed = await cli("dlq", "list", "--config", str(config))
    assert listed.out.strip() == "no dead letters"
    assert "no dead letters to replay" in (await cli("dlq", "replay", "--config", str(config))).out
