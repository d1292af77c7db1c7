"""Every log event and metric name trigger-bridge emits, in one place.

``emit(EVENT, **fields)`` logs one structured line on the ``bridge`` logger and
counts it; ``counters()`` returns the counts (per event and mapping), which
``status`` and the benchmarks read. Nothing else logs ad-hoc strings for events.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

__all__ = ["counters", "emit"]

log = logging.getLogger("bridge")

STARTED = "bridge.started"
STOPPING = "bridge.stopping"
STOPPED = "bridge.stopped"
NOTHING_TO_RUN = "config.nothing_to_run"
CONFIG_REJECTED = "config.rejected"
CONFIG_APPLIED = "config.applied"
CONFIG_WATCH_FAILED = "config.watch_failed"
MAPPING_STARTED = "mapping.started"
MAPPING_STOPPED = "mapping.stopped"
MAPPING_FAILED = "mapping.failed"
MAPPING_CRASHED = "mapping.crashed"
MAPPING_PAUSED = "mapping.paused"
MAPPING_RESUMED = "mapping.resumed"
MAPPING_PROGRESS = "mapping.progress"
WINDOW_CLOSED = "window.closed"
WINDOW_FINAL_FAILED = "window.final_failed"
ADMIN_STARTED = "admin.started"
ADMIN_FAILED = "admin.failed"
CONFIG_RELOAD_ASKED = "config.reload_asked"
SOURCE_UNAVAILABLE = "source.unavailable"
SOURCE_RECOVERED = "source.recovered"
RECORD_FILTERED = "record.filtered"
RECORD_INVALID = "record.invalid"
BATCH_DELIVERED = "batch.delivered"
BATCH_FAILED = "batch.failed"
BATCH_PARTIAL = "batch.partial_failure"
RESPONSE_INVALID = "batch.invalid_response"
BATCH_BISECTED = "batch.bisected"
TARGET_UNAVAILABLE = "target.unavailable"
DEAD_LETTERED = "records.dead_lettered"
DESTINATION_FAILED = "destination.failed"
COMMITTED = "records.committed"
COMMIT_FAILED = "commit.failed"
LEASE_TAKEN = "lease.taken"  # a shared partition (a shard) this bridge reads now
LEASE_LOST = "lease.lost"  # ... and no longer: taken over, or renewals failed
API_STARTED = "api.started"
API_STOPPED = "api.stopped"
API_FAILED = "api.failed"
API_REQUEST = "api.request"
API_FUNCTION_ERROR = "api.function_error"
API_INVALID_RESPONSE = "api.invalid_response"
API_TIMEOUT = "api.timeout"
API_UNAVAILABLE = "api.unavailable"
API_THROTTLED = "api.throttled"
BUS_STARTED = "bus.started"
BUS_STOPPED = "bus.stopped"
BUS_FAILED = "bus.failed"
BUS_PUT = "bus.put"
WS_CONNECTED = "ws.connected"
WS_DISCONNECTED = "ws.disconnected"
WS_MESSAGE = "ws.message"

_counts: Counter[tuple[str, str]] = Counter()
_QUIET = {COMMITTED, BATCH_DELIVERED, RECORD_FILTERED, API_REQUEST, WS_MESSAGE, BUS_PUT}


def emit(event: str, *, level: int | None = None, **fields: Any) -> None:
    """Count ``event`` and log it with its fields (``key=value``)."""
    owner = fields.get("mapping", fields.get("api", ""))
    _counts[(event, str(owner))] += int(fields.get("records", 1) or 1)
    if level is None:
        level = logging.DEBUG if event in _QUIET else logging.INFO
    if log.isEnabledFor(level):
        detail = " ".join(f"{k}={v}" for k, v in fields.items())
        log.log(
            level,
            "%s %s" if detail else "%s%s",
            event,
            detail,
            extra={"event": event, "fields": fields},
        )


def counters() -> dict[tuple[str, str], int]:
    """Counts so far, keyed by (event, mapping or API); records-weighted where a count was
    given."""
    return dict(_counts)
