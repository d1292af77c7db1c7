"""Dead letters of a DynamoDB Streams mapping (DynamoDB Local): the failure record names a
shard's sequence numbers only; a replay reads those records again from the stream."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e.harness import RunningBridge, failures, wait_for
from tests.services.fixtures import AwsEndpoint
from tests.support.dlq import cli, events, fix_function, flaky_function


async def test_stream_dead_letters_are_re_read_by_sequence_number(
    tmp_path: Path, dynamodb_endpoint: AwsEndpoint, dynamodb_table_factory: Any
) -> None:
    table = await dynamodb_table_factory()
    endpoint = dynamodb_endpoint
    config = tmp_path / "bridge.yaml"
    config.write_text(f"""
state_dir: {tmp_path}/state
retry_backoff: {{initial_seconds: 0.01, max_seconds: 0.05}}
shutdown_timeout_seconds: 5
functions:
{flaky_function(tmp_path)}
mappings:
  - name: changes
    function: flaky
    maximum_retry_attempts: 0
    maximum_batching_window_seconds: 1
    source:
      type: dynamodb_streams
      table_name: {table.name}
      starting_position: TRIM_HORIZON
      endpoint_url: {endpoint.url}
      region: {endpoint.region}
      aws_access_key_id: {endpoint.access_key}
      aws_secret_access_key: {endpoint.secret_key}
""")
    async with endpoint.client("dynamodb") as ddb:
        for pk in ("a", "b"):
            await ddb.put_item(TableName=table.name, Item={"pk": {"S": pk}})
    dead = tmp_path / "state" / "failures" / "changes.jsonl"
    async with RunningBridge(config.read_text()):
        await wait_for(
            lambda: sum(d["DDBStreamBatchInfo"]["batchSize"] for d in failures(dead)) == 2
        )
    originals = [r for e in events(tmp_path) for r in e["Records"]]

    listed = await cli("dlq", "list", "--config", str(config), "--json")
    assert listed.status == 0, listed.err
    assert {x["replay"]["how"] for x in listed.json()} == {"re-read"}

    fix_function(tmp_path)
    before = len(events(tmp_path))
    replayed = await cli("dlq", "replay", "--config", str(config))
    assert replayed.status == 0, replayed.out + replayed.err
    again = [r for e in events(tmp_path)[before:] for r in e["Records"]]
    assert again == originals  # the same stream records, as first delivered

    second = await cli("dlq", "replay", "--config", str(config))
    assert "replayed 0," in second.out
    assert len(events(tmp_path)) == before + len(listed.json())  # one event per dead letter
