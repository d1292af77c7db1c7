"""What the supervisor runs, one object each: a mapping (its pipeline, restarted from its
checkpoint with backoff), an API or an event bus (served, bound again with backoff), and
a function's target shared by all of them (started once).

A mapping whose source fails (``SourceError``, unreachable target at start) or that
crashed on a bug (logged with its traceback) is restarted from its checkpoint with
exponential backoff (1 s doubling to 60 s, reset after a minute of health). A
``ConfigError`` from a connector (bad bucket, missing folder...) stops that mapping
until the config changes. Each runner knows its state (``starting``, ``running``,
``restarting``, ``failed``, ``stopped``) and its last error, for ``/status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from bridge import telemetry
from bridge.checkpoints import CheckpointStore
from bridge.config import BridgeConfig, MappingConfig
from bridge.connector import ConnectorContext, PartitionControl
from bridge.destinations import build_destination
from bridge.errors import BridgeError, ConfigError
from bridge.events import function_arn
from bridge.front.config import EventBusConfig
from bridge.leases import MappingLease, leases_for, mapping_lease
from bridge.metrics import MappingView, stats_for
from bridge.pipeline import CLOSE_TIMEOUT, Pipeline, PipelineOptions
from bridge.registry import connector_class
from bridge.retry import RetryPolicy
from bridge.targets import Target
from bridge.windows import Windows

__all__ = [
    "ApiRunner",
    "BusRunner",
    "MappingRunner",
    "TargetHandle",
    "bus_rules",
    "rule_identity",
    "wants_trust",
]

log = logging.getLogger(__name__)

MAX_RESTART_DELAY = 60.0


class TargetHandle:
    """A shared target, started once (again after a failed start)."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._started = False
        self._lock = asyncio.Lock()

    async def ensure_started(self) -> None:
        async with self._lock:
            if not self._started:
                await self.target.start()
                self._started = True

    async def aclose(self) -> None:
        async with self._lock:
            await self.target.aclose()
            self._started = False


