"""What each mapping did, counted where it happens, read by ``/metrics`` and ``status``.

The engine keeps plain numbers (an integer add per chunk read and per invocation; no lock,
no label lookup on the hot path) in one :class:`MappingStats` per mapping name, which lives
as long as the process, across restarts and reloads of the mapping (so counters only grow,
as Prometheus expects). :class:`Collector` turns them, and what the running supervisor
knows at scrape time (state, records held, lag), into Prometheus metric families.

Metric names (all labelled ``mapping``; lag also ``partition`` where it is per partition):

=============================================== =========================================
``trigger_bridge_records_read_total``           records read from the source
``trigger_bridge_records_filtered_total``       dropped by ``filter_criteria``
``trigger_bridge_records_delivered_total``      in invocations that succeeded
``trigger_bridge_records_failed_total``         in invocations that failed (each attempt)
``trigger_bridge_records_dead_lettered_total``  written to the on-failure destination
                                                (label ``condition``: AWS's, e.g.
                                                ``RetryAttemptsExhausted``)
``trigger_bridge_invocations_total``            invocations of the function
``trigger_bridge_function_errors_total``        invocations that returned a function error
``trigger_bridge_throttles_total``              invocations the target throttled (429)
``trigger_bridge_retries_total``                invocations that were a retry
``trigger_bridge_batch_size``                   histogram of records per invocation
``trigger_bridge_invocation_duration_seconds``  histogram of invocation round trips
``trigger_bridge_records_in_flight``            read and not yet committed
``trigger_bridge_offset_lag``                   Kafka: AWS's ``OffsetLag``, per partition
``trigger_bridge_iterator_age_seconds``         streams: AWS's ``IteratorAge`` (age of the
                                                last record of the last invocation)
``trigger_bridge_oldest_record_age_seconds``    age of the oldest record in flight (for
                                                SQS: of the oldest message in flight)
``trigger_bridge_pending_changes``              ``s3``/``local_dir``: changes seen and
                                                not yet delivered
``trigger_bridge_mapping_state``                1 for the mapping's current state
                                                (label ``state``)
``trigger_bridge_last_delivery_timestamp_seconds`` when an invocation last succeeded
=============================================== =========================================

APIs add ``trigger_bridge_api_requests_total`` and ``trigger_bridge_api_errors_total``
(label ``api``), counted from their log events.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector as _PromCollector

__all__ = [
    "Collector",
    "Histogram",
    "MappingStats",
    "StatsSource",
    "all_stats",
    "publish",
    "stats_for",
]

PREFIX = "trigger_bridge"
SIZE_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10000)
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
STATES = (
    "starting",
    "running",
    "standby",  # shared state: another bridge runs it (bridge.leases.MappingLease)
    "restarting",
    "failed",
    "paused",
    "disabled",
    "stopped",
)


@dataclass(slots=True)
class Histogram:
    """Counts per upper bound (cumulative only when exported), and the sum."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def add(self, other: Histogram) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.total += other.total

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
        return out


@dataclass(slots=True)
class MappingStats:
    """Running totals of one mapping; the engine adds, readers only read."""

    read: int = 0
    filtered: int = 0
    delivered: int = 0
    failed: int = 0
    dead_lettered: Counter[str] = field(default_factory=Counter)
    invocations: int = 0
    function_errors: int = 0
    throttles: int = 0
    retries: int = 0
    batch_size: Histogram = field(default_factory=lambda: Histogram(SIZE_BUCKETS))
    duration: Histogram = field(default_factory=lambda: Histogram(DURATION_BUCKETS))
    last_delivery: float = 0.0  # epoch seconds; 0: never
    iterator_age: float | None = None  # seconds, at the last invocation

    def invoked(self, records: int, seconds: float) -> None:
        self.invocations += 1
        self.batch_size.observe(records)
        self.duration.observe(seconds)

    def add(self, other: MappingStats) -> None:
        """Add ``other``'s totals (another process's, for a mapping run in several)."""
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.dead_lettered.update(other.dead_lettered)
        self.batch_size.add(other.batch_size)
        self.duration.add(other.duration)
        if other.last_delivery > self.last_delivery:
            self.last_delivery = other.last_delivery
            self.iterator_age = other.iterator_age

    def delivered_now(self, records: int, newest_arrived: float) -> None:
        now = time.time()
        self.delivered += records
        self.last_delivery = now
        self.iterator_age = max(0.0, now - newest_arrived)


