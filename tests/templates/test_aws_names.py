"""AWS's own option names in bridge.yaml (as the CLI and SDKs spell CreateEventSourceMapping's
parameters), and the ranges AWS validates per source."""

from __future__ import annotations

import pytest

from bridge.config import MappingConfig, parse_config
from bridge.errors import ConfigError

HEAD = """functions:
  f: {type: http, url: "http://127.0.0.1:1"}
mappings:
  - name: m
    function: f
"""
DYNAMODB = "    source: {type: dynamodb_streams, table_name: t, starting_position: LATEST}\n"
SQS = "    source: {type: sqs, queue_name: jobs}\n"
FIFO = "    source: {type: sqs, queue_name: jobs.fifo}\n"
KAFKA = "    source: {type: kafka, bootstrap_servers: '127.0.0.1:9092', topics: [t]}\n"
LOCAL = "    source: {type: local_dir, path: ./inbox}\n"
SCHEDULE = "    source: {type: schedule, expression: rate(1 minute)}\n"


def _parse(source: str, options: str) -> MappingConfig:
    return parse_config(HEAD + source + options, "b.yaml", {}).mappings[0]


def _error(source: str, options: str) -> str:
    with pytest.raises(ConfigError) as info:
        _parse(source, options)
    return str(info.value)


def test_aws_snake_case_names_are_accepted() -> None:
    mapping = _parse(
        DYNAMODB,
        "    maximum_batching_window_in_seconds: 2\n"
        "    maximum_record_age_in_seconds: 120\n"
        "    maximum_retry_attempts: 3\n"
        "    function_response_types: [ReportBatchItemFailures]\n"
        "    destination_config: {on_failure: {destination: 'sqs://dlq'}}\n",
    )
    assert mapping.maximum_batching_window_seconds == 2
    assert mapping.maximum_record_age_seconds == 120
    assert mapping.on_failure is not None and mapping.on_failure.destination == "sqs://dlq"
    sqs = _parse(SQS, "    scaling_config: {maximum_concurrency: 5}\n")
    assert sqs.maximum_concurrency == 5


def test_the_model_takes_aws_names_too() -> None:
    mapping = MappingConfig.model_validate(
        {
            "name": "m",
            "function": "f",
            "source": {"type": "sqs", "queue_name": "q"},
            "scaling_config": {"maximum_concurrency": 4},
        }
    )
    assert mapping.maximum_concurrency == 4


def test_both_spellings_of_one_option_are_an_error() -> None:
    message = _error(
        DYNAMODB, "    maximum_record_age_in_seconds: 120\n    maximum_record_age_seconds: 120\n"
    )
    assert message == (
        "b.yaml:7: mappings[0].maximum_record_age_in_seconds: give either "
        "maximum_record_age_in_seconds (AWS's name) or maximum_record_age_seconds, not both"
    )
    assert "not both" in _error(
        SQS, "    scaling_config: {maximum_concurrency: 5}\n    maximum_concurrency: 5\n"
    )


def test_errors_name_the_option_as_it_was_written() -> None:
    message = _error(DYNAMODB, "    maximum_record_age_in_seconds: 30\n")
    assert message.startswith("b.yaml:7: mappings[0].maximum_record_age_in_seconds: must be -1")
    message = _error(SQS, "    scaling_config: {maximum_concurrency: 1}\n")
    assert "b.yaml:7: mappings[0].scaling_config.maximum_concurrency: must be between 2" in message


def test_destination_config_has_on_failure_only() -> None:
    message = _error(DYNAMODB, "    destination_config: {on_success: {destination: 'sqs://q'}}\n")
    assert "destination_config.on_success: not supported (the bridge has on_failure)" in message


def test_an_sqs_arn_destination_is_the_queue_of_that_name() -> None:
    mapping = _parse(
        DYNAMODB,
        "    destination_config:\n"
        "      on_failure: {destination: 'arn:aws:sqs:us-east-1:123456789012:failed'}\n",
    )
    assert mapping.on_failure is not None and mapping.on_failure.destination == "sqs://failed"
    assert "no S3 on-failure destination" in _error(DYNAMODB, "    on_failure: 'arn:aws:s3:::b'\n")
    assert "only an SQS queue's" in _error(
        DYNAMODB, "    on_failure: 'arn:aws:sns:us-east-1:123456789012:t'\n"
    )


@pytest.mark.parametrize(
    ("source", "options", "expected"),
    [
        # CreateEventSourceMapping: BatchSize "For FIFO queues the max is 10"
        (FIFO, "    batch_size: 11\n", "batch_size: must be between 1 and 10 for a FIFO queue"),
        # "Batching window is not supported for FIFO queues"
        (FIFO, "    maximum_batching_window_seconds: 1\n", "not supported for a FIFO queue"),
        # MaximumRetryAttempts: -1 to 10000
        (KAFKA, "    maximum_retry_attempts: 10001\n", "less than or equal to 10000"),
        (DYNAMODB, "    maximum_retry_attempts: -2\n", "greater than or equal to -1"),
        # MaximumRecordAgeInSeconds: -1, or 60 to 604800
        (KAFKA, "    maximum_record_age_in_seconds: 59\n", "must be -1 or between 60"),
        (DYNAMODB, "    maximum_record_age_seconds: 604801\n", "less than or equal to 604800"),
        # BatchSize 1 to 10000 (Kafka, DynamoDB, SQS standard)
        (KAFKA, "    batch_size: 10001\n", "less than or equal to 10000"),
        # asynchronous invocation: MaximumRetryAttempts 0 to 2, event age at most 6 hours
        (LOCAL, "    maximum_retry_attempts: 3\n", "must be between 0 and 2"),
        (LOCAL, "    maximum_retry_attempts: -1\n", "must be between 0 and 2"),
        (LOCAL, "    maximum_record_age_seconds: 21601\n", "between 1 and 21600"),
        # EventBridge targets: RetryPolicy up to 185 retries, 24 hours
        (SCHEDULE, "    maximum_retry_attempts: 186\n", "must be between 0 and 185"),
        (SCHEDULE, "    maximum_record_age_seconds: 86401\n", "between 1 and 86400"),
    ],
)
def test_ranges_aws_validates(source: str, options: str, expected: str) -> None:
    assert expected in _error(source, options)


def test_values_within_the_ranges_pass() -> None:
    assert _parse(FIFO, "    batch_size: 10\n").batch_size == 10
    assert _parse(SQS, "    batch_size: 10000\n    maximum_batching_window_seconds: 1\n")
    assert _parse(SCHEDULE, "    maximum_retry_attempts: 185\n").maximum_retry_attempts == 185
    assert _parse(LOCAL, "    maximum_retry_attempts: 0\n").maximum_retry_attempts == 0
