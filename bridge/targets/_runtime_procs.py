"""Function processes for the ``runtime`` target: start, log, restart, stop.

A :class:`Worker` is one sandbox slot. It runs one function process at a time (for example
``python -m awslambdaric app.handler``), pointed at the slot's own Runtime API endpoint, so
the bridge always knows which process holds which invocation. The worker forwards the
process's stdout and stderr line by line to the ``bridge.function.<name>`` logger (a
multi-line record, such as a traceback, as one log line each), reports every exit to its
owner, and starts a new process: at once after :meth:`Worker.reset_sandbox` (a timed-out
invocation), after an exponential backoff after a crash.

Start-up (Lambda's init phase) is watched: a process that neither polls for an invocation
nor reports an init error within ``init_timeout`` seconds (10, as Lambda) is reported to
the owner and replaced. A process that fails its start-up the same way as the one before
it (the same init error, or the same exit) is not logged again in full: its output is held
back and one line says it happened again; a new failure, or a start-up that succeeds,
shows the output as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import fcntl
import logging
import os
import signal
import termios
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bridge.targets._runtime_instances import memory_mb

_PR_SET_PDEATHSIG = 1
_prctl: Callable[..., int] | None
try:  # resolved in the parent: the child only makes the call
    _prctl = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL when the bridge dies, even by kill -9,
    so no function process outlives it."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


__all__ = ["Backoff", "Worker", "describe_exit", "sandbox_environment"]

_log = logging.getLogger(__name__)

_LINE_LIMIT = 1 << 20  # a longer log line is cut, not fatal


def sandbox_environment(
    *,
    function_name: str,
    memory_size: int,
    region: str,
    handler: str | None,
    task_root: str,
) -> dict[str, str]:
    """The variables Lambda defines in an execution environment (the documented list).

    Credentials, ``AWS_EXECUTION_ENV`` and ``LAMBDA_RUNTIME_DIR`` are left out: the bridge
    has no execution role and does not know which runtime the command is.
    ``AWS_LAMBDA_RUNTIME_API`` and ``AWS_LAMBDA_LOG_STREAM_NAME`` are per process and set by
    the :class:`Worker`.
    """
    env = {
        "AWS_LAMBDA_FUNCTION_NAME": function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_size),
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function_name}",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "LAMBDA_TASK_ROOT": task_root,
        "TZ": ":UTC",
    }
    if handler is not None:
        env["_HANDLER"] = handler
    return env


def describe_exit(returncode: int) -> str:
    """Lambda's wording of a runtime exit: ``exit status 1``, ``signal: killed``."""
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        name = signal.strsignal(-returncode) or f"signal {-returncode}"
    except ValueError:
        name = f"signal {-returncode}"
    return f"signal: {name.lower()}"


