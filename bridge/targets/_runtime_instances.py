"""What the ``runtime`` host tells and enforces about function instances, as Lambda does:
the platform log lines of each invocation (:class:`PlatformLog`), the memory an instance
uses, the environment of layers. The target (``runtime_api``) and the workers
(``_runtime_procs``) call them.

Lambda's platform lines, written to the function's log around its own output::

    START RequestId: 8f50... Version: $LATEST
    END RequestId: 8f50...
    REPORT RequestId: 8f50...\tDuration: 12.34 ms\tBilled Duration: 13 ms\t
        Memory Size: 128 MB\tMax Memory Used: 41 MB\tInit Duration: 210.55 ms\t

(one line; fields separated by tabs, with a tab at the end).

``Init Duration`` only on the first invocation of an instance (a cold start); a timeout
adds ``Status: timeout``, a runtime that died ``Status: error\tError Type: ...``.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from bridge.errors import DeliveryError

if TYPE_CHECKING:  # at run time the invocations module imports this one (via the workers)
    from bridge.targets._runtime_invocations import Invocation

__all__ = [
    "PlatformLog",
    "default_handler",
    "end_line",
    "layer_environment",
    "memory_mb",
    "report_fields",
    "report_line",
    "start_line",
]

_PAGE_KB = 1024  # /proc/<pid>/status reports kB


def start_line(request_id: str) -> str:
    return f"START RequestId: {request_id} Version: $LATEST"


def end_line(request_id: str) -> str:
    return f"END RequestId: {request_id}"


def report_fields(
    *,
    duration_ms: float,
    memory_size: int,
    max_memory_used: int | None,
    init_duration_ms: float | None,
    status: str | None = None,
    error_type: str | None = None,
) -> dict[str, object]:
    """The REPORT line's values (also the JSON log's fields)."""
    fields: dict[str, object] = {
        "duration_ms": round(duration_ms, 2),
        "billed_duration_ms": max(1, math.ceil(duration_ms)),  # Lambda bills by the ms
        "memory_size_mb": memory_size,
        "max_memory_used_mb": max_memory_used,
    }
    if init_duration_ms is not None:
        fields["init_duration_ms"] = round(init_duration_ms, 2)
    if status is not None:
        fields["status"] = status
    if error_type is not None:
        fields["error_type"] = error_type
    return fields


def report_line(request_id: str, fields: Mapping[str, object]) -> str:
    parts = [
        f"REPORT RequestId: {request_id}",
        f"Duration: {fields['duration_ms']:.2f} ms",
        f"Billed Duration: {fields['billed_duration_ms']} ms",
        f"Memory Size: {fields['memory_size_mb']} MB",
    ]
    if fields.get("max_memory_used_mb") is not None:
        parts.append(f"Max Memory Used: {fields['max_memory_used_mb']} MB")
    if "init_duration_ms" in fields:
        parts.append(f"Init Duration: {fields['init_duration_ms']:.2f} ms")
    if "status" in fields:
        parts.append(f"Status: {fields['status']}")
    if "error_type" in fields:
        parts.append(f"Error Type: {fields['error_type']}")
    return "\t".join(parts) + "\t"


class PlatformLog:
    """Logs START, END and REPORT for each invocation an instance of the bridge's runs, on
    the function's logger at INFO (nothing is measured when that level is off); END and
    REPORT once the instance's output written so far was logged."""

    def __init__(self, logger: logging.Logger, memory_size: int) -> None:
        self._log = logger
        self._memory_size = memory_size

    def started(self, invocation: Invocation) -> None:
        if invocation.holder is not None and self._log.isEnabledFor(logging.INFO):
            self._log.info(
                start_line(invocation.request_id),
                extra={"platform": "start", "request_id": invocation.request_id},
            )

    def finished(self, invocation: Invocation, result: bytes | DeliveryError) -> None:
        worker = invocation.holder
        if worker is None:
            return
        if not self._log.isEnabledFor(logging.INFO):
            worker.take_init_duration()  # not reported: not for a later invocation either
            return
        status = error_type = None
        if isinstance(result, DeliveryError):
            kind = getattr(result, "error_type", "")
            if kind == "Sandbox.Timedout":
                status = "timeout"
            elif kind.startswith("Runtime.") and kind != "Runtime.HandlerNotFound":
                status, error_type = "error", kind
        fields = report_fields(
            duration_ms=(time.monotonic() - invocation.started) * 1000,
            memory_size=self._memory_size,
            max_memory_used=worker.max_memory_used(),
            init_duration_ms=worker.take_init_duration(),
            status=status,
            error_type=error_type,
        )
        request_id, log = invocation.request_id, self._log

        def log_end() -> None:
            log.info(end_line(request_id), extra={"platform": "end", "request_id": request_id})
            log.info(
                report_line(request_id, fields),
                extra={"platform": "report", "request_id": request_id, **fields},
            )

        worker.after_output(log_end)


def memory_mb(pid: int) -> tuple[int, int] | None:
    """(resident now, peak resident) of process ``pid`` in MB (1 MB = 2**20 bytes, rounded
    up as Lambda reports it); None when it is gone or this system has no /proc."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            text = f.read()
    except OSError:
        return None
    rss = hwm = 0
    for line in text.splitlines():
        if line.startswith(b"VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith(b"VmHWM:"):
            hwm = int(line.split()[1])
    return math.ceil(rss / _PAGE_KB), math.ceil(hwm / _PAGE_KB)


def layer_environment(layers: Sequence[str], environment: Mapping[str, str]) -> dict[str, str]:
    """The variables that make ``layers`` (folders laid out as Lambda layers: ``python/``,
    ``lib/``, ``bin/``, ``nodejs/node_modules``) available as Lambda makes ``/opt`` available:
    ``PYTHONPATH`` gets ``python`` and ``python/lib/pythonX.Y/site-packages``, ``PATH`` ``bin``,
    ``LD_LIBRARY_PATH`` ``lib``, ``NODE_PATH`` ``nodejs/node_modules``. Lambda extracts layers
    into one ``/opt`` in order, a later layer's files over an earlier one's: so a later
    layer comes first on each path. What ``environment`` already has on these variables
    stays after the layers (``env:`` of the function may still add to them)."""
    ordered = [os.path.abspath(layer) for layer in reversed(layers)]
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    paths = {
        "PYTHONPATH": [
            p
            for layer in ordered
            for p in (f"{layer}/python", f"{layer}/python/lib/{version}/site-packages")
        ],
        "PATH": [f"{layer}/bin" for layer in ordered],
        "LD_LIBRARY_PATH": [f"{layer}/lib" for layer in ordered],
        "NODE_PATH": [f"{layer}/nodejs/node_modules" for layer in ordered],
    }
    out: dict[str, str] = {}
    for name, entries in paths.items():
        existing = [e for e in (environment.get(name) or "").split(os.pathsep) if e]
        if entries:
            out[name] = os.pathsep.join([*entries, *existing])
    return out


def default_handler(command: Sequence[str] | None) -> str | None:
    """``_HANDLER`` from a command like ``python -m awslambdaric app.handler`` (the module
    path the runtime interface client is given), else None."""
    if not command:
        return None
    args = list(command)
    for i, arg in enumerate(args[:-1]):
        if arg == "-m" and args[i + 1] in ("awslambdaric",) and i + 2 < len(args):
            return args[i + 2]
    return None
