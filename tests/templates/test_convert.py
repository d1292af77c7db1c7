"""SAM, CloudFormation and serverless.yml files as bridge configs: what is derived, and
the errors that name the template's file, line, resource and property."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.cli import main
from bridge.errors import ConfigError
from bridge.templates import Source, convert, load_source
from bridge.templates.convert import parse_overrides

HERE = Path(__file__).parent


def _convert(
    name: str, *, overlay: str | None = None, tmp: Path | None = None, **overrides: str
) -> tuple[dict[str, Any], list[str]]:
    overlay_path = None
    if overlay is not None:
        assert tmp is not None
        overlay_path = tmp / "local.yaml"
        overlay_path.write_text(overlay)
    path = HERE / name
    source = Source(
        path,
        serverless=path.name == "serverless.yml",
        overlay=overlay_path,
        overrides=tuple(overrides.items()),
    )
    return convert(source)


def _mapping(data: dict[str, Any], name: str) -> dict[str, Any]:
    [mapping] = [m for m in data["mappings"] if m["name"] == name]
    return mapping


OVERLAY = """
region: eu-west-1
endpoints: {sqs: "http://127.0.0.1:9324", dynamodb: "http://127.0.0.1:8000", s3: "http://127.0.0.1:9000"}
kafka: {bootstrap_servers: [127.0.0.1:9092]}
"""


def test_sam_sqs_function_runs_under_awslambdaric_with_the_queue_at_the_overlay_endpoint(
    tmp_path: Path,
) -> None:
    data, notes = _convert("sam_sqs/template.yaml", overlay=OVERLAY, tmp=tmp_path)
    function = data["functions"]["SQSPayloadLogger"]
    assert function["type"] == "runtime"
    assert function["command"] == "python -m awslambdaric app.handler"
    assert Path(function["cwd"]).resolve() == (HERE / "sam_sqs" / "src").resolve()
    assert function["timeout"] == 25  # Globals.Function
    assert function["memory_size"] == 256
    assert function["env"]["STAGE"] == "dev"  # Globals' variables, merged
    assert function["env"]["QUEUE_URL"] == "http://127.0.0.1:9324/000000000000/orders-dev"
    assert function["env"]["AWS_ENDPOINT_URL_SQS"] == "http://127.0.0.1:9324"
    assert "AWS_ACCESS_KEY_ID" in function["inherit_env"]
    assert data["region"] == "eu-west-1"
    assert data["mappings"] == [
        {
            "name": "SQSPayloadLogger-SQSQueueEvent",
            "function": "SQSPayloadLogger",
            "source": {
                "type": "sqs",
                "queue_name": "orders-dev",
                "endpoint_url": "http://127.0.0.1:9324",
            },
            "batch_size": 5,
            "maximum_batching_window_seconds": 1,
            "function_response_types": ["ReportBatchItemFailures"],
            "maximum_concurrency": 5,
        }
    ]
    assert notes == []  # the Outputs' !ImportValue is never used, so never an error


def test_without_an_overlay_sources_are_aws_itself() -> None:
    data, _ = _convert("sam_sqs/template.yaml")
    assert data["mappings"][0]["source"] == {
        "type": "sqs",
        "queue_url": "https://sqs.us-east-1.amazonaws.com/000000000000/orders-dev",
    }


def test_parameter_overrides_win_over_defaults_and_are_checked() -> None:
    data, _ = _convert("sam_sqs/template.yaml", Stage="prod")
    assert data["mappings"][0]["source"]["queue_url"].endswith("/orders-prod")
    with pytest.raises(ConfigError, match=r"'test' is not one of AllowedValues"):
        _convert("sam_sqs/template.yaml", Stage="test")
    with pytest.raises(ConfigError, match="parameter 'Nope' is not among the template's"):
        _convert("sam_sqs/template.yaml", Nope="x")


def test_sam_s3_event_with_its_function_event_invoke_config() -> None:
    data, _ = _convert("sam_s3/template.yaml", AppBucketName="uploads")
    assert _mapping(data, "S3JsonLoggerFunction-S3NewObjectEvent") == {
        "name": "S3JsonLoggerFunction-S3NewObjectEvent",
        "function": "S3JsonLoggerFunction",
        "source": {
            "type": "s3",
            "bucket": "uploads",
            "events": ["s3:ObjectCreated:*"],
            "suffix": ".json",
        },
        "maximum_retry_attempts": 1,
        "maximum_record_age_seconds": 3600,
        "on_failure": "sqs://s3-failures",
    }
    # no CodeUri: the template's folder, as sam build takes it
    cwd = data["functions"]["S3JsonLoggerFunction"]["cwd"]
    assert Path(cwd).resolve() == (HERE / "sam_s3").resolve()


def test_a_bucket_can_stand_for_a_local_folder(tmp_path: Path) -> None:
    overlay = f"local_dirs: {{uploads: {tmp_path}/inbox}}\n"
    data, _ = _convert(
        "sam_s3/template.yaml", overlay=overlay, tmp=tmp_path, AppBucketName="uploads"
    )
    assert data["mappings"][0]["source"] == {
        "type": "local_dir",
        "path": f"{tmp_path}/inbox",
        "bucket": "uploads",
        "events": ["s3:ObjectCreated:*"],
        "suffix": ".json",
    }


def test_a_parameter_without_default_fails_where_it_is_used() -> None:
    with pytest.raises(ConfigError) as info:
        _convert("sam_s3/template.yaml")
    message = str(info.value)
    assert "sam_s3/template.yaml:44: Resources.AppBucket.Properties.BucketName.Ref" in message
    assert "give --parameter-overrides AppBucketName=VALUE" in message


def test_sam_dynamodb_stream_reads_the_table_at_the_overlay_endpoint(tmp_path: Path) -> None:
    data, _ = _convert("sam_dynamodb/template.yaml", overlay=OVERLAY, tmp=tmp_path)
    assert _mapping(data, "StreamProcessor-Stream") == {
        "name": "StreamProcessor-Stream",
        "function": "StreamProcessor",
        "source": {
            "type": "dynamodb_streams",
            "table_name": "orders",
            "endpoint_url": "http://127.0.0.1:8000",
            "starting_position": "TRIM_HORIZON",
        },
        "batch_size": 100,  # !If [IsProd, 1000, 100]: the account is not 123456789012
        "maximum_retry_attempts": 3,
        "maximum_record_age_seconds": 3600,
        "bisect_batch_on_function_error": True,
        "function_response_types": ["ReportBatchItemFailures"],
        "filter_criteria": {"filters": [{"pattern": '{"eventName": ["INSERT", "MODIFY"]}'}]},
        "on_failure": "sqs://FailedOrders",  # the queue's logical id: it has no QueueName
    }


def test_sam_kafka_events_use_the_overlay_cluster(tmp_path: Path) -> None:
    overlay = (
        OVERLAY
        + "kafka: {bootstrap_servers: '127.0.0.1:9092',\n"
        + "        sasl: {mechanism: PLAIN, username: u, password: p}}\n"
    )
    overlay = overlay.replace("kafka: {bootstrap_servers: [127.0.0.1:9092]}\n", "")
    data, _ = _convert("sam_kafka/template.yaml", overlay=overlay, tmp=tmp_path)
    assert _mapping(data, "KafkaFunction-MyKafkaCluster") == {
        "name": "KafkaFunction-MyKafkaCluster",
        "function": "KafkaFunction",
        "source": {
            "type": "kafka",
            "bootstrap_servers": ["127.0.0.1:9092"],
            "topics": ["orders"],
            "consumer_group_id": "consumergroup1",
            "starting_position_timestamp": 1672560000,
            "sasl": {"mechanism": "PLAIN", "username": "u", "password": "p"},
            "starting_position": "AT_TIMESTAMP",
        },
        "batch_size": 500,
    }
    msk = _mapping(data, "MyMskStreamProcessor-MyMskEvent")
    assert msk["source"]["bootstrap_servers"] == ["127.0.0.1:9092"]
    assert msk["source"]["topics"] == ["MyDummyTestTopic"]
    assert msk["source"]["starting_position"] == "LATEST"


def test_msk_without_an_overlay_cluster_is_an_error_naming_the_stream() -> None:
    with pytest.raises(ConfigError) as info:
        _convert("sam_kafka/template.yaml")
    assert "template.yaml:46: Resources.MyMskStreamProcessor.Properties.Events.MyMskEvent" in str(
        info.value
    )
    assert "kafka: {bootstrap_servers: [host:port]}" in str(info.value)


def test_sam_api_and_http_api_events_become_routes(tmp_path: Path) -> None:
    overlay = "apis: {ShopApi: {port: 8080}}\n"
    data, _ = _convert("sam_http_api/template.yaml", overlay=overlay, tmp=tmp_path)
    apis = {api["name"]: api for api in data["apis"]}
    assert apis["ServerlessRestApi"] == {
        "name": "ServerlessRestApi",
        "routes": {"GET /hello": "HelloWorldFunction"},
        "type": "http",
        "payload_format_version": "1.0",
        "stage": "Prod",
    }
    assert apis["ShopApi"]["routes"] == {
        "GET /items/{id}": "ItemsFunction",
        "ANY /items": "ItemsFunction",
    }
    assert apis["ShopApi"]["stage"] == "v1"
    assert apis["ShopApi"]["port"] == 8080
    assert apis["ShopApi"]["cors"] == {
        "allow_origins": ["https://shop.example"],
        "allow_methods": ["GET", "POST"],
        "max_age": 600,
    }
    assert apis["ServerlessHttpApi"]["routes"] == {"$default": "ItemsFunction"}
    assert data["mappings"] == []


def test_sam_schedules_and_rules() -> None:
    data, _ = _convert("sam_schedule/template.yaml")
    nightly = _mapping(data, "ScheduledFunction-Nightly")
    assert nightly["source"] == {
        "type": "schedule",
        "expression": "cron(0 2 * * ? *)",
        "input": {"report": "daily"},
        "rule_name": "nightly-report",
    }
    assert nightly["enabled"] is False  # State: !Ref ScheduleState (Disabled)
    minute = _mapping(data, "ScheduledFunction-EveryMinute")
    assert minute["source"]["timezone"] == "Europe/Berlin"
    assert minute["maximum_retry_attempts"] == 1
    rule = _mapping(data, "TriggeredFunction-OnTerminate")
    assert rule["source"]["event_bus_name"] == "ExternalEventBridge"
    assert rule["source"]["input_transformer"]["input_paths_map"]["state"] == "$.detail.state"
    assert data["event_buses"] == [{"name": "ExternalEventBridge"}, {"name": "default"}]


def test_plain_cloudformation_json() -> None:
    data, _ = _convert("cloudformation/template.json")
    assert data["functions"]["Worker"]["env"] == {"BUCKET": "uploads"}
    assert _mapping(data, "WorkerJobs") == {
        "name": "WorkerJobs",
        "function": "Worker",
        "source": {
            "type": "sqs",
            "queue_url": "https://sqs.us-east-1.amazonaws.com/000000000000/jobs-test",
        },
        "batch_size": 1,
        "enabled": True,
        "function_response_types": ["ReportBatchItemFailures"],
    }
    uploads = _mapping(data, "Uploads-Worker-1")
    assert uploads["source"]["suffix"] == ".csv"  # Fn::Select 0 of a CommaDelimitedList
    assert _mapping(data, "Nightly")["source"] == {
        "type": "schedule",
        "expression": "rate(1 day)",
        "rule_name": "Nightly",
        "input": {"job": "nightly"},
    }


def test_serverless_yml(tmp_path: Path) -> None:
    data, _ = _convert("serverless/serverless.yml", overlay=OVERLAY, tmp=tmp_path, stage="prod")
    compute = data["functions"]["compute"]
    assert compute["timeout"] == 10 and compute["memory_size"] == 1024  # the Framework's default
    assert compute["env"]["TABLE"] == "orders-prod"  # ${self:custom.table} -> ${sls:stage}
    assert data["functions"]["api"]["timeout"] == 6
    assert _mapping(data, "compute-sqs-1")["source"]["queue_name"] == "orders-jobs-prod"
    assert _mapping(data, "compute-sqs-1")["batch_size"] == 20
    stream = _mapping(data, "compute-stream-2")
    assert stream["source"]["table_name"] == "orders-dev"
    assert stream["source"]["starting_position"] == "TRIM_HORIZON"
    assert stream["maximum_batching_window_seconds"] == 2
    assert stream["on_failure"] == "sqs://stream-failures"
    assert stream["filter_criteria"] == {"filters": [{"pattern": {"eventName": ["INSERT"]}}]}
    s3 = _mapping(data, "compute-s3-3")["source"]
    assert (s3["prefix"], s3["suffix"]) == ("uploads/", ".jpg")
    assert _mapping(data, "compute-kafka-5")["source"]["bootstrap_servers"] == ["127.0.0.1:9092"]
    [api] = data["apis"]
    assert api["routes"] == {"GET /orders/{id}": "api", "$default": "api"}
    assert _mapping(data, "api-eventBridge-3")["maximum_retry_attempts"] == 2


def test_an_event_type_the_bridge_lacks_names_the_resource_and_property() -> None:
    with pytest.raises(ConfigError) as info:
        _convert("errors/kinesis.yaml")
    message = str(info.value)
    assert "errors/kinesis.yaml:14: Resources.Reader.Properties.Events.Records.Type" in message
    assert "event type 'Kinesis': the bridge has no such trigger" in message


def test_an_unresolvable_intrinsic_names_the_resource_and_property() -> None:
    with pytest.raises(ConfigError) as info:
        _convert("errors/import_value.yaml")
    assert (
        "errors/import_value.yaml:13: Resources.Reader.Properties.Events.Jobs.Properties.Queue"
        ".Fn::ImportValue: Fn::ImportValue: cannot be resolved without AWS" in str(info.value)
    )


def test_a_runtime_the_bridge_cannot_run_is_an_error_only_where_an_event_needs_it(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError) as info:
        _convert("errors/node.yaml")
    assert "errors/node.yaml:9: Resources.Logger.Properties.Runtime" in str(info.value)
    assert "runtime 'nodejs22.x' is not run by the bridge" in str(info.value)
    overlay = "functions: {Logger: {endpoint_url: 'http://127.0.0.1:9001', emulator: true}}\n"
    data, notes = _convert("errors/node.yaml", overlay=overlay, tmp=tmp_path)
    assert data["functions"] == {
        "Logger": {
            "type": "lambda",
            "function_name": "Logger",
            "endpoint_url": "http://127.0.0.1:9001",
            "emulator": True,
        }
    }
    [note] = notes
    assert note.startswith("function Unused left out (no event names it)")


def test_an_unsupported_property_is_an_error(tmp_path: Path) -> None:
    template = (HERE / "sam_sqs" / "template.yaml").read_text()
    bad = tmp_path / "template.yaml"
    bad.write_text(
        template.replace(
            "            BatchSize: 5\n", "            BatchSize: 5\n            Queues: [x]\n"
        )
    )
    with pytest.raises(
        ConfigError, match=r"template.yaml:48: .*SQSQueueEvent.Properties.Queues: not supported"
    ):
        convert(Source(bad))


def test_the_derived_config_is_validated_with_the_template_lines(tmp_path: Path) -> None:
    template = (HERE / "sam_sqs" / "template.yaml").read_text()
    bad = tmp_path / "template.yaml"
    bad.write_text(template.replace("BatchSize: 5", "BatchSize: 20000"))
    with pytest.raises(ConfigError) as info:
        convert(Source(bad))
    assert f"{bad}:47: mappings[0].batch_size: Input should be less than or equal to 10000" in str(
        info.value
    )
    # and a connector's own check (AWS: above 10 needs a batching window of at least 1 s)
    bad.write_text(
        template.replace("BatchSize: 5", "BatchSize: 50").replace(
            "MaximumBatchingWindowInSeconds: 1", "MaximumBatchingWindowInSeconds: 0"
        )
    )
    with pytest.raises(ConfigError) as info:
        convert(Source(bad))
    assert f"{bad}:47: mappings[0].batch_size: above 10 needs" in str(info.value)


def test_convert_prints_a_bridge_yaml_that_validates_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(HERE / "sam_schedule" / "template.yaml")
    assert main(["template", "convert", "--template", path]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# derived by trigger-bridge template convert --template {path}")
    kept = tmp_path / "bridge.yaml"
    kept.write_text(out)
    assert main(["validate", "--config", str(kept)]) == 0
    assert yaml.safe_load(out)["mappings"][0]["name"] == "ScheduledFunction-Nightly"


def test_convert_and_run_report_template_errors_with_status_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = str(HERE / "errors" / "kinesis.yaml")
    assert main(["template", "convert", "--template", path]) == 2
    assert "event type 'Kinesis'" in capsys.readouterr().err
    assert main(["run", "--template", path]) == 2
    assert "invalid template" in capsys.readouterr().err


def test_parameter_overrides_take_both_spellings() -> None:
    assert parse_overrides(["A=1", "ParameterKey=B,ParameterValue=x=y"]) == (
        ("A", "1"),
        ("B", "x=y"),
    )


def test_load_source_gives_the_validated_config() -> None:
    config = load_source(Source(HERE / "sam_dynamodb" / "template.yaml"))
    [mapping] = config.mappings
    assert mapping.on_failure is not None and mapping.on_failure.destination == "sqs://FailedOrders"
