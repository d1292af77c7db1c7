"""``trigger-bridge generate-event``: each connector's own sample, through the registry."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from bridge import registry
from bridge.cli import main
from bridge.samples import SampleError, parameters, sample_event, sample_types
from connectors.s3_events import s3_record

REPO = Path(__file__).resolve().parents[1]
BUILT_IN = [
    "dynamodb_streams", "eventbridge", "kafka", "local_dir", "s3", "schedule", "sqs", "websocket",
]  # fmt: skip


def generated(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert main(["generate-event", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["generate-event", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err


# --- the samples the engine had before they moved into the connectors --------------------


@pytest.mark.parametrize(
    ("source", "keys"),
    [
        ("s3", {"eventVersion", "eventSource", "s3", "eventName", "awsRegion"}),
        ("sqs", {"messageId", "receiptHandle", "body", "md5OfBody", "eventSourceARN"}),
        ("dynamodb", {"eventID", "eventName", "dynamodb", "eventSourceARN", "eventVersion"}),
    ],
)
def test_generate_event_prints_records_shaped_like_aws(
    source: str, keys: set[str], capsys: pytest.CaptureFixture[str]
) -> None:
    [record] = generated(capsys, source)["Records"]
    assert keys <= set(record)


def test_generate_kafka_event(capsys: pytest.CaptureFixture[str]) -> None:
    event = generated(capsys, "kafka")
    assert event["eventSource"] == "SelfManagedKafka"
    [record] = event["records"]["mytopic-0"]
    assert record["partition"] == 0 and isinstance(record["timestamp"], int)


def test_generate_websocket_event(capsys: pytest.CaptureFixture[str]) -> None:
    event = generated(capsys, "websocket")
    assert event["eventSource"] == "trigger-bridge:websocket"
    [text] = event["records"]
    assert json.loads(text["data"])["symbol"] == text["partitionKey"] == "AAPL"
    assert text["isBase64Encoded"] is False and text["sequenceNumber"] == "42"

    [binary] = generated(capsys, "websocket", "--frame-type", "binary")["records"]
    assert binary["isBase64Encoded"] is True and binary["frameType"] == "binary"
    assert json.loads(base64.b64decode(binary["data"]))["symbol"] == "AAPL"


# --- every source type has one, from its connector ---------------------------------------


@pytest.mark.parametrize("source", BUILT_IN)
def test_every_built_in_source_type_has_a_sample(source: str) -> None:
    assert source in sample_types()
    assert hasattr(registry.connector_class(source), "sample_event")
    event = sample_event(source)
    assert json.loads(json.dumps(event)) == event and event


def test_dynamodb_stays_a_name_of_dynamodb_streams() -> None:
    assert [p.name for p in parameters("dynamodb")] == [
        p.name for p in parameters("dynamodb_streams")
    ]


def test_s3_sample_is_the_connectors_record_with_the_given_object(
    capsys: pytest.CaptureFixture[str],
) -> None:
    [record] = generated(
        capsys, "s3", "--bucket", "photos", "--key", "my cat/été.jpg", "--size", "7"
    )["Records"]

    assert record["s3"]["bucket"]["arn"] == "arn:aws:s3:::photos"
    assert record["s3"]["object"]["key"] == "my+cat/%C3%A9t%C3%A9.jpg"
    assert record["s3"]["object"]["size"] == 7
    expected = s3_record(
        event_name="ObjectCreated:Put",
        bucket="photos",
        key="my cat/été.jpg",
        sequencer=record["s3"]["object"]["sequencer"],
        event_time=0,
        region="us-east-1",
        size=7,
        etag=record["s3"]["object"]["eTag"],
    )
    assert record == {**expected, "eventTime": record["eventTime"]}


def test_s3_removal_has_no_size(capsys: pytest.CaptureFixture[str]) -> None:
    [record] = generated(capsys, "local_dir", "--event-name", "ObjectRemoved:Delete")["Records"]
    assert record["eventName"] == "ObjectRemoved:Delete"
    assert "size" not in record["s3"]["object"]


def test_sqs_sample_of_a_fifo_queue_carries_its_group(capsys: pytest.CaptureFixture[str]) -> None:
    [record] = generated(capsys, "sqs", "--queue", "orders.fifo", "--body", "hi")["Records"]
    assert record["body"] == "hi"
    assert record["eventSourceARN"] == "arn:aws:sqs:us-east-1:000000000000:orders.fifo"
    assert record["attributes"]["MessageGroupId"] == "group-1"


def test_kafka_sample_takes_topic_partition_key_and_value(
    capsys: pytest.CaptureFixture[str],
) -> None:
    event = generated(
        capsys, "kafka", "--topic", "orders", "--partition", "3", "--key", "", "--value", "v"
    )
    [record] = event["records"]["orders-3"]
    assert record["partition"] == 3 and "key" not in record
    assert base64.b64decode(record["value"]) == b"v"


def test_dynamodb_modify_has_both_images_typed(capsys: pytest.CaptureFixture[str]) -> None:
    [record] = generated(
        capsys, "dynamodb_streams", "--table", "Orders", "--event-name", "MODIFY",
        "--keys", '{"pk": "a"}', "--new-image", '{"pk": "a", "n": 2, "ok": true}',
    )["Records"]  # fmt: skip
    change = record["dynamodb"]
    assert change["Keys"] == {"pk": {"S": "a"}}
    assert change["NewImage"] == {"pk": {"S": "a"}, "n": {"N": "2"}, "ok": {"BOOL": True}}
    assert "OldImage" in change
    assert ":table/Orders/stream/" in record["eventSourceARN"]


def test_schedule_sample_at_a_given_time(capsys: pytest.CaptureFixture[str]) -> None:
    event = generated(capsys, "schedule", "--rule", "nightly", "--time", "2026-03-01T02:00:00Z")
    assert event["detail-type"] == "Scheduled Event" and event["time"] == "2026-03-01T02:00:00Z"
    assert event["resources"] == ["arn:aws:events:us-east-1:000000000000:rule/nightly"]


async def test_eventbridge_sample_is_the_envelope_the_bus_spools(tmp_path: Path) -> None:
    from bridge.front.config import EventBusConfig
    from bridge.front.event_bus import EventBusServer

    bus = EventBusServer(
        EventBusConfig(name="default"),
        [],
        state_dir=str(tmp_path),
        region="eu-west-1",
        account_id="111122223333",
    )
    entry = {"Source": "shop", "DetailType": "Order Placed", "Detail": '{"id": 1}'}
    spooled = bus._event(entry)

    sample = sample_event(
        "eventbridge",
        source="shop",
        detail_type="Order Placed",
        detail='{"id": 1}',
        region="eu-west-1",
        account="111122223333",
    )
    assert list(sample) == list(spooled)
    assert {**sample, "id": "", "time": ""} == {**spooled, "id": "", "time": ""}


def test_http_api_sample_takes_a_route_and_its_path_parameters(
    capsys: pytest.CaptureFixture[str],
) -> None:
    event = generated(
        capsys, "http-api", "--method", "post", "--path", "/items/42?x=1", "--body", '{"a": 1}',
        "--route", "POST /items/{id}",
    )  # fmt: skip
    assert event["version"] == "2.0" and event["routeKey"] == "POST /items/{id}"
    assert event["pathParameters"] == {"id": "42"}
    assert event["queryStringParameters"] == {"x": "1"}
    assert event["body"] == '{"a": 1}' and event["isBase64Encoded"] is False
    assert event["requestContext"]["http"]["method"] == "POST"

    v1 = generated(capsys, "http-api", "--payload-format-version", "1.0")
    assert v1["version"] == "1.0" and v1["httpMethod"] == "GET"


def test_websocket_api_sample_of_each_kind(capsys: pytest.CaptureFixture[str]) -> None:
    message = generated(capsys, "websocket-api", "--route", "sendmessage", "--body", "hi")
    assert message["body"] == "hi"
    assert message["requestContext"]["routeKey"] == "sendmessage"
    connect = generated(capsys, "websocket-api", "--route", "$connect")
    assert connect["requestContext"]["eventType"] == "CONNECT" and "headers" in connect
    disconnect = generated(capsys, "websocket-api", "--route", "$disconnect")
    assert disconnect["requestContext"]["disconnectStatusCode"] == 1000


# --- a third-party connector gets it for free ---------------------------------------------


class ThingConnector:
    """A connector of someone else's package (only what generate-event looks at)."""

    type: ClassVar[str] = "thing"

    @staticmethod
    def sample_event(*, name: str = "widget", count: int = 1) -> dict[str, Any]:
        """One thing."""
        return {"things": [{"name": name}] * count}