async def _ended(process: asyncio.subprocess.Process, timeout: float) -> bool:
    """Whether ``process`` and every process of its group ended within ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            await process.wait()
            while _group_alive(process.pid):  # noqa: ASYNC110 - no event tells us
                await asyncio.sleep(0.01)
    except TimeoutError:
        return False
    return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except PermissionError:  # a member we may not signal is still a member
        return True
    except ProcessLookupError:
        return False
    return True


def _tree_rss(pid: int) -> int:
    """MB resident of ``pid`` and its descendants (as far as ``/proc`` lists children)."""
    total, todo, seen = 0, [pid], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        used = memory_mb(current)
        if used is not None:
            total += used[0]
        try:
            with open(f"/proc/{current}/task/{current}/children") as f:
                todo.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            pass
    return total


class Backoff:
    """Restart delays after crashes: ``initial`` doubling up to ``cap`` seconds.

    A process that lived ``healthy_after`` seconds or more resets the sequence.
    """

    def __init__(
        self, *, initial: float = 0.2, cap: float = 10.0, healthy_after: float = 10.0
    ) -> None:
        self._initial = initial
        self._cap = cap
        self._healthy_after = healthy_after
        self._next = initial

    def next_delay(self, uptime: float) -> float:
        """The delay before restarting a process that crashed after ``uptime`` seconds."""
        if uptime >= self._healthy_after:
            self._next = self._initial
        delay = self._next
        self._next = min(self._next * 2, self._cap)
        return delay


ExitHook = Callable[["Worker", int], None]
SpawnErrorHook = Callable[["Worker", OSError], None]
InitTimeoutHook = Callable[["Worker"], None]

INIT_TIMEOUT = 10.0  # seconds: Lambda's limit on the init phase
MEMORY_CHECK_SECONDS = 0.1  # how often a busy or starting instance's memory is looked at
_OUTPUT_WAIT = 0.05  # at most this long for a process's output to be read before END


class Worker:
    """One sandbox slot: a function process, its logs and its restarts.

    ``environment`` is the complete environment but for the two per-process variables.
    ``on_exit(worker, returncode)`` is called after every exit that :meth:`stop` did not
    cause, before the restart; ``on_spawn_error(worker, error)`` when a restart could not
    start the command; ``on_init_timeout(worker)`` when a process's start-up took longer
    than ``init_timeout`` (the process is then replaced). ``polled`` and
    ``init_error_reported`` describe the current process; the Runtime API handlers tell
    them with :meth:`mark_polled` and :meth:`report_init_error`.

    With ``memory_limit`` (MB) the process (and what it started) is watched while it
    starts and while ``busy()`` says it runs an invocation: over the limit it is killed,
    :attr:`out_of_memory` is set for the exit that follows, and it is replaced at once.
    """

    def __init__(
        self,
        index: int,
        *,
        function_name: str,
        command: Sequence[str],
        cwd: str | None,
        environment: Mapping[str, str],
        on_exit: ExitHook,
        on_spawn_error: SpawnErrorHook,
        on_init_timeout: InitTimeoutHook | None = None,
        init_timeout: float = INIT_TIMEOUT,
        backoff: Backoff | None = None,
        memory_limit: int | None = None,
        busy: Callable[[Worker], bool] | None = None,
    ) -> None:
        self.index = index
        self.last_active = time.monotonic()  # last took or finished an invocation
        self.out_of_memory = False  # the current process was ended for its memory
        self.peak_memory = 0  # MB, the most the current process was seen using
        self._memory_limit = memory_limit
        self._busy = busy
        self._spawned_at = 0.0
        self._init_ms: float | None = None  # the current process's init, until reported
        self._pipes: list[tuple[int, asyncio.StreamReader]] = []
        self.function_name = function_name
        self.runtime_api = ""  # host:port of this slot's endpoint, set before start()
        self.polled = False
        self.init_error_reported = False
        self._init_error: str | None = None  # "<errorType>: <errorMessage>" of this process
        self._on_init_timeout = on_init_timeout
        self._init_timeout = init_timeout
        self._last_failure: str | None = None  # how the previous process failed its start
        self._repeats = 0
        self._holding = False  # hold this process's output back until it starts or fails
        self._held: list[tuple[int, str, dict[str, int]]] = []
        self._wake = asyncio.Event()
        self.resting = False  # waiting out a restart backoff
        self._command = list(command)
        self._cwd = cwd
        self._environment = dict(environment)
        self._on_exit = on_exit
        self._on_spawn_error = on_spawn_error
        self._backoff = backoff or Backoff()
        self._function_log = logging.getLogger(f"bridge.function.{function_name}")
        self._process: asyncio.subprocess.Process | None = None
        self._pumps: set[asyncio.Task[None]] = set()
        self._supervisor: asyncio.Task[None] | None = None
        self._reset_requested = False
        self._stopping = False
        self._watcher: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        """The pid of the running process, if there is one."""
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    def mark_polled(self) -> None:
        """The process asked for an invocation: its start-up succeeded."""
        if not self.polled:
            self.polled = True
            self.last_active = time.monotonic()
            self._init_ms = (self.last_active - self._spawned_at) * 1000
            self._last_failure, self._repeats = None, 0
            self._release_output()

    def take_init_duration(self) -> float | None:
        """The current process's init time in ms, once: for its first invocation's REPORT
        (a cold start); None afterwards."""
        init, self._init_ms = self._init_ms, None
        return init

    def max_memory_used(self) -> int | None:
        """MB: the peak resident memory of the current process (and what the watch saw of
        its children); None when unknown."""
        pid = self.pid
        used = memory_mb(pid) if pid is not None else None
        if used is None:
            return self.peak_memory or None
        return max(used[1], self.peak_memory)

    def after_output(self, callback: Callable[[], Any]) -> None:
        """Call ``callback`` once what the process wrote so far has been logged (at most
        ``_OUTPUT_WAIT`` seconds later): END and REPORT come after the function's output."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _OUTPUT_WAIT

        def check() -> None:
            if self._output_pending() and loop.time() < deadline:
                loop.call_later(0.001, check)
            else:
                callback()

        check()

    def _output_pending(self) -> bool:
        for fd, stream in self._pipes:
            if getattr(stream, "_buffer", b""):  # read from the pipe, not yet logged
                return True
            try:
                waiting = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
            except OSError:
                continue
            if int.from_bytes(waiting, "little"):
                return True
        return False

    def report_init_error(self, description: str) -> None:
        """The process reported a failed start-up (``"<errorType>: <errorMessage>"``)."""
        self.init_error_reported = True
        self._init_error = description

    async def start(self) -> None:
        """Start the first process and its supervision; raises ``OSError`` if it cannot run."""
        await self._spawn()
        self._supervisor = asyncio.create_task(self._supervise(), name=f"worker-{self.index}")
        if self._memory_limit is not None and memory_mb(os.getpid()) is not None:
            self._watcher = asyncio.create_task(self._watch_memory(self._memory_limit))

    def reset_sandbox(self) -> None:
        """Kill the process now (SIGKILL) and start a fresh one without backoff."""
        if self._process is not None and self._process.returncode is None:
            _log.warning(
                "instance %d: resetting function process %d", self.index, self._process.pid
            )
            self._reset_requested = True
            self._signal(signal.SIGKILL)

    async def stop(self, grace: float) -> None:
        """Stop for good: SIGTERM, SIGKILL after ``grace`` seconds. Idempotent."""
        self._stopping = True
        for task in (self._supervisor, self._watcher):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        process = self._process
        if process is not None:
            self._signal(signal.SIGTERM)  # the whole group: wrappers and what they started
            if not await _ended(process, grace):
                _log.warning("function process %d ignored SIGTERM, killing it", process.pid)
                self._signal(signal.SIGKILL)
                await _ended(process, 1.0)
        await self._drain_logs()

    async def _spawn(self) -> None:
        env = {
            **self._environment,
            "AWS_LAMBDA_RUNTIME_API": self.runtime_api,
            "AWS_LAMBDA_LOG_STREAM_NAME": (
                time.strftime("%Y/%m/%d", time.gmtime()) + f"/[$LATEST]{uuid.uuid4().hex}"
            ),
        }
        self.polled = False
        self.init_error_reported = False
        self._init_error = None
        self._init_ms = None
        self.out_of_memory = False
        self.peak_memory = 0
        self._spawned_at = time.monotonic()
        self._reset_requested = False
        self._holding = self._last_failure is not None  # it failed before: wait and see
        self._held = []
        # A session of its own: the whole group can be signalled, wrappers and all.
        process = await asyncio.create_subprocess_exec(
            *self._command,
            cwd=self._cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            limit=_LINE_LIMIT,
        )
        self._process = process
        assert process.stdout is not None and process.stderr is not None  # PIPE above
        self._pipes = []
        transport: Any = getattr(process, "_transport", None)
        for fd, stream in ((1, process.stdout), (2, process.stderr)):
            with contextlib.suppress(AttributeError, OSError, ValueError):
                pipe = transport.get_pipe_transport(fd).get_extra_info("pipe")
                self._pipes.append((pipe.fileno(), stream))
        for stream, level in ((process.stdout, logging.INFO), (process.stderr, logging.WARNING)):
            pump = asyncio.create_task(self._pump(stream, level, process.pid))
            self._pumps.add(pump)
            pump.add_done_callback(self._pumps.discard)
        _log.info("instance %d started function process %d", self.index, process.pid)

    async def _supervise(self) -> None:
        try:
            await self._keep_running()
        except Exception:
            _log.exception("instance %d stopped supervising its process", self.index)

    async def _keep_running(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            process = self._process
            if process is None:
                try:
                    await self._spawn()
                except OSError as exc:
                    _log.error("instance %d cannot start %s: %s", self.index, self._command, exc)
                    self._on_spawn_error(self, exc)
                    await self._rest(self._backoff.next_delay(0.0))
                continue
            started = loop.time()
            exited = asyncio.ensure_future(process.wait())
            try:
                await self._watch_start_up(exited)
                returncode = await exited
            finally:
                exited.cancel()
            await self._drain_logs()
            self._process = None
            self._on_exit(self, returncode)
            if self._reset_requested and self.polled:
                continue
            delay = (
                0.0 if self._reset_requested else self._backoff.next_delay(loop.time() - started)
            )
            if self.polled:
                _log.warning(
                    "function %s: process %d exited (%s); restarting in %.1fs",
                    self.function_name,
                    process.pid,
                    describe_exit(returncode),
                    delay,
                )
            else:
                self._start_up_failed(self._init_error or describe_exit(returncode), delay)
            await self._rest(delay)

    async def _rest(self, delay: float) -> None:
        """Wait ``delay`` before the next start, or less if :meth:`wake` is called."""
        self._wake.clear()
        self.resting = True
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
        finally:
            self.resting = False

    def wake(self) -> None:
        """An invocation waits: start the next process now instead of after the backoff
        (a fault that is gone is noticed by the next invocation, not minutes later)."""
        self._wake.set()

    async def _watch_memory(self, limit: int) -> None:
        """Kill the process when it (with its children) uses more than ``limit`` MB."""
        while True:
            await asyncio.sleep(MEMORY_CHECK_SECONDS)
            process = self._process
            if process is None or process.returncode is not None or self.out_of_memory:
                continue
            if self.polled and self._busy is not None and not self._busy(self):
                continue  # idle: it allocates nothing
            used = _tree_rss(process.pid)
            self.peak_memory = max(self.peak_memory, used)
            if used > limit:
                _log.warning(
                    "function %s: process %d uses %d MB, over its memory size of %d MB: "
                    "ended (Runtime.OutOfMemory)",
                    self.function_name,
                    process.pid,
                    used,
                    limit,
                )
                self.out_of_memory = True
                self._reset_requested = True
                self._signal(signal.SIGKILL)

    async def _watch_start_up(self, exited: asyncio.Future[int]) -> None:
        """Give the process ``init_timeout`` seconds to poll or report an init error; then
        tell the owner and replace it."""
        done, _ = await asyncio.wait({exited}, timeout=self._init_timeout)
        if done or self.polled or self.init_error_reported or self._stopping:
            return
        self.report_init_error(
            f"Runtime.InitError: the start-up did not finish within {self._init_timeout:g}s"
        )
        if self._on_init_timeout is not None:
            self._on_init_timeout(self)
        self._reset_requested = True
        self._signal(signal.SIGKILL)

    def _start_up_failed(self, how: str, delay: float) -> None:
        """Log a failed start-up: in full the first time, in one line when it failed the
        same way as the previous process."""
        if how == self._last_failure:
            self._repeats += 1
            self._held = []
            _log.warning(
                "function %s: start-up failed again (%s; %d times in a row); restarting in %.1fs",
                self.function_name,
                how,
                self._repeats + 1,
                delay,
            )
            return
        self._release_output()
        self._last_failure, self._repeats = how, 0
        _log.error(
            "function %s: start-up failed (%s); restarting in %.1fs",
            self.function_name,
            how,
            delay,
        )

    def _signal(self, sig: signal.Signals) -> None:
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, sig)

    async def _pump(self, stream: asyncio.StreamReader, level: int, pid: int) -> None:
        extra = {"function_worker": self.index, "function_pid": pid}
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line over the limit: asyncio drops it
                self._log_line(level, f"[log line over {_LINE_LIMIT} bytes dropped]", extra)
                continue
            if not raw:
                return
            # awslambdaric ends the lines of one error record with "\r": each its own line
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
                self._log_line(level, line, extra)

    def _log_line(self, level: int, line: str, extra: dict[str, int]) -> None:
        if self._holding:
            self._held.append((level, line, extra))
        else:
            self._function_log.log(level, "%s", line, extra=extra)

    def _release_output(self) -> None:
        """Log what was held back, and stop holding."""
        held, self._held, self._holding = self._held, [], False
        for level, line, extra in held:
            self._function_log.log(level, "%s", line, extra=extra)

    async def _drain_logs(self) -> None:
        """Wait for the log pumps to reach end of file (cancelled after a second)."""
        pumps = set(self._pumps)
        if not pumps:
            return
        _, pending = await asyncio.wait(pumps, timeout=1.0)
        for task in pending:  # a grandchild still holds the pipe open
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
