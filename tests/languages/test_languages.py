"""Any Runtime API client works under the runtime target: the same handler in Python
(awslambdaric), Go (aws-lambda-go), Node.js (aws-lambda-ric, and a minimal client written
from AWS's protocol) and Java (aws-lambda-java-runtime-interface-client), each started by
the bridge and driven by a mapping (a ``local_dir`` folder) and by an HTTP API.

Each handler records its calls in ``$CALLS_OUT`` and answers with its language, the
event's key and Lambda's context; a key containing ``fail`` raises the language's own
error, which must reach the bridge as Lambda's error document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.harness import RunningBridge, wait_for
from tests.front.conftest import api_address
from tests.languages.conftest import GetBuilt

FUNCTION_ARN = "arn:aws:lambda:us-east-1:000000000000:function:fn"
TIMEOUT = 10  # the function's timeout, seconds
MEMORY = 256

#: language -> the errorType its runtime reports for the handler's LanguageError
ERROR_TYPES = {
    "python": "LanguageError",
    "go": "languageError",  # aws-lambda-go: the Go type's name
    "node": "LanguageError",
    "node-minimal": "LanguageError",
    "java": "example.Handler$LanguageError",  # the class's binary name
}

LANGUAGES = [
    pytest.param("python", id="python"),
    pytest.param("go", marks=pytest.mark.go, id="go"),
    pytest.param("node", marks=pytest.mark.node, id="node"),
    pytest.param("node-minimal", marks=pytest.mark.node, id="node-minimal"),
    pytest.param("java", marks=pytest.mark.java, id="java"),
]


def _function(built_function: GetBuilt, language: str, calls: Path) -> dict[str, Any]:
    env = {"CALLS_OUT": str(calls)}
    if language == "node-minimal":
        env["NODE_RUNTIME_CLIENT"] = "minimal-runtime.js"
    return built_function(language).function(
        concurrency=2, timeout=TIMEOUT, memory_size=MEMORY, env=env
    )


def _config(tmp_path: Path, function: dict[str, Any], **sections: Any) -> str:
    return yaml.safe_dump(
        {
            "state_dir": str(tmp_path / "state"),
            "retry_backoff": {"initial_seconds": 0.01, "max_seconds": 0.05},
            "shutdown_timeout_seconds": 5,
            "functions": {"fn": function},
            **sections,
        }
    )


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _check_context(info: dict[str, Any], language: str, key: str) -> None:
    """What the handler saw: its language, the event, and Lambda's context."""
    assert info["language"] == language.removesuffix("-minimal")
    assert info["key"] == key
    assert info["functionName"] == "fn"
    assert info["memoryLimitInMB"] == MEMORY
    assert info["invokedFunctionArn"] == FUNCTION_ARN
    assert info["awsRequestId"]
    assert 0 < info["remainingMs"] <= TIMEOUT * 1000  # from Lambda-Runtime-Deadline-Ms
    if language.startswith("node"):
        client = "minimal-runtime.js" if language == "node-minimal" else "aws-lambda-ric"
        assert info["client"] == client


@pytest.mark.parametrize("language", LANGUAGES)
async def test_a_mapping_delivers_to_the_function_and_dead_letters_its_errors(
    tmp_path: Path, built_function: GetBuilt, language: str
) -> None:
    inbox, calls, failures = tmp_path / "inbox", tmp_path / "calls.jsonl", tmp_path / "dlq.jsonl"
    inbox.mkdir()
    (inbox / "hello.txt").write_text("hello")
    (inbox / "fail-me.txt").write_text("poison")
    mapping = {
        "name": "inbox",
        "function": "fn",
        "source": {"type": "local_dir", "path": str(inbox)},
        "maximum_retry_attempts": 1,
        "on_failure": f"file://{failures}",
    }
    function = _function(built_function, language, calls)
    async with RunningBridge(_config(tmp_path, function, mappings=[mapping])):
        await wait_for(lambda: bool(_lines(failures)))
        await wait_for(lambda: any(c["key"] == "hello.txt" for c in _lines(calls)))

    by_key: dict[str, list[dict[str, Any]]] = {}
    for call in _lines(calls):
        by_key.setdefault(call["key"], []).append(call)
    [hello] = by_key["hello.txt"]
    _check_context(hello, language, "hello.txt")
    assert len(by_key["fail-me.txt"]) == 2  # the attempt and its one retry
    [letter] = _lines(failures)
    assert letter["requestContext"]["condition"] == "RetriesExhausted"
    assert letter["requestContext"]["approximateInvokeCount"] == 2
    assert letter["responseContext"]["functionError"] == "Unhandled"
    assert letter["requestPayload"]["Records"][0]["s3"]["object"]["key"] == "fail-me.txt"
    error = letter["responsePayload"]  # the runtime's own error document, as it posted it
    assert error["errorType"] == ERROR_TYPES[language]
    assert error["errorMessage"] == f"{language.removesuffix('-minimal')} failed on fail-me.txt"


