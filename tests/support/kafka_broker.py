"""A private Kafka broker for one test, to be killed and started again at will.

The session's shared broker (``kafka_bootstrap``) must never go down: other tests use it.
``PrivateKafka`` runs a second one from the same jars ``scripts/test-services`` installed
(``~/.cache/trigger-bridge/kafka-*/lib``, or under ``TB_CACHE_DIR``), a single KRaft node
on loopback with its own data folder and ports. ``kill()`` is a ``kill -9``;
``start()`` again brings it back on the same port with the same data, as a broker that
crashed and was restarted, so topics, records and committed offsets survive.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

__all__ = ["PrivateKafka"]


def _kafka_lib() -> Path:
    cache = Path(os.environ.get("TB_CACHE_DIR") or Path.home() / ".cache" / "trigger-bridge")
    libs = sorted(cache.expanduser().glob("kafka-*/lib"))
    if not libs:
        raise RuntimeError(f"no Kafka jars under {cache} (run scripts/test-services install kafka)")
    return libs[-1]


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("no java on PATH (Kafka needs Java 17+)")
    return java


def _free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


class PrivateKafka:
    """``await PrivateKafka(folder).start()``; ``bootstrap`` is ``127.0.0.1:PORT``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port, self._controller = _free_ports(2)
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log = folder / "kafka.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._formatted = False

    def _jvm(self) -> list[str]:
        log4j = self.folder / "log4j.properties"
        log4j.write_text(
            "log4j.rootLogger=WARN, stdout\n"
            "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
            "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
            "log4j.logger.kafka.server.KafkaServer=INFO\n"
            "log4j.logger.kafka.server.BrokerServer=INFO\n"
        )
        return [
            _java(),
            "-Xmx384m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{log4j}",
            f"-Dkafka.logs.dir={self.folder}",
            "-cp",
            str(_kafka_lib() / "*"),
        ]

    def _properties(self) -> Path:
        props = self.folder / "server.properties"
        port, cport = self.port, self._controller
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{cport}",
                    f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    f"log.dirs={self.folder / 'data'}",
                    "num.partitions=1",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=1",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=false",
                    "num.network.threads=1",
                    "num.io.threads=2",
                    "",
                ]
            )
        )
        return props

    async def start(self, timeout: float = 90) -> None:
        """Start the broker (again) and wait until it answers an admin call."""
        assert self._process is None, "already running"
        self.folder.mkdir(parents=True, exist_ok=True)
        jvm, props = self._jvm(), self._properties()
        with self.log.open("ab") as out:
            if not self._formatted:
                cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
                fmt = [*jvm, "kafka.tools.StorageTool", "format", "-t", cluster, "-c", str(props)]
                await asyncio.to_thread(
                    subprocess.run, fmt, stdout=out, stderr=subprocess.STDOUT, check=True
                )
                self._formatted = True
            self._process = subprocess.Popen(
                [*jvm, "kafka.Kafka", str(props)],
                cwd=self.folder,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        await self._wait_ready(timeout)

    async def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"private Kafka exited; see {self.log}")
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=3000)
            try:
                await admin.start()
                await admin.list_topics()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
            finally:
                await admin.close()
            await asyncio.sleep(0.3)

    def kill(self) -> None:
        """``kill -9`` the broker: connections drop, nothing is flushed or handed over."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)

    async def create_topic(self, name: str, partitions: int = 1) -> None:
        from aiokafka.admin import NewTopic

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=30000)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, partitions, 1)])
            deadline = time.monotonic() + 30
            while True:
                [described] = await admin.describe_topics([name])
                parts = described.get("partitions", [])
                if len(parts) == partitions and all(p.get("leader", -1) >= 0 for p in parts):
                    return
                if time.monotonic() > deadline:
                    raise AssertionError(f"{name}: no leaders after 30 s: {parts}")
                await asyncio.sleep(0.1)
        finally:
            await admin.close()
