"""Whether the Kafka source reaches its cluster, said once each time that changes.

aiokafka raises nothing while the brokers are unreachable: ``getmany`` returns nothing and
its background tasks retry (and log) on their own, so the source looks merely idle. What
tells is the consumer's group coordinator. aiokafka heartbeats it every few seconds
whatever the fetches do (an idle topic or a partition held back changes nothing), marks
it dead when a request to it fails, and looks it up again (FindCoordinator, then a
connection to it) every ``retry_backoff_ms`` until a broker answers. So a coordinator
that stays unknown means the cluster does not answer for this group, and one known again
means it does.

``BrokerWatch`` looks twice a second (one task of the event loop looks at every running
watch, so a hundred idle mappings wake it no more often than one). Unknown for
``UNAVAILABLE_AFTER`` seconds (a
coordinator that moves to another broker is found again within milliseconds), it logs
one ``source.unavailable mapping=... since=<when it was first seen> reason=...``; known
again, one ``source.recovered mapping=... after=<seconds>s``. Nothing in between: the
library's own lines are thinned out by ``bridge.log_throttle``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable
from typing import Any, ClassVar

from bridge import telemetry
from bridge.events import iso_timestamp

__all__ = ["UNAVAILABLE_AFTER", "BrokerWatch", "unreachable"]

log = logging.getLogger(__name__)

UNAVAILABLE_AFTER = 3.0  # seconds without a coordinator before the source is said down
CHECK_EVERY = 0.5


def unreachable(consumer: Any, servers: str) -> str | None:
    """Why a started ``AIOKafkaConsumer`` with a group cannot reach its cluster now, or
    None when it can (or when this aiokafka does not show it: then nothing is said)."""
    try:
        if consumer._coordinator.coordinator_id is not None:
            return None
        cluster = consumer._client.cluster
        metadata_failed = cluster._last_refresh_ms > cluster._last_successful_refresh_ms
    except AttributeError:  # not started, or another aiokafka's insides
        return None
    if metadata_failed:
        return f"cannot connect to Kafka at {servers}: no broker answers"
    return f"Kafka at {servers} answers metadata requests, but no group coordinator is found"


class BrokerWatch:
    """Logs ``source.unavailable`` once when ``observe`` has been given a reason for
    ``after`` seconds in a row, and ``source.recovered`` once when it is given None
    after that."""

    def __init__(
        self,
        mapping: str,
        *,
        after: float = UNAVAILABLE_AFTER,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.mapping = mapping
        self._after = after
        self._clock = clock
        self._wall = wall
        self._down_since: tuple[float, float] | None = None  # (monotonic, epoch) first seen
        self._said = False

    @property
    def unavailable(self) -> bool:
        """True from the ``source.unavailable`` line until the ``source.recovered`` one."""
        return self._said

    def observe(self, reason: str | None) -> None:
        now = self._clock()
        if reason is None:
            if self._said and self._down_since is not None:
                telemetry.emit(
                    telemetry.SOURCE_RECOVERED,
                    mapping=self.mapping,
                    after=f"{now - self._down_since[0]:.1f}s",
                    level=logging.WARNING,
                )
            self._down_since, self._said = None, False
            return
        if self._down_since is None:
            self._down_since = (now, self._wall())
        elif not self._said and now - self._down_since[0] >= self._after:
            self._said = True
            telemetry.emit(
                telemetry.SOURCE_UNAVAILABLE,
                mapping=self.mapping,
                since=iso_timestamp(self._down_since[1]),
                reason=reason,
                level=logging.WARNING,
            )

    async def run(self, consumer: Any, servers: str) -> None:
        """Watch ``consumer`` until cancelled."""
        rounds = _Rounds.of_running_loop()
        rounds.add(self, consumer, servers)
        try:
            await asyncio.get_running_loop().create_future()  # forever
        finally:
            rounds.discard(self)


class _Rounds:
    """The one task of an event loop that looks at every running ``BrokerWatch`` every
    ``CHECK_EVERY`` seconds; it ends with the last watch."""

    _of_loop: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Rounds]] = (
        weakref.WeakKeyDictionary()
    )

    @classmethod
    def of_running_loop(cls) -> _Rounds:
        loop = asyncio.get_running_loop()
        rounds = cls._of_loop.get(loop)
        if rounds is None:
            rounds = cls._of_loop[loop] = cls()
        return rounds

    def __init__(self) -> None:
        self._watched: dict[BrokerWatch, tuple[Any, str]] = {}
        self._task: asyncio.Task[None] | None = None

    def add(self, watch: BrokerWatch, consumer: Any, servers: str) -> None:
        self._watched[watch] = (consumer, servers)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="kafka-broker-watch")

    def discard(self, watch: BrokerWatch) -> None:
        self._watched.pop(watch, None)
        if not self._watched and self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        while True:
            for watch, (consumer, servers) in list(self._watched.items()):
                try:
                    watch.observe(unreachable(consumer, servers))
                except Exception:  # one watch's bug must not blind the others
                    log.exception("kafka source %s: watching the broker", watch.mapping)
            await asyncio.sleep(CHECK_EVERY)