class MappingRunner:
    def __init__(
        self,
        mapping: MappingConfig,
        config: BridgeConfig,
        target: TargetHandle,
        store: CheckpointStore,
        *,
        member: int = 0,
    ) -> None:
        self.mapping = mapping
        self.member = member  # of a mapping with parallelism (bridge/placement.py)
        self.config = config
        self.target = target
        self.store = store
        self._stopped = asyncio.Event()
        self._pipeline: Pipeline | None = None
        self.state = "starting"  # running, restarting (after a failure), failed, stopped
        self.error: str | None = None  # the last failure, and when (epoch seconds)
        self.error_at: float | None = None
        self.task: asyncio.Task[None] = asyncio.create_task(
            self._run(), name=f"mapping:{mapping.name}"
        )

    def _build(self) -> Pipeline:
        mapping, config = self.mapping, self.config
        cls: Any = connector_class(mapping.source["type"])
        source = cls.config_model.model_validate(mapping.source)
        partitions = PartitionControl()
        context = ConnectorContext(
            partitions=partitions,
            mapping=mapping.name,
            checkpoints=self.store.namespace(mapping.name),
            region=config.region,
            account_id=config.account_id,
            state_dir=str(config.state_dir),
            parallelization_factor=mapping.parallelization_factor or 1,
            # None unless the state is shared or the mapping has members in several workers
            leases=leases_for(self.store, mapping.name, members=mapping.parallelism or 1),
            member=self.member,
        )
        connector = cls(source, context)
        defaults = cls.defaults

        def option(name: str, fallback: Any) -> Any:
            value = getattr(mapping, name)
            return value if value is not None else defaults.get(name, fallback)

        retries = option("maximum_retry_attempts", -1)
        if retries == -1 and mapping.on_failure is not None:
            # Kafka: infinite retries with an on-failure destination are capped (at 10)
            retries = defaults.get("maximum_retry_attempts_with_on_failure", -1)
        policy = RetryPolicy(
            maximum_retry_attempts=retries,
            maximum_record_age_seconds=option("maximum_record_age_seconds", -1),
            bisect_batch_on_function_error=mapping.bisect_batch_on_function_error,
            report_batch_item_failures=mapping.report_batch_item_failures,
            backoff_initial_seconds=config.retry_backoff.initial_seconds,
            backoff_max_seconds=config.retry_backoff.max_seconds,
        )
        options = PipelineOptions(
            batch_size=option("batch_size", 10),
            window=option("maximum_batching_window_seconds", 0.0),
            maximum_concurrency=option("maximum_concurrency", 10),
            policy=policy,
            shutdown_timeout=config.shutdown_timeout_seconds,
            commit_interval=option("commit_interval_seconds", 0.0),
        )
        uri = (
            mapping.on_failure.destination
            if mapping.on_failure
            else f"file://{Path(config.state_dir) / 'failures' / (mapping.name + '.jsonl')}"
        )
        function = config.functions[mapping.function]
        name = getattr(function, "function_name", None) or mapping.function
        windows = None
        if mapping.tumbling_window_in_seconds:
            windows = Windows(
                mapping.tumbling_window_in_seconds,
                context.checkpoints,
                source_arn=lambda: getattr(connector, "stream_arn", None),
            )
        return Pipeline(
            mapping=mapping.name,
            connector=connector,
            target=self.target.target,
            destination=build_destination(uri, source=source, context=context),
            options=options,
            filters=mapping.filter_criteria.compile() if mapping.filter_criteria else None,
            function_arn=function_arn(name, config.region, config.account_id),
            partitions=partitions,
            stats=stats_for(mapping.name),
            windows=windows,
        )

    async def _run(self) -> None:
        name = self.mapping.name
        lease = mapping_lease(self.store, name, connector_class(self.mapping.source["type"]))
        try:
            await self._run_until_stopped(lease)
        finally:
            if lease is not None:
                await lease.release()  # after the pipeline's last commits

    async def _run_until_stopped(self, lease: MappingLease | None) -> None:
        delay = 1.0
        while not self._stopped.is_set():
            if lease is not None and not lease.leases.holds(self.mapping.name):
                self.state = "standby"  # another bridge runs it (shared state)
                if not await lease.acquire(self._stopped):
                    return
            started = time.monotonic()
            try:
                self._pipeline = self._build()
                await self.target.ensure_started()
                if self._stopped.is_set():
                    return
                self.state = "running"
                telemetry.emit(telemetry.MAPPING_STARTED, mapping=self.mapping.name)
                if lease is None:
                    await self._pipeline.run()
                    return
                if not await self._run_while_held(self._pipeline, lease):
                    return  # stopped; else the lease was lost: stand by again
            except ConfigError as exc:
                self._failed("failed", exc)
                telemetry.emit(
                    telemetry.MAPPING_FAILED,
                    mapping=self.mapping.name,
                    error=str(exc),
                    level=logging.ERROR,
                )
                await self._stopped.wait()
                return
            except Exception as exc:
                if time.monotonic() - started > MAX_RESTART_DELAY:
                    delay = 1.0
                self._failed("restarting", exc)
                telemetry.emit(
                    # a BridgeError is the world (a source down); anything else is a bug,
                    # whose traceback the pipeline logged
                    telemetry.SOURCE_UNAVAILABLE
                    if isinstance(exc, BridgeError)
                    else telemetry.MAPPING_CRASHED,
                    mapping=self.mapping.name,
                    error=str(exc) or repr(exc),
                    retry_in=delay,
                    level=logging.ERROR,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopped.wait(), delay)
                delay = min(MAX_RESTART_DELAY, delay * 2)
            finally:
                self._pipeline = None

    async def _run_while_held(self, pipeline: Pipeline, lease: MappingLease) -> bool:
        """Run ``pipeline`` while this bridge holds the mapping's lease: False once it
        ended (stopped), True if the lease was lost (then it was stopped and drained)."""
        run = asyncio.create_task(pipeline.run())
        keep = asyncio.create_task(lease.keep())
        await asyncio.wait({run, keep}, return_when=asyncio.FIRST_COMPLETED)
        lost = not run.done()
        if lost:  # another bridge may take it over now: stop (and drain) at once
            pipeline.stop()
            await asyncio.wait({run})
        keep.cancel()
        await asyncio.gather(keep, return_exceptions=True)
        run.result()  # its failure, if it failed
        return lost

    def _failed(self, state: str, exc: BaseException) -> None:
        self.state, self.error, self.error_at = state, str(exc) or repr(exc), time.time()

    def view(self) -> MappingView:
        """What ``/metrics`` and ``status`` show of this mapping now."""
        m, pipeline = self.mapping, self._pipeline
        in_flight, oldest, lag, pending = 0, None, {}, None
        if pipeline is not None and self.state == "running":
            in_flight, oldest = pipeline.in_flight, pipeline.oldest_age()
            connector: Any = pipeline.connector
            if callable(getattr(connector, "offset_lag", None)):
                lag = connector.offset_lag()
            if callable(getattr(connector, "backlog", None)):
                pending = connector.backlog() + in_flight
        return MappingView(
            name=m.name,
            source=m.source["type"],
            function=m.function,
            state=self.state,
            in_flight=in_flight,
            oldest_age=oldest,
            offset_lag=lag,
            pending=pending,
            error=self.error,
            error_at=self.error_at,
        )

    async def stop(self) -> None:
        self._stopped.set()
        if self._pipeline is not None:
            self._pipeline.stop()
        # the pipeline bounds its own stop (drain and commits within the timeout, then
        # closing the source); this is the last resort, e.g. for an open() that hangs
        grace = self.config.shutdown_timeout_seconds + CLOSE_TIMEOUT + 5
        done, _ = await asyncio.wait({self.task}, timeout=grace)
        if not done:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        self.state = "stopped"
        telemetry.emit(telemetry.MAPPING_STOPPED, mapping=self.mapping.name)