@pytest.fixture
def thing() -> Iterator[None]:
    registry.register("thing", f"{__name__}:ThingConnector")
    yield
    registry._discovered().pop("thing", None)
    registry.connector_class.cache_clear()


@pytest.mark.usefixtures("thing")
def test_a_third_party_connector_with_the_hook_has_a_sample(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert "thing" in sample_types()
    assert generated(capsys, "thing", "--count", "2") == {"things": [{"name": "widget"}] * 2}


def test_a_connector_without_the_hook_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert "defines no sample_event" in refused(capsys, "journal")


# --- mistakes ------------------------------------------------------------------------------


def test_a_parameter_the_source_does_not_take_is_named_with_the_ones_it_takes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = refused(capsys, "s3", "--topic", "orders")
    assert "s3 takes no --topic" in err
    assert "--bucket, --key, --event-name, --size, --region" in err


def test_a_value_of_the_wrong_type_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert "--partition: 'first' is not an integer" in refused(
        capsys, "kafka", "--partition", "first"
    )
    assert "--detail: '{nope' is not JSON" in refused(capsys, "eventbridge", "--detail", "{nope")
    assert "ObjectCreated:Put" in refused(capsys, "s3", "--event-name", "Created")


def test_an_unknown_source_suggests_the_nearest(capsys: pytest.CaptureFixture[str]) -> None:
    err = refused(capsys, "kafak")
    assert "did you mean kafka?" in err and "http-api" in err
    with pytest.raises(SampleError):
        sample_event("nothing-like-it")


def test_source_help_lists_its_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["generate-event", "kafka", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--topic TOPIC" in out and "--partition PARTITION" in out


def test_the_shared_options_may_follow_the_source(capsys: pytest.CaptureFixture[str]) -> None:
    [record] = generated(capsys, "sqs", "--log-level", "DEBUG", "--queue", "q")["Records"]
    assert record["eventSourceARN"].endswith(":q")


# --- a closed pipe -------------------------------------------------------------------------


def test_a_reader_that_went_away_ends_it_quietly() -> None:
    read, write = os.pipe()
    os.close(read)  # as `| head -1` once it has its line
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bridge", "generate-event", "s3"],
            cwd=REPO,
            stdout=write,
            stderr=subprocess.PIPE,
            timeout=60,
        )
    finally:
        os.close(write)
    assert done.stderr == b""
    assert done.returncode == 141


def test_head_takes_the_first_line(tmp_path: Path) -> None:
    done = subprocess.run(
        f"'{sys.executable}' -m bridge generate-event s3 | head -1",
        shell=True,
        cwd=REPO,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout == b"{\n" and done.stderr == b""
