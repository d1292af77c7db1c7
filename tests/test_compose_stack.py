"""The compose stack (docker-compose.yml), started for real: the README's compose section.

A Docker engine and the stack's images are needed. ``scripts/compose-images engine`` starts
``dockerd`` (root) when none answers, and ``scripts/compose-images build`` makes every image
that cannot be pulled here from the package registries (cached; a no-op once built, and
official images already present are kept). Either failing fails the test with its reason.

The stack runs as compose project ``tbcomposetest`` (one at a time on a machine: a lock
file), with every published port moved to a free one by the compose file's port
variables, so it collides neither with a stack the user runs nor with the test services.
The compose command is ``docker compose`` when the plugin is there, else ``docker-compose``
1.29 (Debian's).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
COMPOSE_IMAGES = REPO / "scripts" / "compose-images"
PROJECT = "tbcomposetest"
CACHE = Path(os.environ.get("TB_CACHE_DIR") or Path.home() / ".cache" / "trigger-bridge")
PORT_VARIABLES = ("MINIO_PORT", "MINIO_CONSOLE_PORT", "KAFKA_PORT", "DYNAMODB_PORT")
PORT_VARIABLES += ("BRIDGE_ADMIN_PORT",)
#: the function's handler for the shutdown check: the printer, after sleeping when a Kafka
#: record's value is "sleep:<seconds>" (mounted by a compose override; the example is as is)
SLOW_PRINTER = """
import base64, json, time
import app

def handler(event, context):
    for batch in (event.get("records") or {}).values():
        for record in batch:
            value = base64.b64decode(record.get("value") or "").decode("utf-8", "replace")
            if value.startswith("sleep:"):
                print(json.dumps({"sleeping": record["offset"]}), flush=True)
                time.sleep(float(value.split(":", 1)[1]))
    return app.handler(event, context)
