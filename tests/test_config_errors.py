"""Config errors that help: a close match for a misspelt key or name, every independent
problem of a file in one report, and the deep checks of what a valid file names."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from bridge.config import BridgeConfig, load_config, parse_config
from bridge.config_checks import deep_check
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

KAFKA = """\
  - name: topic
    function: hello
    source:
      type: kafka
      bootstrap_servers: [127.0.0.1:9092]
      topics: [t]
"""

API = """\
apis:
  - name: web
    type: http
    routes: {"GET /items": hello}
"""


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), "bridge.yaml", {})
    return str(info.value)


DID_YOU_MEAN = [
    pytest.param(
        "stat_dir: x\n" + GOOD,
        "bridge.yaml:1: stat_dir: unknown key 'stat_dir' (expected one of: state_dir,",
        "did you mean 'state_dir'?",
        id="top-level-key",
    ),
    pytest.param(
        GOOD.replace("    command:", "    comand: x\n    command:"),
        "bridge.yaml:4: functions.hello.comand: unknown key 'comand'",
        "did you mean 'command'?",
        id="function-key",
    ),
    pytest.param(
        GOOD.replace("    function: hello\n", "    function: hello\n    batchsize: 5\n"),
        "bridge.yaml:8: mappings[0].batchsize: unknown key 'batchsize'",
        "did you mean 'batch_size'?",
        id="mapping-key",
    ),
    pytest.param(
        GOOD.replace("    function: hello\n", "    function: hello\n    BatchSize: 5\n"),
        "mappings[0].BatchSize: unknown key 'BatchSize'",
        "did you mean 'batch_size'?",
        id="mapping-key-in-aws-case",
    ),
    pytest.param(
        GOOD + "      sufix: .jpg\n",
        "bridge.yaml:11: mappings[0].source.sufix: unknown key 'sufix'",
        "did you mean 'suffix'?",
        id="local-dir-source-key",
    ),
    pytest.param(
        GOOD + KAFKA + "      consumer_group: g\n",
        "bridge.yaml:17: mappings[1].source.consumer_group: unknown key 'consumer_group'",
        "did you mean 'consumer_group_id'?",
        id="kafka-source-key",
    ),
    pytest.param(
        GOOD + KAFKA + "      sasl: {mechanism: PLAIN, username: u, password: p, pasword: p}\n",
        "mappings[1].source.sasl.pasword: unknown key 'pasword' (expected one of: mechanism,",
        "did you mean 'password'?",
        id="nested-source-key",
    ),
    pytest.param(
        GOOD
        + "  - name: q\n    function: hello\n    source: {type: sqs, queue_name: q, pollrs: 2}\n",
        "mappings[1].source.pollrs: unknown key 'pollrs'",
        "did you mean 'pollers'?",
        id="sqs-source-key",
    ),
    pytest.param(
        GOOD + "    filter_criteria:\n      filter:\n        - pattern: '{\"a\": [1]}'\n",
        "bridge.yaml:12: mappings[0].filter_criteria.filter: unknown key 'filter'",
        "did you mean 'filters'?",
        id="filter-criteria-key",
    ),
    pytest.param(
        GOOD + "    filter_criteria:\n      filters:\n        - patern: '{\"a\": [1]}'\n",
        "bridge.yaml:13: mappings[0].filter_criteria.filters[0].patern: unknown key 'patern'",
        "did you mean 'pattern'?",
        id="filter-key",
    ),
    pytest.param(
        GOOD + API + "    prot: 8080\n",
        "bridge.yaml:15: apis[0].prot: unknown key 'prot'",
        "did you mean 'port'?",
        id="api-key",
    ),
    pytest.param(
        GOOD + API + '    cors: {allow_origin: ["*"]}\n',
        "apis[0].cors.allow_origin: unknown key 'allow_origin'",
        "did you mean 'allow_origins'?",
        id="api-cors-key",
    ),
    pytest.param(
        GOOD + "event_buses:\n  - {name: default, prot: 8080}\n",
        "bridge.yaml:12: event_buses[0].prot: unknown key 'prot'",
        "did you mean 'port'?",
        id="event-bus-key",
    ),
    pytest.param(
        GOOD.replace("function: hello", "function: helo"),
        "bridge.yaml:7: mappings[0].function: unknown function 'helo' (functions: hello)",
        "did you mean 'hello'?",
        id="mapping-function",
    ),
    pytest.param(
        GOOD + API.replace('GET /items": hello', 'GET /items": hallo'),
        "bridge.yaml:14: apis[0].routes.GET /items: unknown function 'hallo'",
        "did you mean 'hello'?",
        id="route-function",
    ),
    pytest.param(
        GOOD.replace("type: local_dir", "type: local-dir"),
        "bridge.yaml:9: mappings[0].source.type: unknown source type 'local-dir' (known:",
        "did you mean 'local_dir'?",
        id="source-type",
    ),
    pytest.param(
        GOOD.replace("type: runtime", "type: runtim"),
        "bridge.yaml:3: functions.hello.type: Input tag 'runtim' found using 'type'",
        "did you mean 'runtime'?",
        id="function-type",
    ),
    pytest.param(
        GOOD + API.replace("type: http", "type: htp"),
        "bridge.yaml:13: apis[0].type: Input tag 'htp'",
        "did you mean 'http'?",
        id="api-type",
    ),
    pytest.param(
        GOOD + KAFKA + "      starting_position: LATST\n",
        "mappings[1].source.starting_position: Input should be 'TRIM_HORIZON', 'LATEST' or"
        " 'AT_TIMESTAMP' (got \"LATST\")",
        "did you mean 'LATEST'?",
        id="option-value",
    ),
    pytest.param(
        GOOD + "    on_failure: fiel://failed.jsonl\n",
        "mappings[0].on_failure: unsupported on_failure destination 'fiel://failed.jsonl'",
        "did you mean 'file://'?",
        id="destination-scheme",
    ),
    pytest.param(
        GOOD
        + "  - name: rule\n    function: hello\n    batch_size: 1\n"
        + "    source: {type: eventbridge, event_bus_name: orderz, event_pattern: {source: [a]}}\n"
        + "event_buses:\n  - {name: orders}\n",
        "bridge.yaml:14: mappings[1].source.event_bus_name: unknown event bus 'orderz'"
        " (event_buses: orders)",
        "did you mean 'orders'?",
        id="event-bus-name",
    ),
    pytest.param(
        GOOD + "apis:\n  - {name: ws, type: websocket, routes: {$conect: hello}}\n",
        "apis[0]: route '$conect': the predefined routes are $connect, $disconnect, $default",
        "did you mean '$connect'?",
        id="websocket-route",
    ),
    pytest.param(
        GOOD
        + "  - name: tick\n    function: hello\n"
        + "    source: {type: schedule, expression: rate(1 minute), timezone: Europe/Berln}\n",
        "mappings[1].source.timezone: unknown time zone 'Europe/Berln'",
        "did you mean 'Europe/Berlin'?",
        id="time-zone",
    ),
]


@pytest.mark.parametrize(("text", "where", "hint"), DID_YOU_MEAN)
def test_a_misspelt_key_or_name_gets_the_close_match(text: str, where: str, hint: str) -> None:
    message = _error(text)
    [line] = [line for line in message.splitlines() if where in line] or [message]
    assert where in line, message
    assert line.endswith(hint), line


def test_nothing_close_suggests_nothing() -> None:
    message = _error(GOOD.replace("function: hello", "function: zzz"))
    assert "unknown function 'zzz' (functions: hello)" in message
    assert "did you mean" not in message


THREE_INDEPENDENT = """\
functions:
  hello:
    type: runtime
    command: python -m awslambdaric app.handler
    timeout: 0
