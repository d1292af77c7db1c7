"""Operating a running bridge: the admin server (health, readiness, Prometheus metrics,
status), pause and resume, reload on SIGHUP and on a ConfigMap's symlink swap, JSON logs
and progress lines; against a real daemon and real functions (awslambdaric)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from bridge import telemetry
from bridge.admin import AdminServer, progress_loop, read_admin_file
from bridge.cli import main
from bridge.config import load_config, parse_config
from bridge.logs import setup_logging
from bridge.metrics import MappingView, stats_for
from bridge.reload import watch_config
from bridge.supervisor import Supervisor
from tests.e2e.harness import wait_for

REPO = Path(__file__).resolve().parents[1]
HANDLER = """
import json
from urllib.parse import unquote_plus


def handler(event, context):
    for record in event["Records"]:
        print(json.dumps({"key": unquote_plus(record["s3"]["object"]["key"])}), flush=True)
    return {}
"""


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a /metrics page: (name, labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def sample(
    page: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return page.get((name, frozenset(labels.items())), -1.0)


def wait_until(predicate: Callable[[], bool], timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not in {timeout}s: {what}")
        time.sleep(0.1)


def _daemon_config(tmp: Path, mappings: list[str]) -> str:
    (tmp / "fn").mkdir(exist_ok=True)
    (tmp / "fn" / "app.py").write_text(HANDLER)
    lines = [
        f"state_dir: {tmp}/state",
        "admin: {port: 0}",
        "shutdown_timeout_seconds: 5",
        "functions:",
        "  hello:",
        "    type: runtime",
        "    command: python -m awslambdaric app.handler",
        f"    cwd: {tmp}/fn",
        "    concurrency: 1",
        "mappings:",
    ]
    for name in mappings:
        (tmp / name).mkdir(exist_ok=True)
        source = f"{{type: local_dir, path: {tmp}/{name}}}"
        lines.append(f"  - {{name: {name}, function: hello, source: {source}}}")
    return "\n".join(lines) + "\n"


def test_a_running_daemon_answers_health_metrics_status_pause_resume_and_sighup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text(_daemon_config(tmp_path, ["inbox"]))
    log = tmp_path / "bridge.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bridge",
                "run",
                "--config",
                str(config),
                "--no-reload",
                "--log-format",
                "json",
            ],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    state = tmp_path / "state"
    try:
        wait_until(lambda: read_admin_file(state) is not None, what="admin.json")
        daemon = read_admin_file(state)
        assert daemon is not None and daemon["pid"] == proc.pid
        base = f"http://{daemon['address']}"
        assert httpx.get(f"{base}/healthz").status_code == 200
        wait_until(lambda: httpx.get(f"{base}/readyz").status_code == 200, what="ready")

        def page() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
            return samples(httpx.get(f"{base}/metrics").text)

        for i in range(3):
            (tmp_path / "inbox" / f"f{i}.txt").write_text("x" * i)
        wait_until(
            lambda: sample(page(), "trigger_bridge_records_delivered_total", mapping="inbox") == 3,
            what="3 delivered",
        )
        now = page()
        assert sample(now, "trigger_bridge_records_read_total", mapping="inbox") == 3
        assert sample(now, "trigger_bridge_invocations_total", mapping="inbox") == 3
        assert sample(now, "trigger_bridge_batch_size_count", mapping="inbox") == 3
        assert sample(now, "trigger_bridge_batch_size_sum", mapping="inbox") == 3
        assert sample(now, "trigger_bridge_invocation_duration_seconds_count", mapping="inbox") == 3
        assert sample(now, "trigger_bridge_function_errors_total", mapping="inbox") == 0
        assert sample(now, "trigger_bridge_mapping_state", mapping="inbox", state="running") == 1
        assert sample(now, "trigger_bridge_last_delivery_timestamp_seconds", mapping="inbox") > 0

        # the command line asks the daemon
        capsys.readouterr()
        assert main(["status", "--config", str(config), "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        [m] = doc["mappings"]
        assert (m["state"], m["records"]["delivered"], doc["ready"]) == ("running", 3, True)
        assert main(["status", "--config", str(config)]) == 0
        table = capsys.readouterr().out
        assert f"bridge pid {proc.pid}" in table and ": ready" in table
        assert table.splitlines()[2].split()[:6] == [
            "inbox",
            "running",
            "local_dir",
            "hello",
            "3",
            "3",
        ]
        assert main(["status", "--config", str(config), "--ready"]) == 0

        # pause: kept in the state dir, nothing more is delivered, readiness is unaffected
        assert main(["pause", "inbox", "--config", str(config)]) == 0
        assert "inbox: paused" in capsys.readouterr().out
        assert json.loads((state / "paused.json").read_text()) == ["inbox"]
        assert main(["pause", "inbox", "--config", str(config)]) == 0
        assert "already paused" in capsys.readouterr().out
        assert main(["pause", "nope", "--config", str(config)]) == 2
        assert "no mapping named 'nope' (mappings: inbox)" in capsys.readouterr().err
        (tmp_path / "inbox" / "late.txt").write_text("late")
        time.sleep(1.5)
        now = page()
        assert sample(now, "trigger_bridge_mapping_state", mapping="inbox", state="paused") == 1
        assert sample(now, "trigger_bridge_records_delivered_total", mapping="inbox") == 3
        assert httpx.get(f"{base}/readyz").status_code == 200

        # resume: the change made while paused is delivered
        assert main(["resume", "inbox", "--config", str(config)]) == 0
        wait_until(
            lambda: sample(page(), "trigger_bridge_records_delivered_total", mapping="inbox") == 4,
            what="the late file",
        )
        assert json.loads((state / "paused.json").read_text()) == []

        # SIGHUP re-reads the file (no file watch in this run)
        config.write_text(_daemon_config(tmp_path, ["inbox", "second"]))
        proc.send_signal(signal.SIGHUP)
        wait_until(
            lambda: (
                [m["state"] for m in httpx.get(f"{base}/status").json()["mappings"]]
                == ["running", "running"]
            ),
            what="the second mapping after SIGHUP",
        )
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, log.read_text()
    assert not (state / "admin.json").exists()
    # --log-format json: every line one object; events by name with their fields;
    # the function's own output too, with the function's name
    docs = [json.loads(line) for line in log.read_text().splitlines()]
    events = {d.get("event") for d in docs}
    assert {"bridge.started", "admin.started", "mapping.paused", "config.reload_asked"} <= events
    printed = [
        d
        for d in docs
        if d["logger"] == "bridge.function.hello" and "late.txt" in d.get("message", "")
    ]
    assert printed and printed[0]["function"] == "hello"
    # with the daemon gone, status reads the files and says so
    assert main(["status", "--config", str(config)]) == 0
    captured = capsys.readouterr()
    assert "no bridge is running" in captured.err
    assert main(["status", "--config", str(config), "--ready"]) == 1


@pytest.fixture
async def admin_for() -> AsyncIterator[Callable[..., Any]]:
    """``await admin_for(config_text, tmp)``: a Supervisor running the config and its
    admin server; yields (supervisor, base URL)."""
    running: list[tuple[Supervisor, AdminServer]] = []

    async def start(text: str) -> tuple[Supervisor, str]:
        config = parse_config(text, "test.yaml")
        supervisor = Supervisor()
        await supervisor.apply(config)

        async def reload() -> str | None:
            return None

        admin = AdminServer(supervisor, config_path="test.yaml", reload=reload)
        await admin.apply(config)
        running.append((supervisor, admin))
        await wait_for(lambda: admin.address is not None, what="admin listening")
        return supervisor, f"http://{admin.address}"

    yield start
    for supervisor, admin in running:
        await admin.aclose()
        await supervisor.aclose()


async def test_readyz_names_the_mapping_that_cannot_run(
    tmp_path: Path, admin_for: Callable[..., Any]
) -> None:
    (tmp_path / "in").mkdir()
    text = f"""
