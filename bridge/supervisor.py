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

Each mapping, API and bus runs in its runner (:mod:`bridge.runners`), restarted with
backoff when it fails. ``aclose()`` drains every pipeline (in-flight batches finish
within ``shutdown_timeout_seconds``) and stops the targets. ``pause``/``resume`` stop
and start one mapping on demand (kept across restarts in ``<state_dir>/paused.json``);
``mapping_views`` and ``readiness`` are what ``/status``, ``/metrics`` and ``/readyz``
show.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
from pathlib import Path

from bridge import telemetry
from bridge.checkpoints import CheckpointStore, StateLock
from bridge.config import BridgeConfig, FunctionConfig, MappingConfig
from bridge.errors import CheckpointError, ConfigError, TargetUnavailable
from bridge.metrics import MappingView
from bridge.placement import DAEMON, Placement, place
from bridge.runners import (
    ApiRunner,
    BusRunner,
    MappingRunner,
    TargetHandle,
    bus_rules,
    rule_identity,
    wants_trust,
)
from bridge.state import open_store
from bridge.targets import build_target
from bridge.workers import APPLY_GRACE, WorkerPool

__all__ = ["Supervisor", "freeze_heap", "read_paused"]

log = logging.getLogger(__name__)

PAUSED_FILE = "paused.json"


def read_paused(state_dir: str) -> set[str]:
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


