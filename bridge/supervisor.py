"""Runs every mapping's pipeline, restarts failing sources, and applies new configs.

``Supervisor.apply(config)`` makes the running set match ``config``: start-up is
``apply`` on an empty supervisor, and a reload is ``apply`` with the edited file, so
the two share one path. Mappings whose options, source or function did not change
keep running untouched; changed ones are drained and restarted; removed ones drained.

A mapping whose source fails (``SourceError``, unreachable target at start, any
unexpected error) is restarted with exponential backoff (1 s doubling to 60 s, reset
after a minute of health). A ``ConfigError`` from a connector (bad bucket, missing
folder...) stops that mapping until the config changes. ``aclose()`` drains every
pipeline (in-flight batches finish within ``shutdown_timeout_seconds``) and stops the
targets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from bridge import telemetry
from bridge.checkpoints import SqliteCheckpointStore
from bridge.config import BridgeConfig, MappingConfig
from bridge.connector import ConnectorContext, PartitionControl
from bridge.destinations import build_destination
from bridge.errors import ConfigError
from bridge.events import function_arn
from bridge.pipeline import Pipeline, PipelineOptions
from bridge.registry import connector_class
from bridge.retry import RetryPolicy
from bridge.targets import Target, build_target

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
        )
        connector = cls(source, context)
        defaults = cls.defaults

        def option(name: str, fallback: Any) -> Any:
            value = getattr(mapping, name)
            return value if value is not None else defaults.get(name, fallback)

        policy = RetryPolicy(
            maximum_retry_attempts=option("maximum_retry_attempts", -1),
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
        return Pipeline(
            mapping=mapping.name,
            connector=connector,
            target=self.target.target,
            destination=build_destination(uri, source=source, context=context),
            options=options,
            filters=mapping.filter_criteria.compile() if mapping.filter_criteria else None,
            function_arn=function_arn(name, config.region, config.account_id),
            partitions=partitions,
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
                telemetry.emit(telemetry.MAPPING_STARTED, mapping=self.mapping.name)
                await self._pipeline.run()
                return
            except ConfigError as exc:
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
                telemetry.emit(
                    telemetry.SOURCE_UNAVAILABLE,
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

    async def stop(self) -> None:
        self._stopped.set()
        if self._pipeline is not None:
            self._pipeline.stop()
        grace = self.config.shutdown_timeout_seconds + 10
        done, _ = await asyncio.wait({self.task}, timeout=grace)
        if not done:  # stuck in open(): nothing was read, nothing to lose
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        telemetry.emit(telemetry.MAPPING_STOPPED, mapping=self.mapping.name)


class Supervisor:
    def __init__(self) -> None:
        self._config: BridgeConfig | None = None
        self._store: SqliteCheckpointStore | None = None
        self._targets: dict[str, _TargetHandle] = {}
        self._runners: dict[str, _MappingRunner] = {}
        self._lock = asyncio.Lock()

    @property
    def running(self) -> list[str]:
        return sorted(self._runners)

    async def apply(self, config: BridgeConfig) -> None:
        """Start, stop and restart mappings and targets so that ``config`` runs."""
        async with self._lock:
            old = self._config
            settings = ("state_dir", "region", "account_id", "retry_backoff")
            if old is not None and any(getattr(old, k) != getattr(config, k) for k in settings):
                await self._stop_all()
                old = None
            old_functions = old.functions if old else {}
            changed_functions = {
                name
                for name in set(old_functions) | set(config.functions)
                if old_functions.get(name) != config.functions.get(name)
            }
            wanted = {m.name: m for m in config.mappings if m.enabled}
            to_stop = [
                name
                for name, runner in self._runners.items()
                if wanted.get(name) != runner.mapping
                or runner.mapping.function in changed_functions
            ]
            await asyncio.gather(*(self._runners.pop(name).stop() for name in to_stop))
            for name in changed_functions & set(self._targets):
                await self._targets.pop(name).aclose()
            if self._store is None:
                self._store = SqliteCheckpointStore(Path(config.state_dir) / "checkpoints.sqlite3")
            for name, function in config.functions.items():
                if name not in self._targets:
                    self._targets[name] = _TargetHandle(build_target(name, function, config))
            self._config = config
            for name, mapping in wanted.items():
                if name not in self._runners:
                    self._runners[name] = _MappingRunner(
                        mapping, config, self._targets[mapping.function], self._store
                    )
            telemetry.emit(
                telemetry.CONFIG_APPLIED,
                mappings=len(wanted),
                restarted=len([n for n in to_stop if n in wanted]),
                stopped=len([n for n in to_stop if n not in wanted]),
            )

    async def _stop_all(self) -> None:
        runners, self._runners = list(self._runners.values()), {}
        await asyncio.gather(*(r.stop() for r in runners))
        targets, self._targets = list(self._targets.values()), {}
        for handle in targets:
            await handle.aclose()
        if self._store is not None:
            self._store.close()
            self._store = None
        self._config = None

    async def aclose(self) -> None:
        """Drain every pipeline and stop every target."""
        async with self._lock:
            await self._stop_all()
