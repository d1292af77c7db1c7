"""The compose stack (docker-compose.yml) and its bridge config (config/compose.yaml).

No Docker engine is needed: the compose file is checked by an engine-less compose tool
(Debian's ``docker-compose`` 1.29, whose ``config`` validates the file against the compose
schema and resolves it without a daemon), its wiring against config/compose.yaml is checked
by parsing both, and config/compose.yaml itself runs natively against the real test
servers with the stack's example function under the real Runtime Interface Emulator:
the same file, only environment overrides.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from aiokafka import AIOKafkaProducer

from bridge.config import BridgeConfig, LambdaFunction, parse_config
from tests.e2e.harness import RunningBridge, wait_for
from tests.services.fixtures import AwsEndpoint, DynamoTable, unique_name

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
BRIDGE_CONFIG = REPO / "config" / "compose.yaml"
EXAMPLE = REPO / "examples" / "functions" / "printer"

COMPOSE_TOOL = "docker-compose"
INSTALL_HINT = (
    "the engine-less compose validator `docker-compose` is not installed; install it with "
    "`sudo apt-get update && sudo apt-get install -y docker-compose` (Debian/Ubuntu, "
    "docker-compose 1.29: `docker-compose config` validates without a Docker engine)"
)
SERVICES = {
    "minio",
    "minio-init",
    "kafka",
    "kafka-init",
    "dynamodb",
    "dynamodb-init",
    "function",
    "bridge",
    "mc",
    "aws",
}
#: one-shot services (they exit after creating the bucket / topic / table)
ONE_SHOT = {"minio-init", "kafka-init", "dynamodb-init"}
#: command-line services that only `docker compose run` starts
TOOLS = {"mc", "aws"}


# --- reading the files ---------------------------------------------------------------------------

_COMPOSE_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def _compose_defaults(value: Any) -> Any:
    """Compose interpolation with an empty environment: every ${VAR:-d} becomes d."""
    if isinstance(value, dict):
        return {k: _compose_defaults(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_compose_defaults(v) for v in value]
    if isinstance(value, str):
        return _COMPOSE_VAR.sub(lambda m: m.group(2) or "", value).replace("$$", "$")
    return value


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = _compose_defaults(yaml.safe_load(COMPOSE_FILE.read_text()))
    return data


def _defaults_config() -> BridgeConfig:
    """config/compose.yaml as the stack's bridge sees it: no variables set."""
    return parse_config(BRIDGE_CONFIG.read_text(), str(BRIDGE_CONFIG), env={})


def _command_text(service: dict[str, Any]) -> str:
    parts: list[str] = []
    for key in ("entrypoint", "command"):
        value = service.get(key) or []
        parts.extend([value] if isinstance(value, str) else [str(v) for v in value])
    return " ".join(parts)


def _container_ports(service: dict[str, Any]) -> set[int]:
    """Ports the service's container listens on: the container side of `ports`, `expose`."""
    ports = {int(str(p).split("/")[0]) for p in service.get("expose", [])}
    for spec in service.get("ports", []):
        ports.add(int(str(spec).split("/")[0].rsplit(":", 1)[-1]))
    return ports


def _host_port(address: str) -> tuple[str, int]:
    if "://" in address:
        parts = urlsplit(address)
        assert parts.hostname and parts.port, f"{address}: no host:port"
        return parts.hostname, parts.port
    host, _, port = address.rpartition(":")
    return host, int(port)


def _dockerfile_has_healthcheck(context: Path) -> bool:
    return any(
        line.strip().startswith("HEALTHCHECK ")
        for line in (context / "Dockerfile").read_text().splitlines()
    )


# --- 1. the compose file -------------------------------------------------------------------------


def _compose_tool() -> str:
    tool = shutil.which(COMPOSE_TOOL)
    if tool is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return tool


def _validate(tool: str, compose_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool, "--project-directory", str(REPO), "-f", str(compose_file), "config"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(Path.home())},
    )


def test_the_compose_tool_validates_the_stack_without_an_engine(tmp_path: Path) -> None:
    tool = _compose_tool()
    done = _validate(tool, COMPOSE_FILE)
    assert done.returncode == 0, f"`{COMPOSE_TOOL} config` rejects docker-compose.yml:\n" + (
        done.stderr
    )
    resolved = yaml.safe_load(done.stdout)
    assert set(resolved["services"]) == SERVICES
    # the tool really checks: the same file with one wrong value is rejected
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(
        COMPOSE_FILE.read_text().replace("service_healthy", "service_is_up", 1),
    )
    rejected = _validate(tool, broken)
    assert rejected.returncode != 0
    assert "service_is_up" in rejected.stderr