@pytest.mark.parametrize("language", LANGUAGES)
async def test_an_http_api_answers_with_the_function_or_500_for_its_error(
    tmp_path: Path, built_function: GetBuilt, language: str
) -> None:
    calls = tmp_path / "calls.jsonl"
    api = {"name": "web", "type": "http", "routes": {"GET /{key}": "fn"}}
    function = _function(built_function, language, calls)
    async with RunningBridge(_config(tmp_path, function, apis=[api])) as bridge:
        base = f"http://{await api_address(bridge.supervisor, 'web')}"
        async with httpx.AsyncClient(timeout=30) as client:
            answered = await client.get(f"{base}/hello")
            failed = await client.get(f"{base}/fail")
    assert answered.status_code == 200
    assert answered.headers["content-type"] == "application/json"
    _check_context(answered.json(), language, "/hello")
    # an HTTP API answers a function error with 500 (a REST API would say 502)
    assert failed.status_code == 500
    assert failed.json() == {"message": "Internal Server Error"}
    assert [c["key"] for c in _lines(calls)] == ["/hello", "/fail"]  # requests are not retried


#: language -> (the handler that does not exist, the errorType of the init error it causes)
INIT_ERRORS = [
    pytest.param("python", "missing.handler", "Runtime.ImportModuleError", id="python"),
    pytest.param(
        "node", "missing.handler", "Runtime.ImportModuleError", marks=pytest.mark.node, id="node"
    ),
    pytest.param(
        "node-minimal",
        "missing.handler",
        "Runtime.ImportModuleError",
        marks=pytest.mark.node,
        id="node-minimal",
    ),
    pytest.param(
        "java",
        "example.Missing::handleRequest",
        "java.lang.ClassNotFoundException",
        marks=pytest.mark.java,
        id="java",
    ),
]


@pytest.mark.parametrize(("language", "handler", "error_type"), INIT_ERRORS)
async def test_a_handler_that_cannot_load_is_the_runtimes_init_error(
    tmp_path: Path, built_function: GetBuilt, language: str, handler: str, error_type: str
) -> None:
    """The runtime reports it on ``/runtime/init/error``; the invocation that met the failed
    start gets that error document, and the mapping dead-letters it like a function error."""
    inbox, failures = tmp_path / "inbox", tmp_path / "dlq.jsonl"
    inbox.mkdir()
    (inbox / "any.txt").write_text("x")
    function = _function(built_function, language, tmp_path / "calls.jsonl")
    function["command"] = [*function["command"][:-1], handler]
    mapping = {
        "name": "inbox",
        "function": "fn",
        "source": {"type": "local_dir", "path": str(inbox)},
        "maximum_retry_attempts": 0,
        "on_failure": f"file://{failures}",
    }
    async with RunningBridge(_config(tmp_path, function, mappings=[mapping])):
        await wait_for(lambda: bool(_lines(failures)))
    [letter] = _lines(failures)
    assert letter["responseContext"]["functionError"] == "Unhandled"
    assert letter["responsePayload"]["errorType"] == error_type
    assert letter["responsePayload"]["errorMessage"]
