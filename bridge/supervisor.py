"""Runs every mapping's pipeline, restarts failing sources, and applies new configs.

``Supervisor.apply(config)`` makes the running set match ``config``: start-up is
``apply`` on an empty supervisor, and a reload is ``apply`` with the edited file, so
the two share one path. Mappings whose options, source or function did not change
keep running untouched; changed ones are drained and restarted; removed ones drained.
``apply`` is transactional: what the new config needs (checkpoint store, targets) is
built before anything running is touched; if that fails it raises ``ConfigError`` and
the old configuration keeps running as it was.

APIs (``apis:``, :mod:`bridge.front`) run beside the mappings: each listens on its port
(retried with the same backoff when it cannot bind) and invokes functions through the
targets of the running configuration, so an edited function needs no API restart; an
edited API is stopped and started again.

A mapping whose source fails (``SourceError``, unreachable target at start) or that
crashed on a bug (logged with its traceback) is restarted from its checkpoint with
exponential backoff (1 s doubling to 60 s, reset after a minute of health). A
``ConfigError`` from a connector (bad bucket, missing folder...) stops that mapping
until the config changes. ``aclose()`` drains every pipeline (in-flight batches finish
within ``shutdown_timeout_seconds``) and stops the targets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from bridge import telemetry
from bridge.checkpoints import SqliteCheckpointStore, StateLock
from bridge.config import BridgeConfig, MappingConfig
from bridge.connector import ConnectorContext, PartitionControl
from bridge.destinations import build_destination
from bridge.errors import BridgeError, CheckpointError, ConfigError, TargetUnavailable
from bridge.events import function_arn
from bridge.front.config import EventBusConfig
from bridge.metrics import MappingView, stats_for
from bridge.pipeline import CLOSE_TIMEOUT, Pipeline, PipelineOptions
from bridge.registry import connector_class
from bridge.retry import RetryPolicy
from bridge.targets import Target, build_target
from bridge.windows import Windows

__all__ = ["Supervisor"]

log = logging.getLogger(__name__)

MAX_RESTART_DELAY = 60.0


class _TargetHandle:
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


class _MappingRunner:
    def __init__(
        self,
        mapping: MappingConfig,
        config: BridgeConfig,
        target: _TargetHandle,
        store: SqliteCheckpointStore,
    ) -> None:
        self.mapping = mapping
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
        delay = 1.0
        while not self._stopped.is_set():
            started = time.monotonic()
            try:
                self._pipeline = self._build()
                await self.target.ensure_started()
                if self._stopped.is_set():
                    return
                self.state = "running"
                telemetry.emit(telemetry.MAPPING_STARTED, mapping=self.mapping.name)
                await self._pipeline.run()
                return
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


class _ApiRunner:
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


class _BusRunner(_ApiRunner):
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


def _rule_identity(rules: list[Any]) -> list[tuple[str, str, bool]]:
    return [(r.name, r.text, r.enabled) for r in rules]


def _wants_trust(config: BridgeConfig | None) -> bool:
    """Whether functions must trust the bridge's certificate authority: a WebSocket API's
    handlers call back ``https://{domainName}/{stage}``."""
    return config is not None and any(api.type == "websocket" for api in config.apis)


PAUSED_FILE = "paused.json"


def _read_paused(state_dir: str) -> set[str]:
    """The mappings paused in ``state_dir`` (a missing or unreadable file: none, said)."""
    path = Path(state_dir) / PAUSED_FILE
    try:
        names = json.loads(path.read_text())
    except FileNotFoundError:
        return set()
    except (OSError, ValueError) as exc:
        log.error("%s cannot be read (%s); no mapping is paused", path, exc)
        return set()
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        log.error("%s is not a list of mapping names; no mapping is paused", path)
        return set()
    return set(names)


