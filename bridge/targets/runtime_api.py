"""The ``runtime`` target: the bridge serves the AWS Lambda Runtime API itself.

Function processes (``python -m awslambdaric app.handler``, any custom runtime) poll
``GET /2018-06-01/runtime/invocation/next`` and post their answers back, exactly as inside
Lambda. ``invoke()`` queues an invocation and waits for a runtime to take and answer it.

Three parts, each small:

- ``InvocationRegistry`` (in :mod:`bridge.targets._runtime_invocations`): the queue of
  invocations, the runtimes waiting for one, the invocations a runtime holds, their
  deadlines. No HTTP, no processes.
- :class:`RuntimeApi`: the four Runtime API routes on top of the registry, as seen by one
  caller (a worker slot the bridge runs, or any runtime the user runs).
- :class:`RuntimeApiTarget`: the :class:`~bridge.targets.base.Target`. Given a
  ``command``, it runs up to ``concurrency`` instances (worker slots,
  :mod:`bridge.targets._runtime_procs`), each with an endpoint of its own, so the bridge
  knows which process holds which invocation and can kill it on a timeout, as Lambda
  resets a sandbox. Without one, it serves the API on ``address`` for runtimes the user
  runs.

Instances come and go as on Lambda: ``min_instances`` are started with the target and
kept (provisioned concurrency; 0 scales to zero); an invocation that finds no instance
idle and no cold start under way for it starts one more (a cold start), up to
``concurrency`` (the function's reserved concurrency); beyond that, invocations wait for
an instance (``saturated`` tells callers that would rather throttle, like the API front
door). An instance with no work for ``idle_timeout`` seconds is stopped, down to
``min_instances``; it is first taken out of the runtimes waiting for work, so no
invocation can reach an instance that is being stopped. Every invocation an instance
runs is logged on the function's logger as Lambda logs it: ``START``, the function's
own output, ``END`` and ``REPORT`` (duration, billed duration, memory size, max memory
used, and the init duration on a cold start). An instance over ``memory_size`` MB is
ended with ``Runtime.OutOfMemory`` and replaced.

Who may call an endpoint is decided by a gate (:mod:`bridge.targets._runtime_callers`):
only the processes of its worker, or, on the shared address, callers with the key or of
the bridge's own user. Everyone else gets 403 and no invocation.

Failures have Lambda's error types and documents: ``Sandbox.Timedout``, ``Runtime.ExitError``,
the runtime's own init error type (``Runtime.ImportModuleError``...) for the invocation that
met a failed cold start, ``Function.ResponseSizeTooLarge`` for an answer over 6 MB.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from bridge.errors import TargetRejected, TargetUnavailable
from bridge.targets._runtime_callers import (
    Gate,
    SharedGate,
    WorkerGate,
    callers_known,
    new_key,
)
from bridge.targets._runtime_instances import PlatformLog, default_handler, layer_environment
from bridge.targets._runtime_invocations import (
    Invocation,
    InvocationRegistry,
    exit_error,
    out_of_memory_error,
)
from bridge.targets._runtime_procs import INIT_TIMEOUT, Worker, sandbox_environment
from bridge.targets._runtime_routes import Endpoint, RuntimeApi
from bridge.targets.base import MAX_REQUEST_SIZE, MAX_RESPONSE_SIZE

__all__ = ["MAX_REQUEST_SIZE", "MAX_RESPONSE_SIZE", "RuntimeApiTarget"]

_log = logging.getLogger(__name__)

_TERMINATE_GRACE = 2.0  # seconds between SIGTERM and SIGKILL on aclose()


def _inherited(inherit: bool | Sequence[str]) -> dict[str, str]:
    """What a function process gets of the bridge's environment: PATH and LANG (so its
    command and locale resolve as in the bridge's shell), and what ``inherit`` names (all
    of it when True). Credentials and the bridge's settings stay the bridge's."""
    if inherit is True:
        return dict(os.environ)
    names = ["PATH", "LANG", *(inherit or [])]
    return {k: os.environ[k] for k in names if k in os.environ}


class RuntimeApiTarget:
    """Delivers invocations through a Runtime API the bridge serves (``runtime`` target).

    Without ``command`` it only serves the API on :attr:`address`; runtimes started by the
    user poll it, and an invocation no runtime takes within its timeout fails with
    ``TargetUnavailable``. Processes of the bridge's own user may use :attr:`address`
    (unless ``require_key``), anyone else needs :attr:`keyed_address`, which is written to
    ``address_file`` (mode 0600) when one is given. With ``command`` nothing is served on a
    shared address: it runs ``concurrency`` processes of it in
    ``cwd``, each serving one invocation at a time, with an environment of its own as in
    Lambda (Lambda's variables, PATH and LANG, ``env`` on top; the bridge's environment only
    as far as ``inherit_env`` says; the Runtime API address and log stream stay the
    bridge's), and restarts them when they exit. Each of these polls an endpoint of its own
    (its ``AWS_LAMBDA_RUNTIME_API``) that serves nobody but that process and what it
    started. See :class:`~bridge.targets.base.Target` for the contract.
    """

    def __init__(
        self,
        name: str,
        *,
        command: Sequence[str] | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        inherit_env: bool | Sequence[str] = False,
        concurrency: int = 1,
        timeout: float = 3.0,
        memory_size: int = 128,
        host: str = "127.0.0.1",
        port: int = 0,
        region: str = "us-east-1",
        account_id: str = "000000000000",
        handler: str | None = None,
        init_timeout: float = INIT_TIMEOUT,
        require_key: bool = False,
        address_file: str | os.PathLike[str] | None = None,
        min_instances: int | None = None,
        idle_timeout: float = 300.0,
        layers: Sequence[str] = (),
        enforce_memory: bool = True,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency}")
        if min_instances is not None and not 0 <= min_instances <= concurrency:
            raise ValueError(f"min_instances must be 0 to concurrency, not {min_instances}")
        if idle_timeout <= 0:
            raise ValueError(f"idle_timeout must be positive, not {idle_timeout}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout}")
        if command is not None and not command:
            raise ValueError("command must not be empty")
        if command is not None and port:
            raise ValueError("port applies only without command (each process gets its own)")
        self.name = name
        self.function_arn = f"arn:aws:lambda:{region}:{account_id}:function:{name}"
        self._command = list(command) if command is not None else None
        self._cwd = cwd
        self._concurrency = concurrency
        # None: every instance from the start, none stopped when idle (a fixed pool)
        self._min_instances = concurrency if min_instances is None else min_instances
        self._idle_timeout = idle_timeout
        self._memory_size = memory_size
        self._enforce_memory = enforce_memory
        self._timeout = timeout
        self._host = host
        self._port = port
        self._init_timeout = init_timeout
        self._key = new_key()
        self._require_key = require_key
        self._address_file = Path(address_file) if address_file is not None else None
        base = {
            **_inherited(inherit_env),
            **sandbox_environment(
                function_name=name,
                memory_size=memory_size,
                region=region,
                handler=handler or default_handler(command),
                task_root=os.path.abspath(cwd or os.getcwd()),
            ),
        }
        self._environment = {**base, **layer_environment(layers, base), **(env or {})}
        self._platform = PlatformLog(logging.getLogger(f"bridge.function.{name}"), memory_size)
        self._registry = self._new_registry()
        self._endpoints: list[Endpoint] = []
        self._workers: list[Worker] = []
        self._endpoint_of: dict[Worker, Endpoint] = {}
        self._next_index = 0
        self._reaper: asyncio.Task[None] | None = None

        self._address: str | None = None
        self._state = "new"
        self._closing: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        """The ``host:port`` the shared Runtime API endpoint is bound to (after ``start()``;
        only without ``command``)."""
        if self._address is None:
            raise RuntimeError(f"runtime target {self.name!r} serves no shared address")
        return self._address

    @property
    def keyed_address(self) -> str:
        """``host:port/<key>``: the shared address as any caller may use it."""
        return f"{self.address}/{self._key}"

    @property
    def pids(self) -> list[int]:
        """The pids of the function processes running now."""
        return [w.pid for w in self._workers if w.pid is not None]

    @property
    def instances(self) -> int:
        """Instances running or starting now."""
        return len(self._workers)

    @property
    def saturated(self) -> bool:
        """The function has every instance it may have, and each runs an invocation: an
        invocation now would wait for one to finish (Lambda would throttle it). An instance
        starting, or between two polls, is not busy."""
        return (
            self._command is not None
            and len(self._workers) >= self._concurrency
            and self._registry.busy_instances() >= len(self._workers)
        )

    async def start(self) -> None:
        """Serve the API and start the processes; ``TargetUnavailable`` (naming the cause:
        a missing ``cwd``, a port in use...) if either fails. A failed start leaves nothing
        running and may be tried again."""
        if self._state == "started":
            return
        if self._state == "closed":
            raise TargetUnavailable(f"runtime target {self.name!r} is closed")
        self._registry = self._new_registry()
        self._endpoints, self._workers, self._endpoint_of = [], [], {}
        self._state = "started"
        try:
            if self._command is None:
                gate = SharedGate(self.name, self._key, require_key=self._require_key)
                self._address = await self._serve(None, self._port, gate, self._key)
                self._publish_address()
            else:
                if not callers_known():
                    _log.warning(
                        "runtime target %r: this system does not tell which process calls "
                        "the Runtime API; any local process that finds a worker's port can "
                        "take invocations",
                        self.name,
                    )
                self._check_command()
                for _ in range(self._min_instances):
                    await self._start_worker()
                self._reaper = asyncio.create_task(self._reap_idle(), name=f"{self.name}:idle")
        except OSError as exc:
            await self._shut_down()
            self._state, self._address = "new", None
            raise TargetUnavailable(f"cannot start runtime target {self.name!r}: {exc}") from exc

    async def invoke(self, payload: bytes, *, request_id: str, timeout: float | None) -> bytes:
        """Run the function on ``payload``; see :class:`~bridge.targets.base.Target`.

        ``timeout`` (else the function's) counts from when a runtime takes the invocation.
        Cancelling the call withdraws a queued invocation and discards a later answer.
        Raises ``ValueError`` if an invocation with ``request_id`` is still pending.
        """
        if self._state != "started":
            raise TargetUnavailable(f"runtime target {self.name!r} is not running")
        if len(payload) > MAX_REQUEST_SIZE:
            raise TargetRejected(
                f"Request must be smaller than {MAX_REQUEST_SIZE} bytes for the Invoke operation",
                status=413,
            )
        limit = self._timeout if timeout is None else timeout
        if not self._registry.runtime_waiting():
            for worker in self._workers:
                if worker.resting:  # after a crash or a failed start: a fresh try, now
                    self._registry.forgive(worker)
                    worker.wake()
        invocation = self._registry.submit(payload, request_id=request_id, timeout=limit)
        try:
            if self._command is None:
                await self._wait_for_runtime(invocation, limit)
            elif not invocation.left_queue.is_set():
                await self._scale_out()
            return await asyncio.shield(invocation.outcome)
        finally:
            self._registry.abandon(invocation)

    async def aclose(self) -> None:
        """Fail pending invocations, stop the processes (SIGTERM, then SIGKILL), stop serving.

        Idempotent; a second call waits for the first. Cancelling the caller does not stop
        the shutdown half-way.
        """
        if self._closing is None:
            self._state = "closed"
            self._closing = asyncio.create_task(self._shut_down())
        await asyncio.shield(self._closing)

    async def _shut_down(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
            self._reaper = None
        self._registry.close(f"runtime target {self.name!r} is closed")
        await asyncio.gather(*(worker.stop(_TERMINATE_GRACE) for worker in self._workers))
        for endpoint in self._endpoints:
            await endpoint.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _serve(self, caller: Worker | None, port: int, gate: Gate, key: str | None) -> str:
        api = RuntimeApi(self._registry, caller, function_arn=self.function_arn, gate=gate, key=key)
        endpoint = Endpoint(api)
        self._endpoints.append(endpoint)
        if caller is not None:
            self._endpoint_of[caller] = endpoint
        return await endpoint.start(self._host, port)

    def _publish_address(self) -> None:
        """Tell where the shared address is; the keyed one goes only to ``address_file``,
        created readable by the owner alone (raises ``OSError``)."""
        where = "the keyed address is not written anywhere"
        if self._address_file is not None:
            self._address_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._address_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.fchmod(fd, 0o600)  # an older file may have had other modes
                os.write(fd, f"{self.keyed_address}\n".encode())
            finally:
                os.close(fd)
            where = f"from anywhere else use the address in {self._address_file}"
        who = "nobody without the key" if self._require_key else "processes of this user"
        _log.info(
            "runtime.listening function=%s AWS_LAMBDA_RUNTIME_API=%s for %s; %s",
            self.name,
            self.address,
            who,
            where,
        )

    def _new_registry(self) -> InvocationRegistry:
        return InvocationRegistry(
            self._on_timeout, on_start=self._platform.started, on_finish=self._platform.finished
        )

    def _check_command(self) -> None:
        """Fail ``start()`` early (``OSError``) for what no instance could ever start with:
        a missing ``cwd`` or command (instances may start much later, on demand)."""
        assert self._command is not None
        if self._cwd is not None and not os.path.isdir(self._cwd):
            raise FileNotFoundError(2, "No such file or directory", self._cwd)
        program = self._command[0]
        if os.sep in program:
            where = os.path.join(self._cwd or ".", program)
            if not os.access(where, os.X_OK):
                raise FileNotFoundError(2, "No such file or directory (or not executable)", where)
        elif shutil.which(program, path=self._environment.get("PATH")) is None:
            raise FileNotFoundError(2, "No such program on the function's PATH", program)

    async def _start_worker(self) -> Worker:
        """Start one more instance (a cold start); raises ``OSError`` if it cannot."""
        assert self._command is not None
        index, self._next_index = self._next_index, self._next_index + 1
        worker = Worker(
            index,
            function_name=self.name,
            command=self._command,
            cwd=self._cwd,
            environment=self._environment,
            on_exit=self._on_worker_exit,
            on_spawn_error=self._on_worker_spawn_error,
            on_init_timeout=self._on_init_timeout,
            init_timeout=self._init_timeout,
            memory_limit=self._memory_size if self._enforce_memory else None,
            busy=self._registry.holds,
        )
        self._workers.append(worker)
        try:
            gate = WorkerGate(f"{self.name} worker {index}", worker)
            worker.runtime_api = await self._serve(worker, 0, gate, None)
            await worker.start()
        except BaseException:
            await self._retire(worker)
            raise
        return worker

    async def _scale_out(self) -> None:
        """An invocation found no instance waiting: start one more unless every queued
        invocation has an instance that will take it (one starting, or a warm one between
        two polls, about to ask again), up to ``concurrency``."""
        free = len(self._workers) - self._registry.busy_instances()
        if self._registry.queued <= free or len(self._workers) >= self._concurrency:
            return
        try:
            await self._start_worker()
        except OSError as exc:
            message = f"cannot start an instance of function {self.name!r}: {exc}"
            self._registry.fail_next(None, lambda _: TargetUnavailable(message))

    async def _retire(self, worker: Worker) -> None:
        """Stop ``worker`` and forget it (its endpoint closed)."""
        if worker in self._workers:
            self._workers.remove(worker)
        await worker.stop(_TERMINATE_GRACE)
        endpoint = self._endpoint_of.pop(worker, None)
        if endpoint is not None:
            self._endpoints.remove(endpoint)
            await endpoint.aclose()

    async def _reap_idle(self) -> None:
        """Stop instances idle for ``idle_timeout`` seconds, down to ``min_instances``."""
        period = max(0.05, min(self._idle_timeout / 4, 5.0))
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            idle = sorted(
                (
                    w
                    for w in self._workers
                    if w.polled and now - w.last_active >= self._idle_timeout
                ),
                key=lambda w: w.last_active,
            )
            for worker in idle:
                if len(self._workers) <= self._min_instances:
                    break
                if self._registry.withdraw(worker):  # no invocation can reach it now
                    _log.info(
                        "function %s: instance %d idle for %.0fs, stopped (%d left)",
                        self.name,
                        worker.index,
                        now - worker.last_active,
                        len(self._workers) - 1,
                    )
                    await self._retire(worker)

    async def _wait_for_runtime(self, invocation: Invocation, limit: float) -> None:
        try:
            async with asyncio.timeout(limit):
                await invocation.left_queue.wait()
        except TimeoutError:
            raise TargetUnavailable(
                f"no runtime polled {self._address} for an invocation within {limit:g}s"
            ) from None

    def _on_timeout(self, invocation: Invocation) -> None:
        if invocation.holder is not None:
            invocation.holder.reset_sandbox()
        else:
            _log.warning(
                "invocation %s timed out in a runtime the bridge does not run; not reset",
                invocation.request_id,
            )

    def _on_worker_exit(self, worker: Worker, returncode: int) -> None:
        make_error = out_of_memory_error if worker.out_of_memory else exit_error(returncode)
        self._registry.fail_held(worker, make_error)
        if not worker.polled and not worker.init_error_reported:  # died during init
            self._registry.fail_next(worker, make_error)

    def _on_init_timeout(self, worker: Worker) -> None:
        message = (
            f"function {self.name!r}: its start-up did not finish within "
            f"{self._init_timeout:g}s (Runtime.InitError); the process is replaced"
        )
        self._registry.fail_next(worker, lambda _: TargetUnavailable(message))

    def _on_worker_spawn_error(self, worker: Worker, error: OSError) -> None:
        message = f"cannot start a process of function {self.name!r}: {error}"
        self._registry.fail_next(worker, lambda _: TargetUnavailable(message))