mappings:
  - name: inbox
    function: helo
    source: {type: local_dir, path: ./inbox}
  - name: topic
    function: hello
    source:
      type: kafka
      bootstrap_servers: [127.0.0.1:9092]
      topic: [t]
"""


def test_independent_errors_are_reported_together_in_line_order() -> None:
    lines = _error(THREE_INDEPENDENT).splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith("bridge.yaml:5: functions.hello.timeout: Input should be greater")
    assert lines[1].startswith("bridge.yaml:8: mappings[0].function: unknown function 'helo'")
    assert lines[2].startswith("bridge.yaml:15: mappings[1].source.topic: unknown key 'topic'")


def test_every_reference_problem_is_reported_not_just_the_first() -> None:
    text = (
        GOOD.replace("function: hello", "function: nope")
        + "  - name: inbox\n    function: other\n    source: {type: local_dir, path: x}\n"
        + "apis:\n  - {name: a, type: http, port: 8080, routes: {'GET /': gone}}\n"
        + "  - {name: a, type: http, port: '8080', routes: {'GET /': hello}}\n"
    )
    lines = _error(text).splitlines()
    assert [line.split(": ")[1] for line in lines] == [
        "mappings[0].function",
        "mappings[1].name",
        "mappings[1].function",
        "apis[0].routes.GET /",
        "apis[1].name",
        "apis[1].port",
    ], lines


def test_a_required_key_is_not_reported_missing_next_to_its_misspelling() -> None:
    [line] = _error(GOOD.replace("path:", "pth:")).splitlines()
    assert line.endswith(
        "mappings[0].source.pth: unknown key 'pth' (expected one of: type,"
        " path, bucket, prefix, suffix, events, include_hidden, create, force_polling,"
        " rescan_interval_seconds); did you mean 'path'?"
    )


def test_the_options_of_an_unknown_source_type_are_not_reported() -> None:
    text = GOOD.replace("type: local_dir", "type: ftp\n      whatever: 1")
    [line] = _error(text).splitlines()
    assert "unknown source type 'ftp'" in line


def test_a_source_problem_is_reported_with_a_mapping_problem() -> None:
    """The source is checked even when the mapping's own options are wrong."""
    text = GOOD.replace("      path: ./inbox\n", "      bogus: 1\n") + "    batch_size: 0\n"
    lines = _error(text).splitlines()
    assert [line.split(": ")[1] for line in lines] == [
        "mappings[0].source.path",
        "mappings[0].source.bogus",
        "mappings[0].batch_size",
    ], lines


