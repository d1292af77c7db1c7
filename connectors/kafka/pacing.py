"""How often a Kafka consumer wakes up and asks its broker for records while nothing comes.

Left at its defaults, aiokafka keeps an idle consumer busy: its fetcher sends a Fetch that
the broker holds for ``fetch_max_wait_ms`` (500 ms) and, besides, looks every
``consumer_timeout_ms`` (200 ms) whether there is anything new to do: seven wake-ups a
second, more than everything else an idle mapping does put together.

A broker answers a held Fetch as soon as a record arrives (``fetch_min_bytes`` 1), so
holding it longer costs no latency while nothing arrives. Two things make a long hold
cost something, and ``FetchPace`` takes both away:

- While records flow, aiokafka has one Fetch per broker on its way at a time, so a
  partition whose records were taken while a Fetch for the others is held waits for that
  one to end before it is fetched again. Hence two paces: **busy** as long as records
  come (Fetches held up to 500 ms, aiokafka's default), **idle** once a wait on every
  partition brought nothing (held up to the heartbeat interval, 3 s by default, and at
  most half the request timeout, past which a held Fetch would time out).
- A broker answers a connection's requests in order, so whatever is sent behind a held
  Fetch waits for it: metadata, ListOffsets, FindCoordinator, and after a rebalance the
  first Fetch of the new partitions (aiokafka gives the old one up, the broker does not).
  Hence Fetches go on a connection of their own per broker, and one given up closes it,
  so that nothing ever queues behind a held Fetch.

The fetcher's own look-again interval (``consumer_timeout_ms``) is the idle wait too:
what it must act on (records taken, a partition resumed or revoked, a Fetch answered)
wakes it at once, and the interval only backs up what does not, such as ``seek``
(``wake_fetcher``). Heartbeats (every 3 s) and metadata refreshes (every 30 s) are left
as they are: they keep the membership and the partition list right.

All of this reaches into aiokafka's insides (its fetcher and client); on an aiokafka
whose insides differ, each part does nothing, and the consumer keeps aiokafka's ways.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["BUSY_WAIT_MS", "FetchPace", "idle_wait_ms", "wake_fetcher"]

BUSY_WAIT_MS = 500  # aiokafka's default fetch_max_wait_ms


def idle_wait_ms(heartbeat_ms: int, request_timeout_ms: int) -> int:
    """How long an idle consumer's Fetch is held: the heartbeat interval, under half the
    request timeout (a Fetch held longer than that would time out), at least
    ``BUSY_WAIT_MS``."""
    return max(BUSY_WAIT_MS, min(heartbeat_ms, request_timeout_ms // 2))


class FetchPace:
    """Switches a started ``AIOKafkaConsumer`` between the busy and the idle pace (each
    Fetch sent from then on is held as long as that pace says), and sends its Fetches on
    connections of their own (see the module's doc)."""

    def __init__(self, consumer: Any, idle_ms: int) -> None:
        fetcher = getattr(consumer, "_fetcher", None)
        self._fetcher = fetcher if hasattr(fetcher, "_fetch_max_wait_ms") else None
        self._idle_ms = idle_ms
        self.idle = False
        client: Any = getattr(consumer, "_client", None)
        if self._fetcher is not None and hasattr(client, "_conns"):
            client.send = _fetches_apart(client)

    def set(self, *, idle: bool) -> None:
        if idle != self.idle:
            self.idle = idle
            if self._fetcher is not None:
                self._fetcher._fetch_max_wait_ms = self._idle_ms if idle else BUSY_WAIT_MS


_FETCH_API = 1  # the Kafka protocol's api key of Fetch
_FETCHES = "fetches"  # the client's connection group of Fetches (its own: DEFAULT, COORDINATION)


def _fetches_apart(client: Any) -> Callable[..., Awaitable[Any]]:
    """``client.send``, with Fetches on connections of their own; a Fetch given up (the
    caller cancelled) closes its connection, where the broker may hold it for seconds."""
    send = client.send

    async def send_apart(node_id: int, request: Any, **options: Any) -> Any:
        if getattr(request, "API_KEY", None) != _FETCH_API:
            return await send(node_id, request, **options)
        try:
            return await send(node_id, request, group=_FETCHES)
        except asyncio.CancelledError:
            conn = client._conns.get((node_id, _FETCHES))
            if conn is not None:
                conn.close()  # only this Fetch was on it: aiokafka has one per broker
            raise

    return send_apart


def wake_fetcher(consumer: Any) -> None:
    """Have aiokafka's fetcher act on a ``seek`` now, not on its next look (up to
    ``consumer_timeout_ms`` later): ``seek`` itself does not wake it."""
    with contextlib.suppress(AttributeError):
        fetcher = consumer._fetcher
        fetcher._notify(fetcher._wait_consume_future)