def test_the_stack_waits_for_healthy_services_and_publishes_on_loopback_only() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        for spec in service.get("ports", []):
            assert str(spec).startswith("127.0.0.1:"), f"{name}: port {spec} is not loopback"
        for dependency, how in (service.get("depends_on") or {}).items():
            condition = how["condition"]
            if dependency in ONE_SHOT:
                assert condition == "service_completed_successfully", (name, dependency)
                continue
            assert condition == "service_healthy", (name, dependency)
            target = services[dependency]
            built = target.get("build")
            assert "healthcheck" in target or (
                built and _dockerfile_has_healthcheck(REPO / str(built))
            ), f"{name} waits for {dependency} to be healthy, which has no healthcheck"
        for volume in service.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if source.startswith("."):
                assert name == "bridge" and source == "./config", (name, volume)
            else:
                assert source in _compose()["volumes"], f"{name}: {source} is not a named volume"
        if name in TOOLS:
            assert service.get("profiles") == ["tools"], f"{name} would start with the stack"
    bridge = services["bridge"]
    # the servers too: `docker compose stop` stops the bridge before what it commits to
    assert set(bridge["depends_on"]) == ONE_SHOT | {"function", "minio", "kafka", "dynamodb"}
    assert "./config:/app/config:ro" in bridge["volumes"]
    assert bridge["build"] == "."
    assert services["function"]["build"] == "examples/functions/printer"
    assert (EXAMPLE / "Dockerfile").read_text().count("public.ecr.aws/lambda/python:3.11") == 1
    dockerfile = (REPO / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["trigger-bridge"]' in dockerfile
    assert "ENV TRIGGER_BRIDGE_CONFIG=config/compose.yaml" in dockerfile
    assert 'CMD ["run"]' in dockerfile  # the command and the health check follow that
    assert 'CMD ["trigger-bridge", "status", "--ready"]' in dockerfile


def test_every_default_of_config_compose_is_a_service_of_the_stack() -> None:
    """Each host:port, bucket, topic, table and credential config/compose.yaml uses when no
    variable is set exists in docker-compose.yml."""
    compose = _compose()
    services = compose["services"]
    config = _defaults_config()

    def served(address: str) -> tuple[str, int]:
        host, port = _host_port(address)
        assert host in services, f"{address}: {host} is not a service of docker-compose.yml"
        ports = _container_ports(services[host])
        assert port in ports, f"{address}: service {host} listens on {sorted(ports)}"
        return host, port

    [function] = config.functions.values()
    assert isinstance(function, LambdaFunction) and function.emulator
    assert isinstance(function.endpoint_url, str)
    assert served(function.endpoint_url) == ("function", 8080)  # the RIE's port in the image
    assert function.function_name == "function"  # the one name the emulator serves

    sources = {m.source["type"]: m.source for m in config.mappings}
    assert set(sources) == {"s3", "kafka", "dynamodb_streams"}
    assert {m.function for m in config.mappings} == {"printer"}

    s3 = sources["s3"]
    assert served(s3["endpoint_url"])[0] == "minio"
    assert s3["push"] is True and s3["reconcile"] is True
    assert f"stack/{s3['bucket']}" in _command_text(services["minio-init"])
    minio_env = services["minio"]["environment"]
    assert (s3["aws_access_key_id"], s3["aws_secret_access_key"]) == (
        minio_env["MINIO_ROOT_USER"],
        minio_env["MINIO_ROOT_PASSWORD"],
    )
    bridge_env = services["bridge"]["environment"]  # overrides pass through to the bridge
    assert (bridge_env["TB_MINIO_ACCESS_KEY"], bridge_env["TB_MINIO_SECRET_KEY"]) == (
        minio_env["MINIO_ROOT_USER"],
        minio_env["MINIO_ROOT_PASSWORD"],
    )

    kafka = sources["kafka"]
    [bootstrap] = kafka["bootstrap_servers"].split(",")
    assert served(bootstrap)[0] == "kafka"
    advertised = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    listeners = [a.split("://", 1)[1] for a in advertised.split(",")]
    assert bootstrap in listeners, f"{bootstrap} is not an advertised listener: {advertised}"
    [topic] = kafka["topics"]
    assert f"--topic {topic} " in _command_text(services["kafka-init"])

    ddb = sources["dynamodb_streams"]
    assert served(ddb["endpoint_url"])[0] == "dynamodb"
    init = _command_text(services["dynamodb-init"])
    assert f"create-table --table-name {ddb['table_name']} " in init
    assert "StreamEnabled=true" in init
    # DynamoDB Local keeps one database per key and region unless -sharedDb
    assert "-sharedDb" in services["dynamodb"]["command"]
    assert (
        services["dynamodb-init"]["environment"]["AWS_ENDPOINT_URL_DYNAMODB"]
        == (ddb["endpoint_url"])
    )


def test_every_address_name_and_credential_of_config_compose_is_a_variable() -> None:
    """What lets the same file run natively: nothing site-specific is written literally."""
    text = BRIDGE_CONFIG.read_text()
    for m in re.finditer(r"\$\{([^}]*)\}", text):
        assert ":-" in m.group(1), f"${{{m.group(1)}}} has no default"
    raw = yaml.safe_load(text)
    variable = re.compile(r"^\$\{[A-Z0-9_]+:-[^}]+\}$")
    values = [raw["state_dir"], raw["region"], raw["functions"]["printer"]["endpoint_url"]]
    keys = (
        "bucket",
        "endpoint_url",
        "aws_access_key_id",
        "aws_secret_access_key",
        "bootstrap_servers",
        "consumer_group_id",
        "table_name",
    )
    for mapping in raw["mappings"]:
        source = mapping["source"]
        values += [source[k] for k in keys if k in source]
        values += source.get("topics", [])
    assert len(values) == 14
    for value in values:
        assert variable.match(value), f"{value!r} in config/compose.yaml is not ${{VAR:-default}}"


# --- 2. config/compose.yaml runs natively --------------------------------------------------------


def _printed(out: Path) -> list[dict[str, Any]]:
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


async def test_config_compose_runs_natively_and_each_source_reaches_the_function(
    tmp_path: Path,
    minio_endpoint: AwsEndpoint,
    minio_bucket_factory: Any,
    kafka_bootstrap: str,
    kafka_topic_factory: Any,
    dynamodb_endpoint: AwsEndpoint,
    dynamodb_table_factory: Any,
    lambda_function_factory: Any,
) -> None:
    bucket = await minio_bucket_factory()
    topic = await kafka_topic_factory()
    table: DynamoTable = await dynamodb_table_factory("NEW_AND_OLD_IMAGES")
    out = tmp_path / "printed.jsonl"
    function = lambda_function_factory(EXAMPLE, env={"PRINTER_OUT": str(out)})
    env = {
        "TB_STATE_DIR": str(tmp_path / "state"),
        "TB_AWS_REGION": dynamodb_endpoint.region,
        "TB_FUNCTION_URL": function.base_url,
        "TB_MINIO_ENDPOINT": minio_endpoint.url,
        "TB_MINIO_ACCESS_KEY": minio_endpoint.access_key,
        "TB_MINIO_SECRET_KEY": minio_endpoint.secret_key,
        "TB_S3_BUCKET": bucket,
        "TB_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "TB_KAFKA_TOPIC": topic,
        "TB_KAFKA_GROUP": unique_name("compose"),
        "TB_DYNAMODB_ENDPOINT": dynamodb_endpoint.url,
        "TB_DYNAMODB_TABLE": table.name,
        "TB_AWS_ACCESS_KEY_ID": dynamodb_endpoint.access_key,
        "TB_AWS_SECRET_ACCESS_KEY": dynamodb_endpoint.secret_key,
    }
    text = BRIDGE_CONFIG.read_text()
    running = RunningBridge(text, env)  # the very same file, only environment overrides
    assert running.config.mappings[0].source["bucket"] == bucket  # the overrides took
    async with running:
        async with minio_endpoint.client("s3") as s3:
            await s3.put_object(Bucket=bucket, Key="in/hello world.txt", Body=b"hello")
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(topic, b'{"order": 7}', key=b"order-7")
        finally:
            await producer.stop()
        async with dynamodb_endpoint.client("dynamodb") as ddb:
            await ddb.put_item(
                TableName=table.name, Item={"pk": {"S": "item-1"}, "status": {"S": "new"}}
            )
        await wait_for(lambda: {p["source"] for p in _printed(out)} >= _ALL, timeout=90)

    by_source = {p["source"]: p for p in _printed(out)}
    assert {k: by_source["aws:s3"][k] for k in ("event", "bucket", "key", "size")} == {
        "event": "ObjectCreated:Put",
        "bucket": bucket,
        "key": "in/hello world.txt",
        "size": 5,
    }
    kafka = by_source["kafka"]
    assert (kafka["topic"], kafka["partition"], kafka["offset"]) == (topic, 0, 0)
    assert (kafka["key"], kafka["value"]) == ("order-7", '{"order": 7}')
    item = by_source["aws:dynamodb"]
    assert (item["event"], item["table"], item["keys"]) == (
        "INSERT",
        table.name,
        {"pk": {"S": "item-1"}},
    )
    assert item["new_image"] == {"pk": {"S": "item-1"}, "status": {"S": "new"}}
    # what `docker compose logs function` shows: the function's own stdout under the RIE
    log = function.log_tail(200)
    for printed in by_source.values():
        assert printed["request_id"] in log
    assert '"key": "in/hello world.txt"' in log


_ALL = {"aws:s3", "kafka", "aws:dynamodb"}


def test_compose_images_makes_every_image_the_stack_names() -> None:
    """Where no registry is reachable, scripts/compose-images builds exactly these, by name."""
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "compose-images"), "tags"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    named = {s["image"] for s in _compose()["services"].values() if "image" in s}
    for dockerfile in (REPO / "Dockerfile", EXAMPLE / "Dockerfile"):
        named |= set(re.findall(r"^FROM (\S+)", dockerfile.read_text(), re.M))
    assert set(done.stdout.split()) == named