def test_a_connector_rule_is_not_repeated_for_a_key_already_wrong() -> None:
    text = (
        GOOD
        + "  - name: tick\n    function: hello\n    batch_size: lots\n"
        + "    source: {type: schedule, expression: rate(1 minute)}\n"
    )
    [line] = _error(text).splitlines()
    assert "mappings[1].batch_size: Input should be a valid integer" in line


def test_a_bridge_config_built_directly_still_checks_references() -> None:
    with pytest.raises(ValidationError, match=r"mappings\[0\].function: unknown function"):
        BridgeConfig.model_validate(
            {
                "functions": {"f": {"type": "http", "url": "http://127.0.0.1:1"}},
                "mappings": [{"name": "m", "function": "g", "source": {"type": "local_dir"}}],
            }
        )


# ---------------------------------------------------------------- deep checks


def _project(tmp_path: Path, handler: str = "def handler(event, context):\n    return 1\n") -> Path:
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "app.py").write_text(handler)
    (tmp_path / "inbox").mkdir()
    config = tmp_path / "bridge.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        + GOOD.replace("    command:", f"    cwd: {tmp_path / 'fn'}\n    command:").replace(
            "./inbox", str(tmp_path / "inbox")
        )
    )
    return config


def _deep(path: Path) -> list[str]:
    return [str(f) for f in deep_check(load_config(path), path) if f.problem]


def test_deep_check_passes_a_good_config(tmp_path: Path) -> None:
    config = _project(tmp_path)
    findings = deep_check(load_config(config), config)
    assert [str(f) for f in findings] == [
        f"{config}:1: state_dir: {tmp_path / 'state'} does not exist yet; the bridge creates it"
    ]
    assert not findings[0].problem


def test_deep_check_finds_a_handler_module_without_the_function(tmp_path: Path) -> None:
    config = _project(tmp_path, "def handle(event, context):\n    return 1\n")
    assert _deep(config) == [
        f"{config}:6: functions.hello.command: {tmp_path / 'fn' / 'app.py'} defines no "
        "top-level 'handler'; did you mean 'handle'?"
    ]


def test_deep_check_accepts_a_handler_bound_by_import_or_assignment(tmp_path: Path) -> None:
    config = _project(tmp_path, "import json\nif True:\n    handler = json.dumps\n")
    assert _deep(config) == []


