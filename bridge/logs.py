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
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


def setup_logging(level: int, fmt: str = "text") -> None:
    """Send logs at ``level`` and above to stderr in ``fmt`` (``text`` or ``json``),
    replacing the handler an earlier call set (so it may be called again, as tests do);
    handlers others installed (pytest's capture) are left alone."""
    global _handler
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = handler
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