state_dir: {tmp_path}/state
admin: {{port: 0}}
functions: {{f: {{type: http, url: "http://127.0.0.1:1/"}}}}
mappings:
  - {{name: good, function: f, source: {{type: local_dir, path: {tmp_path}/in}}}}
  - {{name: broken, function: f, source: {{type: kafka, bootstrap_servers: ["127.0.0.1:1"],
                                           topics: [t]}}}}
  - {{name: idle, function: f, enabled: false, source: {{type: local_dir, path: {tmp_path}/in}}}}
"""
    _, base = await admin_for(text)
    async with httpx.AsyncClient() as client:

        async def ready() -> httpx.Response:
            return await client.get(f"{base}/readyz")

        deadline = time.monotonic() + 20
        while "broken: restarting" not in (await ready()).text:
            assert time.monotonic() < deadline, (await ready()).text
            await asyncio.sleep(0.1)
        answer = await ready()
        assert answer.status_code == 503
        assert "good" not in answer.text and "idle" not in answer.text  # running; disabled
        assert "127.0.0.1:1" in answer.text  # the error says what is wrong
        status = (await client.get(f"{base}/status")).json()
        states = {m["mapping"]: m["state"] for m in status["mappings"]}
        assert states == {"good": "running", "broken": "restarting", "idle": "disabled"}
        broken = next(m for m in status["mappings"] if m["mapping"] == "broken")
        assert broken["last_error"]["at"] <= time.time()
        # an unknown mapping cannot be paused; nothing changes
        gone = await client.post(f"{base}/mappings/nope/pause")
        assert gone.status_code == 404 and gone.json()["mappings"] == ["good", "broken", "idle"]


async def test_mutating_endpoints_need_the_token_when_one_is_set(
    tmp_path: Path, admin_for: Callable[..., Any]
) -> None:
    (tmp_path / "in").mkdir()
    text = f"""