"""

pytestmark = pytest.mark.compose


def _run_checked(cmd: list[str], what: str, timeout: float) -> str:
    done = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"{what} failed (exit {done.returncode}):\n{done.stderr[-4000:]}", False)
    return done.stdout


def _compose_command() -> list[str]:
    docker = shutil.which("docker")
    if docker:
        probe = [docker, "compose", "version"]
        if subprocess.run(probe, capture_output=True, check=False).returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy is None:
        pytest.fail(
            "neither `docker compose` nor `docker-compose` is installed "
            "(Debian: apt-get install docker-compose)",
            False,
        )
    return [legacy]


def _free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


class Stack:
    """The compose project, driven by the compose command line as a user would."""

    def __init__(self, files: list[Path]) -> None:
        self.base = [*_compose_command(), "--project-directory", str(REPO)]
        self.base += [arg for f in files for arg in ("-f", str(f))]
        self.ports = dict(zip(PORT_VARIABLES, _free_ports(len(PORT_VARIABLES)), strict=True))
        self.env = {
            **os.environ,
            "COMPOSE_PROJECT_NAME": PROJECT,
            **{k: str(v) for k, v in self.ports.items()},
        }

    def run(
        self, *args: str, stdin: str = "", timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*self.base, *args],
            cwd=REPO,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"`compose {' '.join(args)}` exited {done.returncode}:\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return done

    def container(self, service: str) -> str:
        return self.run("ps", "-a", "-q", service).stdout.strip()

    def inspect(self, service: str, template: str) -> str:
        done = subprocess.run(
            ["docker", "inspect", "--format", template, self.container(service)],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return done.stdout.strip()

    def wait_healthy(self, service: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        health = ""
        while time.monotonic() < deadline:
            health = self.inspect(service, "{{if .State.Health}}{{.State.Health.Status}}{{end}}")
            if health == "healthy":
                return
            time.sleep(1)
        logs = self.run("logs", "--no-color", "--tail", "60", service, check=False).stdout
        raise AssertionError(f"{service} is {health!r} after {timeout:.0f}s; its log:\n{logs}")

    def printed(self) -> list[dict[str, Any]]:
        """The JSON lines of `compose logs function`: one per record the function got."""
        out = self.run("logs", "--no-color", "function").stdout
        lines = []
        for line in out.splitlines():
            _, bar, text = line.partition("| ")
            if bar and text.startswith("{"):
                with contextlib.suppress(ValueError):
                    lines.append(json.loads(text))
        return lines

    def wait_printed(
        self, check: Callable[[list[dict[str, Any]]], bool], what: str, timeout: float = 90
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            printed = self.printed()
            if check(printed):
                return printed
            if time.monotonic() > deadline:
                bridge = self.run("logs", "--no-color", "--tail", "40", "bridge").stdout
                raise AssertionError(
                    f"no {what} after {timeout:.0f}s; printed: {printed}\n{bridge}"
                )
            time.sleep(1)

    # --- the README's commands ---------------------------------------------------------------

    def put_object(self, key: str, body: str) -> None:
        self.run("run", "--rm", "-T", "mc", "pipe", f"stack/uploads/{key}", stdin=body)

    def produce(self, *values: str) -> None:
        producer = "/opt/kafka/bin/kafka-console-producer.sh"
        args = ("--bootstrap-server", "kafka:19092", "--topic", "events")
        self.run("exec", "-T", "kafka", producer, *args, stdin="".join(v + "\n" for v in values))

    def put_item(self, pk: str) -> None:
        item = json.dumps({"pk": {"S": pk}, "status": {"S": "new"}})
        # -T: no terminal here (the README's line runs at one)
        command = ("dynamodb", "put-item", "--table-name", "events", "--item", item)
        self.run("run", "--rm", "-T", "aws", *command)


def _identity(printed: dict[str, Any]) -> tuple[str, str]:
    """What makes a delivered record itself: its object key, offset or item key."""
    if printed["source"] == "aws:s3":
        return ("s3", printed["key"])
    if printed["source"] == "kafka":
        return ("kafka", str(printed["offset"]))
    if printed["source"] == "aws:dynamodb":
        return ("dynamodb", printed["keys"]["pk"]["S"])
    return ("other", json.dumps(printed, sort_keys=True))


def _identities(printed: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [_identity(p) for p in printed if "source" in p]


@pytest.fixture(scope="module")
def images() -> None:
    """A Docker engine and every image of the stack, or a failure that says why."""
    _run_checked([str(COMPOSE_IMAGES), "engine"], "scripts/compose-images engine", 600)
    _run_checked([str(COMPOSE_IMAGES), "build"], "scripts/compose-images build", 3000)


@pytest.fixture
def stack(images: None, tmp_path: Path) -> Iterator[Stack]:
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".compose-test.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one stack test at a time on this machine
        stack = Stack([REPO / "docker-compose.yml"])
        stack.run("down", "-v", "--remove-orphans", timeout=180)  # a crashed run's leftovers
        try:
            yield stack
        finally:
            stack.run("down", "-v", "--remove-orphans", timeout=180, check=False)


def test_the_readme_compose_section_runs_and_survives_restart_and_stop(
    stack: Stack, tmp_path: Path
) -> None:
    _up_and_the_three_lines(stack)
    _restart_loses_nothing_and_repeats_nothing(stack)
    slow = _with_a_slow_function(stack, tmp_path)
    _stop_lets_in_flight_work_finish(slow)
    slow.run("down", "-v", timeout=180)  # the README's last command
    assert slow.run("ps", "-a", "-q").stdout.strip() == ""


def _up_and_the_three_lines(stack: Stack) -> None:
    """docker compose up -d --build, health, then an object, a message, an item."""
    stack.run("up", "-d", "--build", timeout=900)
    stack.wait_healthy("bridge")
    for one_shot in ("minio-init", "kafka-init", "dynamodb-init"):
        assert stack.inspect(one_shot, "{{.State.ExitCode}}") == "0", one_shot
    assert stack.inspect("bridge", "{{.Config.User}}") == "bridge"  # not root

    stack.put_object("hello.txt", "hello\n")
    stack.produce('{"order": 7}')
    stack.put_item("order-7")
    printed = stack.wait_printed(lambda p: len(_identities(p)) >= 3, "three lines")
    by_source = {p["source"]: p for p in printed}
    s3 = by_source["aws:s3"]
    assert (s3["event"], s3["bucket"], s3["key"], s3["size"]) == (
        "ObjectCreated:Put",
        "uploads",
        "hello.txt",
        6,
    )
    kafka = by_source["kafka"]
    assert (kafka["topic"], kafka["partition"], kafka["offset"]) == ("events", 0, 0)
    assert kafka["value"] == '{"order": 7}'
    item = by_source["aws:dynamodb"]
    assert (item["event"], item["table"]) == ("INSERT", "events")
    assert item["keys"] == {"pk": {"S": "order-7"}}


def _restart_loses_nothing_and_repeats_nothing(stack: Stack) -> None:
    """Records written just before `restart bridge` and after it arrive, each once."""
    for n in (1, 2):
        stack.put_object(f"before-{n}.txt", "x")
        stack.put_item(f"before-{n}")
    stack.produce("before-1", "before-2")
    stack.run("restart", "bridge", timeout=120)
    stack.put_object("after.txt", "x")
    stack.produce("after")
    stack.put_item("after")
    expected = {("s3", k) for k in ("hello.txt", "before-1.txt", "before-2.txt", "after.txt")}
    expected |= {("kafka", str(offset)) for offset in range(4)}
    expected |= {("dynamodb", k) for k in ("order-7", "before-1", "before-2", "after")}
    stack.wait_printed(lambda p: set(_identities(p)) >= expected, "record after the restart")
    time.sleep(12)  # two listing intervals of the bucket: time for a repeat to show
    seen = _identities(stack.printed())
    assert set(seen) == expected
    assert sorted(seen) == sorted(expected), "a record was delivered twice"


def _with_a_slow_function(stack: Stack, tmp_path: Path) -> Stack:
    """The function recreated with SLOW_PRINTER as its handler (a compose override)."""
    handler = tmp_path / "slow_printer.py"
    handler.write_text(SLOW_PRINTER)
    override = tmp_path / "slow.yml"
    override.write_text(
        "services:\n  function:\n    command: [slow_printer.handler]\n"
        f"    volumes: ['{handler}:/var/task/slow_printer.py:ro']\n"
    )
    slow = Stack([REPO / "docker-compose.yml", override])
    slow.env = stack.env
    slow.run("up", "-d", "--no-deps", "function", timeout=120)
    slow.wait_healthy("function")
    return slow


def _stop_lets_in_flight_work_finish(slow: Stack) -> None:
    """`stop` while an invocation runs longer than Docker's default 10 s grace: the bridge
    waits for it (stop_grace_period covers shutdown_timeout_seconds), exits 0, commits."""
    sleep = 15
    slow.produce(f"sleep:{sleep}")  # offset 4
    slow.wait_printed(lambda p: {"sleeping": 4} in p, "sleeping function", timeout=60)
    began = time.monotonic()
    slow.run("stop", timeout=180)
    took = time.monotonic() - began
    assert slow.inspect("bridge", "{{.State.ExitCode}}") == "0", "the bridge was killed"
    assert took >= sleep - 5, f"stop took {took:.0f}s: it did not wait for the invocation"
    assert ("kafka", "4") in _identities(slow.printed())  # the invocation completed
    slow.run("start", timeout=300)
    slow.wait_healthy("bridge")
    slow.produce("last")  # offset 5
    slow.wait_printed(lambda p: ("kafka", "5") in _identities(p), "record after the stop")
    seen = _identities(slow.printed())
    assert seen.count(("kafka", "4")) == 1, "the in-flight record was delivered again"
    assert len(seen) == len(set(seen)), "a record was delivered twice"
