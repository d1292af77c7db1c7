"""Log output: ``text`` lines or ``json`` objects, one per line, on stderr.

Structured events (:func:`bridge.telemetry.emit`) carry their name and fields on the log
record (``record.event``, ``record.fields``): the text format prints them as
``event key=value ...``, the JSON format as ``{"time", "level", "logger", "event", ...fields}``.
Other log lines (a library's, a traceback) become ``{"time", "level", "logger",
"message"}`` (plus ``"exception"``) in JSON. Lines a function prints are events too
(``function.output`` with ``function`` and ``line``), so they stay one line each.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

__all__ = ["JsonFormatter", "setup_logging"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_handler: logging.Handler | None = None
FUNCTION_LOGGER = "bridge.function."  # + the function's name: what a function printed
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "event",
    "fields",
    "worker",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record; values that JSON cannot hold are given as strings."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
        }
        event = getattr(record, "event", None)
        if event is not None:
            doc["event"] = event
            for key, value in getattr(record, "fields", {}).items():
                doc.setdefault(key, value)
        else:
            doc["message"] = record.getMessage()
            if record.name.startswith(FUNCTION_LOGGER):
                doc["function"] = record.name[len(FUNCTION_LOGGER) :]
            for key, value in record.__dict__.items():  # extra={...} of the call
                if key not in _STANDARD and not key.startswith("_"):
                    doc.setdefault(key, value)
        worker = getattr(record, "worker", None)
        if worker is not None:
            doc["worker"] = worker
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of each record (so a replaced
    stream, as under pytest's capture, is followed rather than kept after it closed)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def setup_logging(level: int, fmt: str = "text", *, worker: int | None = None) -> None:
    """Send logs at ``level`` and above to stderr in ``fmt`` (``text`` or ``json``),
    replacing the handler an earlier call set (so it may be called again, as tests do);
    handlers others installed (pytest's capture) are left alone. In a worker process
    (:mod:`bridge.worker`) every line names the worker (``worker`` in JSON)."""
    global _handler
    handler = _StderrHandler()
    text = TEXT_FORMAT
    if worker is not None:
        text = TEXT_FORMAT.replace("%(name)s", f"[worker {worker}] %(name)s")

        def label(record: logging.LogRecord) -> bool:
            record.worker = worker
            return True

        handler.addFilter(label)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(text))
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = handler
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("watchfiles", "httpx", "httpcore"):  # a line per request/poll at INFO
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