state_dir: {tmp_path}/state
admin: {{port: 0, auth_token: s3cret}}
functions: {{f: {{type: http, url: "http://127.0.0.1:1/"}}}}
mappings:
  - {{name: m, function: f, source: {{type: local_dir, path: {tmp_path}/in}}}}
"""
    supervisor, base = await admin_for(text)
    async with httpx.AsyncClient() as client:
        refused = await client.post(f"{base}/mappings/m/pause")
        assert refused.status_code == 401
        assert supervisor.running == ["m"]
        wrong = await client.post(
            f"{base}/mappings/m/pause", headers={"Authorization": "Bearer nope"}
        )
        assert wrong.status_code == 401
        done = await client.post(
            f"{base}/mappings/m/pause", headers={"Authorization": "Bearer s3cret"}
        )
        assert done.status_code == 200 and done.json()["changed"] is True
        assert supervisor.running == []
        assert (await client.get(f"{base}/metrics")).status_code == 200  # reads stay open


class _Function:
    """A plain HTTP function whose answers the test sets: a list of statuses to give
    first (then 200)."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.fail = False
        self.bodies: list[bytes] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.read())
        if self.statuses:
            return web.Response(status=self.statuses.pop(0), text="busy")
        if self.fail:
            return web.Response(status=500, text="broken")
        return web.json_response({})