_COUNTS: tuple[str, ...] = ("read", "filtered", "delivered", "failed", "invocations")
_COUNTS += ("function_errors", "throttles", "retries")
_stats: dict[str, MappingStats] = {}


def stats_for(mapping: str) -> MappingStats:
    """The process-wide stats of ``mapping`` (made on first use)."""
    stats = _stats.get(mapping)
    if stats is None:
        stats = _stats[mapping] = MappingStats()
    return stats


def all_stats() -> dict[str, MappingStats]:
    """Every mapping's stats in this process (a worker's answer to the daemon)."""
    return dict(_stats)


def publish(mapping: str, stats: MappingStats) -> None:
    """Make ``stats`` the process's stats of ``mapping`` (the daemon, for a mapping its
    workers run: their totals added up)."""
    _stats[mapping] = stats


@dataclass(frozen=True, slots=True)
class MappingView:
    """What the supervisor knows of one mapping at scrape time."""

    name: str
    source: str
    function: str
    state: str
    in_flight: int = 0
    oldest_age: float | None = None
    offset_lag: dict[str, int] = field(default_factory=dict)
    pending: int | None = None
    error: str | None = None  # the last failure, and when (epoch seconds)
    error_at: float | None = None


class StatsSource(Protocol):
    def mapping_views(self) -> list[MappingView]: ...


class Collector(_PromCollector):
    """A Prometheus collector over the mappings of a running supervisor."""

    def __init__(self, source: StatsSource) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        from bridge import telemetry

        views = self._source.mapping_views()
        yield from self._counters(views)
        yield from self._histograms(views)
        yield from self._gauges(views)
        yield from _api_counters(telemetry.counters())

    def _counters(self, views: list[MappingView]) -> Iterator[Metric]:
        fields = (
            ("records_read", "read", "Records read from the source."),
            ("records_filtered", "filtered", "Records dropped by filter_criteria."),
            ("records_delivered", "delivered", "Records in invocations that succeeded."),
            ("records_failed", "failed", "Records in invocations that failed, per attempt."),
            ("invocations", "invocations", "Invocations of the function."),
            ("function_errors", "function_errors", "Invocations that returned an error."),
            ("throttles", "throttles", "Invocations the target throttled."),
            ("retries", "retries", "Invocations that were retries."),
        )
        for name, attr, doc in fields:
            family = CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=["mapping"])
            for v in views:
                family.add_metric([v.name], getattr(stats_for(v.name), attr))
            yield family
        dead = CounterMetricFamily(
            f"{PREFIX}_records_dead_lettered",
            "Records written to the on-failure destination.",
            labels=["mapping", "condition"],
        )
        for v in views:
            for condition, n in sorted(stats_for(v.name).dead_lettered.items()):
                dead.add_metric([v.name, condition], n)
        yield dead

    def _histograms(self, views: list[MappingView]) -> Iterator[Metric]:
        for name, attr, doc in (
            ("batch_size", "batch_size", "Records per invocation."),
            ("invocation_duration_seconds", "duration", "Invocation round trips."),
        ):
            family = HistogramMetricFamily(f"{PREFIX}_{name}", doc, labels=["mapping"])
            for v in views:
                h: Histogram = getattr(stats_for(v.name), attr)
                family.add_metric([v.name], h.buckets(), h.total)
            yield family

    def _gauges(self, views: list[MappingView]) -> Iterator[Metric]:
        def gauge(name: str, doc: str, labels: Iterable[str] = ("mapping",)) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=list(labels))

        in_flight = gauge("records_in_flight", "Records read and not yet committed.")
        oldest = gauge("oldest_record_age_seconds", "Age of the oldest record in flight.")
        iterator = gauge("iterator_age_seconds", "Age of the last record of the last invocation.")
        lag = GaugeMetricFamily(
            f"{PREFIX}_offset_lag",
            "Kafka: records in the partition after the last committed offset.",
            labels=["mapping", "partition"],
        )
        pending = gauge("pending_changes", "Object changes seen and not yet delivered.")
        state = gauge("mapping_state", "1 for the mapping's state.", ("mapping", "state"))
        last = gauge("last_delivery_timestamp_seconds", "When an invocation last succeeded.")
        for v in views:
            stats = stats_for(v.name)
            in_flight.add_metric([v.name], v.in_flight)
            oldest.add_metric([v.name], v.oldest_age or 0.0)
            if stats.iterator_age is not None:
                iterator.add_metric([v.name], stats.iterator_age)
            for partition, n in sorted(v.offset_lag.items()):
                lag.add_metric([v.name, partition], n)
            if v.pending is not None:
                pending.add_metric([v.name], v.pending)
            for s in STATES:
                state.add_metric([v.name, s], 1.0 if s == v.state else 0.0)
            if stats.last_delivery:
                last.add_metric([v.name], stats.last_delivery)
        yield from (in_flight, oldest, iterator, lag, pending, state, last)