def freeze_heap() -> None:
    """Called by a process that runs mappings (the daemon, a worker) after each apply.
    What the apply built (modules, config, clients, pipelines) lives until the next one:
    keep the cyclic GC from scanning it again and again (about 40 % of its time under
    load, and pauses in the latency's tail). It is unfrozen first, so that what the
    previous apply left behind is collected once."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class Supervisor:
    """Runs a configuration; see the module's docstring.

    ``worker_processes``: run the mappings in worker processes as ``workers:`` and
    :mod:`bridge.placement` say (the daemon); else all in this process (a worker
    itself, and the engine's tests). ``shared_state``: the state directory is the
    daemon's, locked by it (a worker)."""

    def __init__(self, *, worker_processes: bool = False, shared_state: bool = False) -> None:
        self._worker_processes = worker_processes
        self._shared_state = shared_state
        self._placement = Placement()
        self._pool: WorkerPool | None = None
        self._functions: dict[str, FunctionConfig] = {}  # as this process runs them
        self.members: dict[str, int] = {}  # a worker's: which member of a parallel mapping
        self._config: BridgeConfig | None = None
        self._store: CheckpointStore | None = None
        self._targets: dict[str, TargetHandle] = {}
        self._runners: dict[str, MappingRunner] = {}
        self._apis: dict[str, ApiRunner] = {}
        self._buses: dict[str, BusRunner] = {}
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
            settings = ("state_dir", "state", "region", "account_id", "retry_backoff")
            restart_all = old is not None and any(
                getattr(old, k) != getattr(config, k) for k in settings
            )
            placement = place(config, None if self._worker_processes else 0)
            functions = placement.functions_of(DAEMON, config)  # with the daemon's shares
            old_functions = {} if old is None or restart_all else self._functions
            changed_functions = {
                name
                for name in set(old_functions) | set(functions)
                if old_functions.get(name) != functions.get(name)
            }
            if old is not None and wants_trust(old) != wants_trust(config):
                changed_functions |= set(config.functions)  # their environment changes
            store, targets = self._prepare(config, functions, restart_all, changed_functions)
            # nothing below raises: swap
            if restart_all:
                await self._stop_all()
            self._paused = read_paused(config.state_dir)
            wanted = {
                m.name: m
                for m in config.mappings
                if m.enabled and m.name not in self._paused and placement.in_daemon(m.name)
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
                or rule_identity(runner.rules) != rule_identity(bus_rules(runner.api, config))
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
            self._config, self._functions, self._placement = config, functions, placement
            await self._place_on_workers(config, placement)
            assert self._store is not None
            for name, mapping in wanted.items():
                if name not in self._runners:
                    self._start_runner(mapping)
            for name, api in wanted_apis.items():
                if name not in self._apis:
                    self._apis[name] = ApiRunner(api, config, self.call)
            for name, bus in wanted_buses.items():
                if name not in self._buses:
                    self._buses[name] = BusRunner(bus, config, self.call)
            telemetry.emit(
                telemetry.CONFIG_APPLIED,
                mappings=len(wanted),  # in this process; the workers say theirs
                restarted=len([n for n in to_stop if n in wanted]),
                stopped=len([n for n in to_stop if n not in wanted]),
                apis=len(wanted_apis),
                workers=placement.workers,
            )

    async def _place_on_workers(self, config: BridgeConfig, placement: Placement) -> None:
        """Start, tell or stop the worker processes so they run ``placement``'s part."""
        timeout = config.shutdown_timeout_seconds + APPLY_GRACE
        if placement.workers and self._pool is None:
            self._pool = WorkerPool()
        if self._pool is not None:
            await self._pool.apply(config, placement, timeout=timeout)
            if not placement.workers:
                await self._pool.aclose(timeout)
                self._pool = None

    # ------------------------------------------------------------ operations

    @property
    def worker_pids(self) -> dict[int, int | None]:
        """Each worker process's pid (None while it is being started again)."""
        return self._pool.pids if self._pool is not None else {}

    async def refresh(self) -> None:
        """Bring what the worker processes report up to date (before ``mapping_views``
        is read for ``/metrics``, ``/status`` or the progress lines)."""
        if self._pool is not None:
            await self._pool.refresh()

    def mapping_views(self) -> list[MappingView]:
        """Every mapping of the running configuration, in file order, as ``/metrics`` and
        ``status`` show it (disabled and paused ones too; those of worker processes as
        they last reported, see ``refresh``)."""
        if self._config is None:
            return []
        views = []
        for m in self._config.mappings:
            runner = self._runners.get(m.name)
            if runner is not None:
                views.append(runner.view())
                continue
            state = "paused" if m.name in self._paused else "disabled"
            view = MappingView(m.name, m.source["type"], m.function, state)
            if m.enabled and state != "paused" and self._pool is not None:
                view = self._pool.view(view)
            views.append(view)
        return views

    def readiness(self) -> list[str]:
        """What keeps the bridge from being ready: each enabled mapping not running, each
        API or event bus not listening. Empty when ready (paused and disabled mappings do
        not count: they are meant to be still)."""
        if self._config is None:
            return ["no configuration applied yet"]
        problems = [
            f"mapping {v.name}: {v.state}"
            + (f" ({v.error})" if v.error and v.state != "running" else "")
            for v in self.mapping_views()
            if v.state not in ("running", "standby", "paused", "disabled")
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
            elif self._pool is not None:
                await self._pool.reapply(name)  # its workers read paused.json again
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
            if not self._placement.in_daemon(name):
                if self._pool is not None:
                    await self._pool.reapply(name)
            elif mapping.enabled and name not in self._runners:
                self._start_runner(mapping)
            telemetry.emit(telemetry.MAPPING_RESUMED, mapping=name)
            return True

    def _start_runner(self, mapping: MappingConfig) -> None:
        assert self._config is not None and self._store is not None
        self._runners[mapping.name] = MappingRunner(
            mapping,
            self._config,
            self._targets[mapping.function],
            self._store,
            member=self.members.get(mapping.name, 0),
        )

    def _known(self, name: str) -> MappingConfig:
        for m in self._config.mappings if self._config else []:
            if m.name == name:
                return m
        raise KeyError(name)

    def _prepare(
        self,
        config: BridgeConfig,
        functions: dict[str, FunctionConfig],
        restart_all: bool,
        changed_functions: set[str],
    ) -> tuple[CheckpointStore | None, dict[str, TargetHandle]]:
        """Build what ``config`` needs that is not running yet: the checkpoint store (when
        there is none or ``state_dir`` changed) and the targets of new or changed
        functions. Raises ``ConfigError`` (after undoing what it built) when one cannot be
        built, naming it."""
        store: CheckpointStore | None = None
        lock: StateLock | None = None
        if self._store is None or restart_all:
            same_dir = self._lock is not None and self._lock.path.parent == Path(config.state_dir)
            if not (self._shared_state or same_dir):
                lock = StateLock(config.state_dir)
            try:
                if lock is not None:
                    lock.acquire()
                store = open_store(config.state, state_dir=config.state_dir, region=config.region)
            except CheckpointError as exc:
                if lock is not None:
                    lock.release()
                raise ConfigError(str(exc)) from exc
        if wants_trust(config):
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
        targets: dict[str, TargetHandle] = {}
        try:
            for name, function in functions.items():
                if name in changed_functions or name not in self._targets or restart_all:
                    try:
                        targets[name] = TargetHandle(build_target(name, function, config))
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
        if self._pool is not None:
            assert self._config is not None
            await self._pool.aclose(self._config.shutdown_timeout_seconds + APPLY_GRACE)
            self._pool, self._placement = None, Placement()
        runners, self._runners = list(self._runners.values()), {}
        apis, self._apis = [*self._apis.values(), *self._buses.values()], {}
        self._buses = {}
        await asyncio.gather(*(r.stop() for r in runners), *(a.stop() for a in apis))
        targets, self._targets = list(self._targets.values()), {}
        for handle in targets:
            await handle.aclose()
        if self._store is not None:
            await self._store.aclose()
            self._store = None
        self._config = None

    async def aclose(self) -> None:
        """Drain every pipeline, stop every target, let go of the state directory."""
        async with self._applying:
            await self._stop_all()
            if self._lock is not None:
                self._lock.release()
                self._lock = None