@pytest.fixture
async def function() -> AsyncIterator[tuple[_Function, str]]:
    fn = _Function()
    app = web.Application()
    app.router.add_post("/", fn.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield fn, f"http://127.0.0.1:{port}/"
    await runner.cleanup()


async def test_kafka_offset_lag_grows_while_the_function_fails_and_falls_to_zero(
    tmp_path: Path,
    kafka_bootstrap: str,
    kafka_topic_factory: Callable[..., Any],
    admin_for: Callable[..., Any],
    function: tuple[_Function, str],
) -> None:
    from aiokafka import AIOKafkaProducer

    fn, url = function
    fn.fail = True
    topic = await kafka_topic_factory(partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for i in range(30):
            await producer.send_and_wait(topic, b"v%d" % i, partition=i % 2)
    finally:
        await producer.stop()
    name = f"lag-{tmp_path.name}"
    text = f"""
state_dir: {tmp_path}/state
admin: {{port: 0}}
retry_backoff: {{initial_seconds: 0.05, max_seconds: 0.2}}
functions: {{f: {{type: http, url: "{url}"}}}}
mappings:
  - name: {name}
    function: f
    batch_size: 5
    source: {{type: kafka, bootstrap_servers: [{kafka_bootstrap}], topics: [{topic}],
              starting_position: TRIM_HORIZON}}
"""
    _, base = await admin_for(text)
    async with httpx.AsyncClient() as client:

        async def page() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
            return samples((await client.get(f"{base}/metrics")).text)

        def lag(p: dict[tuple[str, frozenset[tuple[str, str]]], float], part: int) -> float:
            return sample(p, "trigger_bridge_offset_lag", mapping=name, partition=f"{topic}-{part}")

        deadline = time.monotonic() + 60
        while True:
            now = await page()
            if (
                lag(now, 0) == 15
                and lag(now, 1) == 15
                and sample(now, "trigger_bridge_function_errors_total", mapping=name) >= 4
            ):
                break
            assert time.monotonic() < deadline, {k: v for k, v in now.items() if name in str(k)}
            await asyncio.sleep(0.2)
        assert sample(now, "trigger_bridge_records_failed_total", mapping=name) >= 20
        assert sample(now, "trigger_bridge_retries_total", mapping=name) >= 2
        assert sample(now, "trigger_bridge_records_in_flight", mapping=name) == 30
        assert sample(now, "trigger_bridge_oldest_record_age_seconds", mapping=name) > 0
        status = (await client.get(f"{base}/status")).json()
        [m] = status["mappings"]
        assert m["lag"]["offset_lag"] == {f"{topic}-0": 15, f"{topic}-1": 15}

        fn.fail = False  # the function recovers: everything is delivered and committed
        deadline = time.monotonic() + 60
        while True:
            now = await page()
            if lag(now, 0) == 0 and lag(now, 1) == 0:
                break
            assert time.monotonic() < deadline, now
            await asyncio.sleep(0.2)
        assert sample(now, "trigger_bridge_records_delivered_total", mapping=name) == 30
        assert sample(now, "trigger_bridge_records_in_flight", mapping=name) == 0
        assert sample(now, "trigger_bridge_iterator_age_seconds", mapping=name) > 0


async def test_throttles_and_dead_letters_are_counted(
    tmp_path: Path, admin_for: Callable[..., Any], function: tuple[_Function, str]
) -> None:
    fn, url = function
    fn.statuses = [429, 429]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("a")
    name = f"thr-{tmp_path.name}"
    text = f"""
state_dir: {tmp_path}/state
admin: {{port: 0}}
retry_backoff: {{initial_seconds: 0.01, max_seconds: 0.05}}
functions: {{f: {{type: http, url: "{url}"}}}}
mappings:
  - {{name: {name}, function: f, maximum_retry_attempts: 1,
      source: {{type: local_dir, path: {tmp_path}/in}}}}
"""
    _, base = await admin_for(text)
    stats = stats_for(name)
    await wait_for(lambda: stats.delivered == 1, what="delivered after two 429s")
    assert (stats.throttles, stats.retries, stats.invocations) == (2, 2, 1)
    fn.fail = True
    (tmp_path / "in" / "b.txt").write_text("b")
    await wait_for(lambda: sum(stats.dead_lettered.values()) == 1, what="dead-lettered")
    async with httpx.AsyncClient() as client:
        page = samples((await client.get(f"{base}/metrics")).text)
    assert sample(page, "trigger_bridge_throttles_total", mapping=name) == 2
    assert sample(page, "trigger_bridge_function_errors_total", mapping=name) == 2
    assert (
        sample(
            page,
            "trigger_bridge_records_dead_lettered_total",
            mapping=name,
            condition="RetryAttemptsExhausted",
        )
        == 1
    )
    assert sample(page, "trigger_bridge_pending_changes", mapping=name) == 0


async def test_a_configmap_symlink_swap_is_applied(tmp_path: Path) -> None:
    """Kubernetes mounts a ConfigMap as bridge.yaml -> ..data/bridge.yaml, ..data ->
    ..<timestamp>; an update writes a new timestamped folder and renames a new ..data
    symlink over the old one. The file's own folder entry never changes."""
    (tmp_path / "in").mkdir()

    def version(folder: str, mappings: list[str]) -> None:
        (tmp_path / folder).mkdir()
        body = "\n".join(
            f"  - {{name: {m}, function: f, source: {{type: local_dir, path: {tmp_path}/in}}}}"
            for m in mappings
        )
        (tmp_path / folder / "bridge.yaml").write_text(
            f"state_dir: {tmp_path}/state\n"
            'functions: {f: {type: http, url: "http://127.0.0.1:1/"}}\n'
            f"mappings:\n{body}\n"
        )

    version("..2026_11_30_12_00_00.1", ["one"])
    os.symlink("..2026_11_30_12_00_00.1", tmp_path / "..data")
    os.symlink("..data/bridge.yaml", tmp_path / "bridge.yaml")
    path = tmp_path / "bridge.yaml"
    supervisor = Supervisor()
    await supervisor.apply(load_config(path))
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_config(path, supervisor, stop))
    try:
        await asyncio.sleep(0.5)  # the watch is set up
        version("..2026_11_30_12_05_00.2", ["one", "two"])
        os.symlink("..2026_11_30_12_05_00.2", tmp_path / "..data_tmp")
        os.rename(tmp_path / "..data_tmp", tmp_path / "..data")
        await wait_for(lambda: supervisor.running == ["one", "two"], what="the new version")
    finally:
        stop.set()
        await watcher
        await supervisor.aclose()


class _Views:
    def __init__(self) -> None:
        self.views: list[MappingView] = []

    def mapping_views(self) -> list[MappingView]:
        return self.views

    async def refresh(self) -> None:
        pass


async def test_progress_lines_only_while_a_mapping_has_a_backlog(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Pure logic of the progress lines (the views are given; the daemon test above and
    the metrics tests cover where they come from)."""
    name = f"progress-{time.monotonic_ns()}"
    source = _Views()
    source.views = [MappingView(name, "kafka", "f", "running", in_flight=0)]
    stats = stats_for(name)
    caplog.set_level("INFO", logger="bridge")
    task = asyncio.create_task(progress_loop(source, lambda: 0.05))  # type: ignore[arg-type]
    try:
        await asyncio.sleep(0.2)
        assert "mapping.progress" not in caplog.text  # idle: quiet
        source.views = [
            MappingView(name, "kafka", "f", "running", in_flight=7, offset_lag={"t-0": 40})
        ]
        stats.delivered += 100
        await wait_for(lambda: "mapping.progress" in caplog.text, what="a progress line")
        line = next(r for r in caplog.records if getattr(r, "event", "") == "mapping.progress")
        fields = line.fields  # type: ignore[attr-defined]
        assert (fields["mapping"], fields["in_flight"], fields["offset_lag"]) == (name, 7, 40)
        assert fields["records_per_second"] >= 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_json_log_lines_carry_the_event_and_its_fields(
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup_logging(20, "json")
    try:
        telemetry.emit(telemetry.BATCH_FAILED, mapping="m", size=3, error="boom", level=30)
        import logging

        logging.getLogger("other").warning("plain %s", "text")
    finally:
        setup_logging(20, "text")
    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert first["event"] == "batch.failed" and first["level"] == "WARNING"
    assert (first["mapping"], first["size"], first["error"]) == ("m", 3, "boom")
    assert second == {**second, "logger": "other", "message": "plain text"}
    assert "event" not in second


def test_log_options_are_accepted_after_the_subcommand(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "b.yaml"
    config.write_text(_daemon_config(tmp_path, ["inbox"]))
    assert (
        main(["validate", "--config", str(config), "--log-level", "debug", "--log-format", "json"])
        == 0
    )
    assert main(["--log-level", "ERROR", "validate", "--config", str(config)]) == 0
    with pytest.raises(SystemExit):
        main(["validate", "--log-format", "xml"])
    setup_logging(20, "text")
