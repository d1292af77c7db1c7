"""Repeated warnings of a chatty library, thinned out.

A client library that cannot reach its server may log the same error many times a second
(aiokafka: about 80 lines a second while a broker is down). ``throttle_repeats(name)``
puts one ``RepeatFilter`` on the logger ``name`` and every logger under it. Of the
records at WARNING and above that share a logger, a level and a message template (the
format string before its arguments), the first passes; after it at most one every
``interval`` seconds, which says how many were held back since the one before::

    Unable connect to node with id 1: ... (212 more like this suppressed)

Records below WARNING pass untouched; so does everything of other loggers. The bridge's
own lines (``bridge``, ``connectors``) are never throttled: a source says itself, once,
when it goes down and when it is back (``source.unavailable``, ``source.recovered``).

A logging filter acts only on records logged on the logger it is attached to (not on
those propagated from below), hence one filter on each logger of the library. Loggers the
library creates later (a module imported later) are covered when ``throttle_repeats`` is
called again; it is idempotent and cheap, so callers call it whenever they start a client.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["REPEAT_INTERVAL", "RepeatFilter", "throttle_repeats"]

REPEAT_INTERVAL = 30.0  # seconds between two lines of one template
_MAX_TEMPLATES = 1000  # a library formatting its own messages must not grow this forever

_filters: dict[str, RepeatFilter] = {}
_lock = threading.Lock()


class RepeatFilter(logging.Filter):
    """Lets the first record of a (logger, level, template) through, then at most one per
    ``interval`` seconds, with the count of those held back appended to its message."""

    def __init__(
        self, interval: float = REPEAT_INTERVAL, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.interval = interval
        self._clock = clock
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}  # last passed, held
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        with self._lock:
            last = self._seen.get(key)
            if last is not None and now - last[0] < self.interval:
                self._seen[key] = (last[0], last[1] + 1)
                return False
            if last is None and len(self._seen) >= _MAX_TEMPLATES:
                self._forget_old(now)
            self._seen[key] = (now, 0)
        held = last[1] if last is not None else 0
        if held:
            record.msg = f"{record.getMessage()} ({held} more like this suppressed)"
            record.args = ()
        return True

    def _forget_old(self, now: float) -> None:
        for key, (passed, _) in list(self._seen.items()):
            if now - passed >= self.interval:
                del self._seen[key]
        if len(self._seen) >= _MAX_TEMPLATES:  # all recent: start over rather than grow
            self._seen.clear()

    def reset(self) -> None:
        """Forget every template seen: the next record of each passes."""
        with self._lock:
            self._seen.clear()


def throttle_repeats(name: str) -> RepeatFilter:
    """Throttle repeated warnings of logger ``name`` and every logger under it that exists
    now; return the filter (one per ``name``, shared by its loggers)."""
    with _lock:
        filt = _filters.get(name)
        if filt is None:
            filt = _filters[name] = RepeatFilter()
        prefix = name + "."
        names = [n for n in list(logging.root.manager.loggerDict) if n.startswith(prefix)]
        for logger_name in [name, *names]:
            # a PlaceHolder (a name only seen as a parent so far) becomes its logger here,
            # the very object the library gets when it creates it later
            logger = logging.getLogger(logger_name)
            if filt not in logger.filters:
                logger.addFilter(filt)
    return filt