def _api_counters(counts: dict[tuple[str, str], int]) -> Iterator[Metric]:
    from bridge import telemetry

    requests = CounterMetricFamily(
        f"{PREFIX}_api_requests", "Requests an API or bus answered.", labels=["api"]
    )
    errors = CounterMetricFamily(
        f"{PREFIX}_api_errors",
        "API requests that ended in a function error, timeout, invalid answer or throttle.",
        labels=["api", "kind"],
    )
    failures = {
        telemetry.API_FUNCTION_ERROR: "function_error",
        telemetry.API_TIMEOUT: "timeout",
        telemetry.API_INVALID_RESPONSE: "invalid_response",
        telemetry.API_UNAVAILABLE: "unavailable",
        telemetry.API_THROTTLED: "throttled",
    }
    for (event, owner), n in sorted(counts.items()):
        if event in (telemetry.API_REQUEST, telemetry.WS_MESSAGE):
            requests.add_metric([owner], n)
        elif event in failures:
            errors.add_metric([owner, failures[event]], n)
    yield requests
    yield errors


def snapshot(views: list[MappingView]) -> list[dict[str, Any]]:
    """The JSON form of each mapping (``/status`` and ``status --json``)."""
    out = []
    for v in views:
        s = stats_for(v.name)
        out.append(
            {
                "mapping": v.name,
                "source": v.source,
                "function": v.function,
                "state": v.state,
                "records": {
                    "read": s.read,
                    "filtered": s.filtered,
                    "delivered": s.delivered,
                    "failed": s.failed,
                    "dead_lettered": sum(s.dead_lettered.values()),
                    "in_flight": v.in_flight,
                },
                "invocations": s.invocations,
                "function_errors": s.function_errors,
                "lag": _lag(v, s),
                "last_delivery": s.last_delivery or None,
                "last_error": (
                    {"error": v.error, "at": v.error_at} if v.error is not None else None
                ),
            }
        )
    return out


def _lag(v: MappingView, s: MappingStats) -> dict[str, Any]:
    lag: dict[str, Any] = {}
    if v.offset_lag:
        lag["offset_lag"] = dict(sorted(v.offset_lag.items()))
    if s.iterator_age is not None:
        lag["iterator_age_seconds"] = round(s.iterator_age, 3)
    if v.oldest_age is not None:
        lag["oldest_record_age_seconds"] = round(v.oldest_age, 3)
    if v.pending is not None:
        lag["pending_changes"] = v.pending
    return lag