def _write_paused(state_dir: str, names: set[str]) -> None:
    """Replace ``paused.json`` atomically (and durably)."""
    path = Path(state_dir) / PAUSED_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as f:
        json.dump(sorted(names), f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Supervisor:
    def __init__(self) -> None:
        self._config: BridgeConfig | None = None
        self._store: SqliteCheckpointStore | None = None
        self._targets: dict[str, _TargetHandle] = {}
        self._runners: dict[str, _MappingRunner] = {}
        self._apis: dict[str, _ApiRunner] = {}
        self._buses: dict[str, _BusRunner] = {}
        self._applying = asyncio.Lock()
        self._lock: StateLock | None = None  # on the state directory in use
        self._new_lock: StateLock | None = None
        self._paused: set[str] = set()  # mappings paused by ``pause()``, kept in state_dir

    @property
    def running(self) -> list[str]:
        return sorted(self._runners)

    @property
    def buses(self) -> dict[str, str | None]:
        """Each running event bus's address (``host:port``; None while it cannot listen)."""
        return {name: runner.address for name, runner in sorted(self._buses.items())}

    @property
    def apis(self) -> dict[str, str | None]:
        """Each running API's address (``host:port``; None while it cannot listen)."""
        return {name: runner.address for name, runner in sorted(self._apis.items())}

    async def call(self, function: str, payload: bytes, *, request_id: str) -> bytes:
        """Invoke ``function`` of the running configuration once, synchronously (the front
        door's :data:`~bridge.front.invoke.Call`); raises as ``Target.invoke`` does. A
        function whose every instance is busy at its reserved concurrency is throttled at
        once, as Lambda throttles a synchronous invocation (``TargetUnavailable`` with
        ``throttled``), instead of waiting."""
        handle = self._targets.get(function)
        if handle is None:
            raise TargetUnavailable(f"function {function!r} is not configured")
        await handle.ensure_started()
        if getattr(handle.target, "saturated", False):
            raise TargetUnavailable(
                f"function {function!r}: every instance is busy (its reserved concurrency)",
                throttled=True,
            )
        return await handle.target.invoke(payload, request_id=request_id, timeout=None)

    async def apply(self, config: BridgeConfig) -> None:
        """Start, stop and restart mappings and targets so that ``config`` runs.

        Transactional: the new checkpoint store and targets are built first; if any of
        that fails, the error is raised and the running configuration is left exactly
        as it was. Only then are changed mappings stopped and the new ones started."""
        async with self._applying:
            old = self._config
            settings = ("state_dir", "region", "account_id", "retry_backoff")
            restart_all = old is not None and any(
                getattr(old, k) != getattr(config, k) for k in settings
            )
            old_functions = {} if old is None or restart_all else old.functions
            changed_functions = {
                name
                for name in set(old_functions) | set(config.functions)
                if old_functions.get(name) != config.functions.get(name)
            }
            if old is not None and _wants_trust(old) != _wants_trust(config):
                changed_functions |= set(config.functions)  # their environment changes
            store, targets = self._prepare(config, restart_all, changed_functions)
            # nothing below raises: swap
            if restart_all:
                await self._stop_all()
            self._paused = _read_paused(config.state_dir)
            wanted = {
                m.name: m for m in config.mappings if m.enabled and m.name not in self._paused
            }
            to_stop = [
                name
                for name, runner in self._runners.items()
                if wanted.get(name) != runner.mapping
                or runner.mapping.function in changed_functions
            ]
            await asyncio.gather(*(self._runners.pop(name).stop() for name in to_stop))
            wanted_apis = {api.name: api for api in config.apis}
            apis_to_stop = [
                name
                for name, runner in self._apis.items()
                if wanted_apis.get(name) != runner.api or restart_all
            ]
            await asyncio.gather(*(self._apis.pop(name).stop() for name in apis_to_stop))
            wanted_buses = {bus.name: bus for bus in config.event_buses}
            buses_to_stop = [
                name
                for name, runner in self._buses.items()
                if wanted_buses.get(name) != runner.api
                or _rule_identity(runner.rules) != _rule_identity(bus_rules(runner.api, config))
                or restart_all
            ]
            await asyncio.gather(*(self._buses.pop(name).stop() for name in buses_to_stop))
            for name in [n for n in self._targets if n in changed_functions]:
                await self._targets.pop(name).aclose()
            if store is not None:
                self._store = store
            if self._new_lock is not None:
                if self._lock is not None:
                    self._lock.release()
                self._lock, self._new_lock = self._new_lock, None
            self._targets.update(targets)
            self._config = config
            assert self._store is not None
            for name, mapping in wanted.items():
                if name not in self._runners:
                    self._runners[name] = _MappingRunner(
                        mapping, config, self._targets[mapping.function], self._store
                    )
            for name, api in wanted_apis.items():
                if name not in self._apis:
                    self._apis[name] = _ApiRunner(api, config, self.call)
            for name, bus in wanted_buses.items():
                if name not in self._buses:
                    self._buses[name] = _BusRunner(bus, config, self.call)
            telemetry.emit(
                telemetry.CONFIG_APPLIED,
                mappings=len(wanted),
                restarted=len([n for n in to_stop if n in wanted]),
                stopped=len([n for n in to_stop if n not in wanted]),
                apis=len(wanted_apis),
            )

    # ------------------------------------------------------------ operations

    def mapping_views(self) -> list[MappingView]:
        """Every mapping of the running configuration, in file order, as ``/metrics`` and
        ``status`` show it (disabled and paused ones too)."""
        if self._config is None:
            return []
        views = []
        for m in self._config.mappings:
            runner = self._runners.get(m.name)
            if runner is not None:
                views.append(runner.view())
                continue
            state = "paused" if m.name in self._paused else "disabled"
            views.append(MappingView(m.name, m.source["type"], m.function, state))
        return views

    def readiness(self) -> list[str]:
        """What keeps the bridge from being ready: each enabled mapping not running, each
        API or event bus not listening. Empty when ready (paused and disabled mappings do
        not count: they are meant to be still)."""
        if self._config is None:
            return ["no configuration applied yet"]
        problems = [
            f"mapping {name}: {runner.state}"
            + (f" ({runner.error})" if runner.error and runner.state != "running" else "")
            for name, runner in self._runners.items()
            if runner.state != "running"
        ]
        for kind, addresses in (("api", self.apis), ("event bus", self.buses)):
            problems += [f"{kind} {n}: not listening" for n, a in addresses.items() if a is None]
        return problems

    async def pause(self, name: str) -> bool:
        """Stop mapping ``name`` (drained as on shutdown: what settled is committed) and
        keep it stopped, across reloads and restarts (``paused.json`` in the state dir),
        until ``resume``. False if it was already paused; ``KeyError`` for an unknown
        mapping; ``OSError`` if the state cannot be written (then nothing changed)."""
        async with self._applying:
            self._known(name)
            if name in self._paused:
                return False
            assert self._config is not None
            _write_paused(self._config.state_dir, self._paused | {name})
            self._paused.add(name)
            runner = self._runners.pop(name, None)
            if runner is not None:
                await runner.stop()
            telemetry.emit(telemetry.MAPPING_PAUSED, mapping=name)
            return True

    async def resume(self, name: str) -> bool:
        """Undo ``pause``: the mapping starts again from its checkpoint (if it is
        enabled). False if it was not paused; ``KeyError``/``OSError`` as ``pause``."""
        async with self._applying:
            mapping = self._known(name)
            if name not in self._paused:
                return False
            assert self._config is not None and self._store is not None
            _write_paused(self._config.state_dir, self._paused - {name})
            self._paused.discard(name)
            if mapping.enabled and name not in self._runners:
                self._runners[name] = _MappingRunner(
                    mapping, self._config, self._targets[mapping.function], self._store
                )
            telemetry.emit(telemetry.MAPPING_RESUMED, mapping=name)
            return True

    def _known(self, name: str) -> MappingConfig:
        for m in self._config.mappings if self._config else []:
            if m.name == name:
                return m
        raise KeyError(name)

    def _prepare(
        self, config: BridgeConfig, restart_all: bool, changed_functions: set[str]
    ) -> tuple[SqliteCheckpointStore | None, dict[str, _TargetHandle]]:
        """Build what ``config`` needs that is not running yet: the checkpoint store (when
        there is none or ``state_dir`` changed) and the targets of new or changed
        functions. Raises ``ConfigError`` (after undoing what it built) when one cannot be
        built, naming it."""
        store: SqliteCheckpointStore | None = None
        lock: StateLock | None = None
        if self._store is None or restart_all:
            path = Path(config.state_dir) / "checkpoints.sqlite3"
            if self._lock is None or self._lock.path.parent != Path(config.state_dir):
                lock = StateLock(config.state_dir)
            try:
                if lock is not None:
                    lock.acquire()
                store = SqliteCheckpointStore(path)
            except CheckpointError as exc:
                if lock is not None:
                    lock.release()
                raise ConfigError(str(exc)) from exc
        if _wants_trust(config):
            from bridge.front.tls import LocalCA

            ca = LocalCA.in_state_dir(config.state_dir)
            try:
                ca.ensure()
            except OSError as exc:
                if store is not None:
                    store.close()
                if lock is not None:
                    lock.release()
                raise ConfigError(
                    f"cannot make the certificate authority in {ca.folder}: {exc}"
                ) from exc
        targets: dict[str, _TargetHandle] = {}
        try:
            for name, function in config.functions.items():
                if name in changed_functions or name not in self._targets or restart_all:
                    try:
                        targets[name] = _TargetHandle(build_target(name, function, config))
                    except Exception as exc:
                        raise ConfigError(f"functions.{name}: {exc}") from exc
        except BaseException:
            if store is not None:
                store.close()
            if lock is not None:
                lock.release()
            raise
        if lock is not None:
            self._new_lock = lock
        return store, targets

    async def _stop_all(self) -> None:
        runners, self._runners = list(self._runners.values()), {}
        apis, self._apis = [*self._apis.values(), *self._buses.values()], {}
        self._buses = {}
        await asyncio.gather(*(r.stop() for r in runners), *(a.stop() for a in apis))
        targets, self._targets = list(self._targets.values()), {}
        for handle in targets:
            await handle.aclose()
        if self._store is not None:
            self._store.close()
            self._store = None
        self._config = None

    async def aclose(self) -> None:
        """Drain every pipeline, stop every target, let go of the state directory."""
        async with self._applying:
            await self._stop_all()
            if self._lock is not None:
                self._lock.release()
                self._lock = None