def test_deep_check_finds_a_missing_handler_module(tmp_path: Path) -> None:
    config = _project(tmp_path)
    (tmp_path / "fn" / "app.py").unlink()
    [problem] = _deep(config)
    assert "functions.hello.command: handler module 'app' not found (app.py or app/" in problem


def test_deep_check_finds_a_missing_cwd(tmp_path: Path) -> None:
    config = _project(tmp_path)
    (tmp_path / "fn" / "app.py").unlink()
    (tmp_path / "fn").rmdir()
    assert _deep(config) == [
        f"{config}:5: functions.hello.cwd: folder {tmp_path / 'fn'} does not exist"
    ]


def test_deep_check_finds_an_executable_not_on_path(tmp_path: Path) -> None:
    config = _project(tmp_path)
    config.write_text(config.read_text().replace("python -m", "no-such-python-xyz -m"))
    [problem] = _deep(config)
    assert problem.endswith("functions.hello.command: 'no-such-python-xyz' is not found on PATH")


def test_deep_check_finds_folders_that_cannot_be(tmp_path: Path) -> None:
    config = _project(tmp_path)
    (tmp_path / "blocker").write_text("a file, not a folder")
    text = config.read_text().replace(str(tmp_path / "inbox"), str(tmp_path / "blocker" / "in"))
    config.write_text(text + f"    on_failure: file://{tmp_path / 'blocker' / 'f.jsonl'}\n")
    problems = _deep(config)
    assert len(problems) == 2, problems
    assert "mappings[0].source.path: folder" in problems[0]
    assert "mappings[0].on_failure:" in problems[1]
    assert all(f"{tmp_path / 'blocker'} is not a folder" in p for p in problems)


def test_deep_check_notes_a_local_dir_it_will_create(tmp_path: Path) -> None:
    config = _project(tmp_path)
    (tmp_path / "inbox").rmdir()
    notes = [str(f) for f in deep_check(load_config(config), config) if not f.problem]
    assert any("mappings[0].source.path: folder" in n and "creates it" in n for n in notes)
    config.write_text(config.read_text() + "      create: false\n")
    [problem] = _deep(config)
    assert "does not exist (and create is false)" in problem


def test_deep_check_finds_missing_tls_files(tmp_path: Path) -> None:
    config = _project(tmp_path)
    tls = f"      tls: {{ca_file: {tmp_path / 'ca.pem'}}}\n"
    config.write_text(config.read_text() + KAFKA + tls)
    assert _deep(config) == [
        f"{config}:19: mappings[1].source.tls.ca_file: file {tmp_path / 'ca.pem'} does not exist"
    ]


def test_deep_check_finds_a_handler_installed_for_the_bridges_interpreter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``python`` is the bridge's own interpreter: a handler module may be installed
    there rather than in cwd (it is located without running any of its code)."""
    config = _project(tmp_path)
    monkeypatch.chdir(tmp_path)
    config.write_text(config.read_text().replace("app.handler", "json.dumps"))
    assert _deep(config) == []
    config.write_text(config.read_text().replace("json.dumps", "json.dump_s"))
    [problem] = _deep(config)
    assert problem.endswith("json/__init__.py defines no top-level 'dump_s'; did you mean 'dumps'?")


def test_duplicate_names_and_taken_ports_of_apis_and_buses_are_each_reported() -> None:
    text = (
        "functions: {f: {type: http, url: 'http://x'}}\n"
        "apis:\n"
        "  - {name: a, type: http, port: 8001, routes: {'GET /': f}}\n"
        "  - {name: a, type: http, port: 8001, routes: {'GET /': f}}\n"
        "event_buses:\n"
        "  - {name: bus, port: 8001}\n"
        "  - {name: bus, port: 8002}\n"
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "b.yaml")
    message = str(caught.value)
    assert "b.yaml:4: apis[1].name: duplicate API name 'a'" in message
    assert "b.yaml:4: apis[1].port: 127.0.0.1:8001 is taken" in message
    assert "b.yaml:6: event_buses[0].port: 127.0.0.1:8001 is taken" in message
    assert "b.yaml:7: event_buses[1].name: duplicate bus name 'bus'" in message