class ApiRunner:
    """One API: served until stopped, started again with backoff when it cannot bind."""

    started, failed, stopped = telemetry.API_STARTED, telemetry.API_FAILED, telemetry.API_STOPPED
    kind = "api"  # the key naming it in those lines

    def __init__(self, api: Any, config: BridgeConfig, call: Any) -> None:
        self.api = api
        self.config = config
        self.address: str | None = None
        self._call = call
        self._stopped = asyncio.Event()
        self.task: asyncio.Task[None] = asyncio.create_task(self._run(), name=f"api:{api.name}")

    def _details(self) -> dict[str, Any]:
        return {
            self.kind: self.api.name,
            "type": self.api.type,
            "routes": ",".join(self.api.routes),
        }

    def _build(self) -> Any:
        if self.api.type == "http":
            from bridge.front.http_api import HttpApiServer

            return HttpApiServer(self.api, self._call, account_id=self.config.account_id)
        from bridge.front.tls import LocalCA
        from bridge.front.websocket_api import WebSocketApiServer

        return WebSocketApiServer(
            self.api,
            self._call,
            account_id=self.config.account_id,
            ca=LocalCA.in_state_dir(self.config.state_dir),
        )

    async def _run(self) -> None:
        delay = 1.0
        while not self._stopped.is_set():
            server = self._build()
            try:
                self.address = await server.start()
                telemetry.emit(self.started, address=self.address, **self._details())
                await self._stopped.wait()
                return
            except OSError as exc:
                telemetry.emit(
                    self.failed,
                    **{self.kind: self.api.name},
                    error=f"cannot listen on {self.api.host}:{self.api.port}: "
                    f"{exc.strerror or exc}",
                    retry_in=delay,
                    level=logging.ERROR,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopped.wait(), delay)
                delay = min(MAX_RESTART_DELAY, delay * 2)
            finally:
                await server.aclose()
                self.address = None

    async def stop(self) -> None:
        self._stopped.set()
        await asyncio.gather(self.task, return_exceptions=True)
        telemetry.emit(self.stopped, **{self.kind: self.api.name})


class BusRunner(ApiRunner):
    """One event bus and its rules (the enabled ``eventbridge`` mappings naming it)."""

    started, failed, stopped = telemetry.BUS_STARTED, telemetry.BUS_FAILED, telemetry.BUS_STOPPED
    kind = "bus"

    def __init__(self, bus: EventBusConfig, config: BridgeConfig, call: Any) -> None:
        self.rules = bus_rules(bus, config)
        super().__init__(bus, config, call)

    def _details(self) -> dict[str, Any]:
        return {self.kind: self.api.name, "rules": ",".join(r.name for r in self.rules) or "-"}

    def _build(self) -> Any:
        from bridge.front.event_bus import EventBusServer

        return EventBusServer(
            self.api,
            self.rules,
            state_dir=self.config.state_dir,
            region=self.config.region,
            account_id=self.config.account_id,
        )


def bus_rules(bus: EventBusConfig, config: BridgeConfig) -> list[Any]:
    """The rules of ``bus``: its ``eventbridge`` mappings, patterns compiled."""
    from bridge.filtering import compile_pattern
    from bridge.front.event_bus import Rule
    from connectors.eventbridge.config import pattern_text

    rules = []
    for m in config.mappings:
        source = m.source
        if (
            source.get("type") != "eventbridge"
            or source.get("event_bus_name", "default") != bus.name
        ):
            continue
        pattern = source["event_pattern"]
        rules.append(
            Rule(
                name=m.name,
                pattern=compile_pattern(pattern, dialect="eventbridge"),
                text=pattern_text(pattern),
                enabled=m.enabled,
            )
        )
    return rules


def rule_identity(rules: list[Any]) -> list[tuple[str, str, bool]]:
    return [(r.name, r.text, r.enabled) for r in rules]


def wants_trust(config: BridgeConfig | None) -> bool:
    """Whether functions must trust the bridge's certificate authority: a WebSocket API's
    handlers call back ``https://{domainName}/{stage}``."""
    return config is not None and any(api.type == "websocket" for api in config.apis)
