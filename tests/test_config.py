"""Configuration: AWS option names and defaults, interpolation, and errors that say
where and what."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bridge.config import load_config, parse_config
from bridge.errors import ConfigError

GOOD = """\
functions:
  hello:
    type: runtime
    command: python -m awslambdaric app.handler
mappings:
  - name: inbox
    function: hello
    source:
      type: local_dir
      path: ./inbox
"""


def _error(text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), "bridge.yaml", env or {})
    return str(info.value)


def test_good_config_takes_the_source_defaults() -> None:
    config = parse_config(GOOD, "bridge.yaml", {})
    [mapping] = config.mappings
    assert mapping.batch_size is None  # resolved from the connector's AWS defaults
    assert mapping.enabled is True
    assert config.functions["hello"].command == ["python", "-m", "awslambdaric", "app.handler"]
    source = config.source_config(mapping)
    assert source.path == "./inbox"  # type: ignore[attr-defined]


def test_environment_interpolation_with_defaults() -> None:
    text = GOOD.replace("./inbox", "${INBOX:-/tmp/default}").replace("python -m", "${PY} -m")
    config = parse_config(text, "bridge.yaml", {"PY": "python3"})
    assert config.mappings[0].source["path"] == "/tmp/default"
    assert config.functions["hello"].command[0] == "python3"  # type: ignore[index,union-attr]
    config = parse_config(text, "bridge.yaml", {"PY": "py", "INBOX": "/data"})
    assert config.mappings[0].source["path"] == "/data"


def test_escaped_dollar_is_literal() -> None:
    config = parse_config(GOOD.replace("./inbox", "$${NOT_A_VAR}"), "bridge.yaml", {})
    assert config.mappings[0].source["path"] == "${NOT_A_VAR}"


def test_numbers_and_booleans_from_the_environment_are_typed() -> None:
    text = GOOD + "    batch_size: ${BATCH}\n    enabled: ${ON:-false}\n"
    config = parse_config(text, "bridge.yaml", {"BATCH": "25"})
    assert config.mappings[0].batch_size == 25
    assert config.mappings[0].enabled is False


def test_load_config_reads_the_file_and_names_it(tmp_path: Path) -> None:
    path = tmp_path / "b.yaml"
    path.write_text(GOOD.replace("type: local_dir", "type: local_dir\n      bogus: 1"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f"{path}:10: mappings[0].source.bogus: unknown key 'bogus'" in str(info.value)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")


BAD = [
    pytest.param(
        GOOD.replace("    function: hello\n", "    function: hello\n    batchsize: 5\n"),
        "bridge.yaml:8: mappings[0].batchsize: unknown key 'batchsize' (expected one of: name,"
        " function, source, enabled, batch_size,",
        id="unknown-mapping-key",
    ),
    pytest.param(
        GOOD + "    batch_size: 0\n",
        "bridge.yaml:11: mappings[0].batch_size: Input should be greater than or equal to 1"
        " (got 0)",
        id="batch-size-too-small",
    ),
    pytest.param(
        GOOD + "    batch_size: lots\n",
        "bridge.yaml:11: mappings[0].batch_size: Input should be a valid integer",
        id="batch-size-not-a-number",
    ),
    pytest.param(
        GOOD.replace("function: hello", "function: nope"),
        "bridge.yaml:7: mappings[0].function: unknown function 'nope' (functions: hello)",
        id="unknown-function",
    ),
    pytest.param(
        GOOD.replace("type: local_dir", "type: ftp"),
        "bridge.yaml:9: mappings[0].source.type: unknown source type 'ftp' (known:",
        id="unknown-source-type",
    ),
    pytest.param(
        GOOD.replace("      path: ./inbox\n", ""),
        "bridge.yaml:8: mappings[0].source.path: required key is missing",
        id="missing-source-option",
    ),
    pytest.param(
        GOOD.replace("    type: runtime", "    type: lambda_function"),
        "bridge.yaml:3: functions.hello.type: Input tag 'lambda_function' found using 'type' does"
        " not match any of the expected tags: 'lambda', 'runtime', 'http'",
        id="unknown-function-type",
    ),
    pytest.param(
        GOOD.replace("    command:", "    timeout: 901\n    command:"),
        "bridge.yaml:4: functions.hello.timeout: Input should be less than or equal to 900",
        id="runtime-timeout-over-lambda-max",
    ),
    pytest.param(
        GOOD.replace("    command:", "    cmd: x\n    command:"),
        "bridge.yaml:4: functions.hello.cmd: unknown key 'cmd' (expected one of: type, command,",
        id="unknown-function-key",
    ),
    pytest.param(
        GOOD + "    filter_criteria:\n      filters:\n        - pattern: '{\"a\": 1}'\n",
        "bridge.yaml:11: mappings[0].filter_criteria: filters[0].pattern: pattern 0:",
        id="filter-leaf-not-a-list",
    ),
    pytest.param(
        GOOD
        + '    filter_criteria:\n      filters:\n        - pattern: \'{"a": [{"wild": 1}]}\'\n',
        "unknown",
        id="filter-unknown-operator",
    ),
    pytest.param(
        GOOD + "    on_failure: ftp://host/failures\n",
        "bridge.yaml:11: mappings[0].on_failure: unsupported on_failure destination"
        " 'ftp://host/failures' (expected file://..., kafka://..., sqs://...)",
        id="unsupported-destination",
    ),
    pytest.param(
        GOOD + "    function_response_types: [ReportItemFailures]\n",
        "mappings[0].function_response_types[0]: Input should be 'ReportBatchItemFailures'",
        id="bad-function-response-type",
    ),
    pytest.param(
        GOOD + "    maximum_record_age_seconds: 0\n",
        "mappings[0].maximum_record_age_seconds: must be -1 (no limit) or a number of seconds",
        id="record-age-zero",
    ),
    pytest.param(
        GOOD + "  - name: inbox\n    function: hello\n    source: {type: local_dir, path: x}\n",
        "bridge.yaml:11: mappings[1].name: duplicate mapping name 'inbox'",
        id="duplicate-mapping-name",
    ),
    pytest.param(
        GOOD.replace("./inbox", "${INBOX}"),
        "bridge.yaml:10: environment variable INBOX is not set (use ${INBOX:-default}",
        id="unset-variable",
    ),
    pytest.param(
        GOOD.replace("  - name: inbox\n", "  - name: inbox\n    name: other\n"),
        "bridge.yaml:7: duplicate key 'name'",
        id="duplicate-yaml-key",
    ),
    pytest.param(
        "functions: [\n",
        "bridge.yaml:2: invalid YAML:",
        id="broken-yaml",
    ),
    pytest.param(
        GOOD + "    batch_size: !Ref BatchSize\n",
        "bridge.yaml:11: invalid YAML: could not determine a constructor for the tag '!Ref'",
        id="unknown-yaml-tag",
    ),
    pytest.param(
        "- just\n- a list\n",
        "bridge.yaml: expected a mapping with 'functions:' and 'mappings:'",
        id="not-a-mapping",
    ),
    pytest.param(
        GOOD.replace("    command: python -m awslambdaric app.handler\n", "").replace(
            "type: runtime", "type: http\n    url: ftp://x"
        ),
        "bridge.yaml:4: functions.hello.url: must start with http:// or https://",
        id="http-url-scheme",
    ),
    pytest.param(
        GOOD.replace(
            "      path: ./inbox", "      path: ./inbox\n      events: [s3:ObjectCreated:Copy]"
        ),
        "mappings[0].source.events: unknown event type 's3:ObjectCreated:Copy'",
        id="local-dir-unknown-event",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_bad_config_is_reported_with_place_and_reason(text: str, expected: str) -> None:
    message = _error(text)
    assert expected in message, message


def test_several_problems_are_reported_together() -> None:
    text = GOOD + "    batch_size: 0\n    bogus: true\n"
    message = _error(text)
    assert "batch_size" in message and "bogus" in message
    assert len(message.splitlines()) == 2


def test_a_secret_is_never_echoed_in_an_error() -> None:
    kafka = """\
functions:
  f: {type: http, url: "http://127.0.0.1:1"}
mappings:
  - name: k
    function: f
    source:
      type: kafka
      bootstrap_servers: [127.0.0.1:9092]
      topics: [t]
      sasl: {mechanism: PLAIN, username: u, password: 8675309123}
"""
    message = _error(kafka)
    assert "sasl.password" in message and "8675309123" not in message
    aws = (
        GOOD.replace("      path: ./inbox\n", "      path: ./inbox\n")
        + "  - name: q\n    function: hello\n    source:\n      type: sqs\n"
        + (
            "      queue_name: q\n      aws_secret_access_key: [not, a, string]\n"
            "      aws_session_token: 12345678901\n"
        )
    )
    message = _error(aws)
    assert "aws_session_token" in message and "12345678901" not in message


def test_a_port_for_a_function_the_bridge_runs_is_an_error() -> None:
    """With command there is no shared address for a port to apply to."""
    message = _error(GOOD.replace("app.handler\n", "app.handler\n    port: 9001\n", 1))
    assert "functions.hello" in message and "no shared address" in message
