"""The ``websocket`` source: a client connection to a websocket feed, through a spool.

Two halves meet at the mapping's spool (:mod:`bridge.spool`, in
``<state_dir>/spool/<mapping>/``):

- the **pump** keeps one connection to the feed: connect (headers, subprotocols, TLS),
  send ``open_messages`` (``{resume}`` replaced), then append each text or binary message
  to the spool before reading the next, so a ``kill -9`` loses nothing that was read. A
  close or an error is one ``source.unavailable`` line with the reason, then a reconnect
  after a jittered, doubling delay (``reconnect_initial_seconds`` to
  ``reconnect_max_seconds``), and ``source.recovered`` once connected again. When the
  spool is full the pump stops reading: the socket's flow control pushes back on the
  feed. What the feed sends while no connection exists is lost to the source.
- **read()** hands the engine the spooled messages, each in its partition (the
  ``partition_key`` field's value, or one partition for the feed). It asks
  ``room(partition)`` first: a partition at its share of the read-ahead is skipped (its
  messages stay in the spool and are read again from there once it has room), so a
  partition whose function keeps failing holds up only itself, until the spool is full.

Acknowledgement: frontier commits per partition. The spool's acknowledged position is the
newest seq before which every message is settled; the seq each partition committed past
it is kept with it, so after a restart nothing settled is delivered again.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import random
import ssl
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Hashable, Sequence
from typing import Any, ClassVar, Literal

import aiohttp

from bridge import telemetry
from bridge.connector import BaseConnector, ConnectorContext, FailureContext, Record
from bridge.errors import CheckpointError, ConfigError
from bridge.events import iso_timestamp, stream_failure_base
from bridge.spool import BINARY, Entry, Spool, SpoolCursor, SpoolError, folder_of
from connectors.websocket.config import RESUME_TOKEN, WebSocketSource
from connectors.websocket.normalize import (
    NO_KEY,
    envelope,
    field_of,
    filter_view,
    key_of,
    public_url,
    sample_event,
    websocket_record,
)

__all__ = ["WebSocketConnector"]

log = logging.getLogger(__name__)

_CHUNK = 500  # records handed to the engine at most at once
_YIELD_EVERY = 64  # messages the pump spools before it lets the event loop run others
_STEADY_SECONDS = 10.0  # a connection that lived this long resets the reconnect delay


class WebSocketConnector(BaseConnector):
    type: ClassVar[str] = "websocket"
    config_model: ClassVar[builtins.type[WebSocketSource]] = WebSocketSource
    ordered: ClassVar[bool] = True
    singleton: ClassVar[bool] = True  # one bridge at a time, with shared state
    redelivery: ClassVar[Literal["bridge", "source"]] = "bridge"
    pausable: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {
        # Kinesis's defaults: this is a stream of messages in the same sense
        "batch_size": 100,
        "maximum_batching_window_seconds": 0,
        "maximum_retry_attempts": -1,
        # the spool's age bound: a message not delivered within a day is dead-lettered
        # (a Kinesis stream keeps records 24 hours by default)
        "maximum_record_age_seconds": 86400,
        "maximum_concurrency": 100,
    }
    sample_event = staticmethod(sample_event)

    def __init__(self, config: WebSocketSource, context: ConnectorContext) -> None:
        self.config = config
        self.context = context
        if context.state_dir is None:
            raise ConfigError("the websocket source keeps a spool in state_dir; none was given")
        folder = folder_of(context.state_dir, context.mapping)
        options = config.spool
        self.spool = Spool(
            folder,
            max_bytes=options.max_bytes,
            sync=options.fsync,
            fsync_interval=options.fsync_interval_ms / 1000,
        )
        self.url = public_url(config.url)
        self.connection = 0  # connections made so far (kept across restarts)
        self.resume_value: str | None = None
        self._committed: dict[str, int] = {}  # partition -> seq settled up to (above acked)
        self._outstanding: dict[str, deque[int]] = {}  # handed to the engine, not settled
        # partition -> (seq, where) to read it again from, once it has room
        self._deferred: dict[str, tuple[int, tuple[int, int]]] = {}
        self._cursor: SpoolCursor | None = None
        self._pump: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ssl: ssl.SSLContext | bool = True
        self._down_since: float | None = None

    # ------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        try:
            await self.spool.open()
        except SpoolError as exc:
            raise ConfigError(str(exc)) from exc
        note = self.spool.note
        if note.get("partition_key") == self.config.partition_key:
            self._committed = {str(p): int(s) for p, s in (note.get("committed") or {}).items()}
        # else the partitions were other ones: what they settled past the acknowledged
        # position is delivered again rather than skipped by a partition of the same name
        self.connection = int(note.get("connection") or 0)
        self.resume_value = note.get("resume")
        for entry in self.spool.last_entries():  # newer than the note, maybe
            self.connection = max(self.connection, entry.tag)
            self._note_resume(entry.payload)
        self._ssl = _ssl_context(self.config)
        self._cursor = self.spool.cursor(self.spool.acked)
        self._session = aiohttp.ClientSession()
        self._pump = asyncio.create_task(self._run_pump(), name=f"ws-pump:{self.context.mapping}")

    async def aclose(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
            self._pump = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._cursor is not None:
            self._cursor.close()
            self._cursor = None
        await self.spool.aclose()

    # ------------------------------------------------------------ the pump

    async def _run_pump(self) -> None:
        cfg = self.config
        delay = cfg.reconnect_initial_seconds
        while True:
            started = time.monotonic()
            reason = await self._connection_once()
            if time.monotonic() - started >= _STEADY_SECONDS:
                delay = cfg.reconnect_initial_seconds
            wait = delay * random.uniform(0.5, 1.0)
            if self._down_since is None:
                self._down_since = time.time()
            telemetry.emit(
                telemetry.SOURCE_UNAVAILABLE,
                mapping=self.context.mapping,
                url=self.url,
                reason=reason,
                retry_in=round(wait, 2),
                level=logging.WARNING,
            )
            await asyncio.sleep(wait)
            delay = min(cfg.reconnect_max_seconds, delay * 2)

    async def _connection_once(self) -> str:
        """One connection, until it ends; why it ended. Spool failures propagate."""
        cfg, session = self.config, self._session
        assert session is not None
        self.connection += 1
        try:
            async with asyncio.timeout(cfg.connect_timeout_seconds):
                ws = await session.ws_connect(
                    self._with_resume(cfg.url),
                    headers=cfg.headers,
                    protocols=cfg.subprotocols,
                    heartbeat=cfg.heartbeat_seconds,
                    ssl=self._ssl,
                    max_msg_size=cfg.max_message_bytes,
                    autoping=True,
                )
        except aiohttp.WSServerHandshakeError as exc:
            return f"the handshake was refused: {exc.status} {exc.message}"
        except TimeoutError:
            return f"no connection within {cfg.connect_timeout_seconds} s"
        except (aiohttp.ClientError, OSError, ssl.SSLError, ValueError) as exc:
            return f"cannot connect: {type(exc).__name__}: {exc}"
        async with ws:
            if self._down_since is not None:
                telemetry.emit(
                    telemetry.SOURCE_RECOVERED,
                    mapping=self.context.mapping,
                    url=self.url,
                    after=f"{time.time() - self._down_since:.1f}s",
                )
                self._down_since = None
            log.info(
                "%s: connected to %s (connection %d)",
                self.context.mapping,
                self.url,
                self.connection,
            )
            try:
                for text in cfg.open_messages:
                    await ws.send_str(self._with_resume(text))
            except (aiohttp.ClientError, ConnectionError) as exc:
                return f"sending the open messages failed: {exc}"
            received = 0
            while True:
                received += 1
                if received % _YIELD_EVERY == 0:
                    # a fast feed keeps receive() ready: let delivery have the loop too
                    await asyncio.sleep(0)
                message = await ws.receive()
                if message.type == aiohttp.WSMsgType.TEXT:
                    await self._spooled(message.data.encode(), 0)
                elif message.type == aiohttp.WSMsgType.BINARY:
                    await self._spooled(message.data, BINARY)
                elif message.type == aiohttp.WSMsgType.ERROR:
                    return f"connection error: {ws.exception() or message.data}"
                else:  # CLOSE, CLOSING, CLOSED
                    code = ws.close_code
                    extra = f" ({message.extra})" if message.extra else ""
                    return f"closed by the feed: code {code}{extra}" if code else "connection lost"

    async def _spooled(self, payload: bytes, flags: int) -> None:
        """Append one message (waiting while the spool is full); a failing disk raises
        ``SpoolError``, which ends the pump and fails ``read()``."""
        await self.spool.append(payload, flags=flags, tag=self.connection)
        self._note_resume(payload)

    def _note_resume(self, payload: bytes) -> None:
        resume = self.config.resume
        if resume is None:
            return
        value = field_of(payload, resume.field)
        if value is not None and not isinstance(value, dict | list):
            self.resume_value = value if isinstance(value, str) else json.dumps(value)

    def _with_resume(self, text: str) -> str:
        resume = self.config.resume
        if resume is None or RESUME_TOKEN not in text:
            return text
        value = self.resume_value if self.resume_value is not None else resume.initial
        return text.replace(RESUME_TOKEN, value)

    # ------------------------------------------------------------ reading

    async def read(self) -> AsyncIterator[Sequence[Record]]:
        assert self._cursor is not None
        while True:
            chunk = self._again(_CHUNK)
            chunk += self._ahead(_CHUNK - len(chunk))
            if chunk:
                yield chunk
                continue
            pump = self._pump
            if pump is not None and pump.done() and not pump.cancelled():
                error = pump.exception()
                if error is not None:
                    raise error
            if self.config.partition_key is None and self.spool.last_seq > self._cursor.position:
                await self.context.partitions.wait_room(NO_KEY)  # the one partition is full
                continue
            # new messages, or (with partitions waiting for room) a look at their room
            await self.spool.wait_written(
                self._cursor.position, timeout=0.05 if self._deferred else 1.0
            )

    def _partition(self, entry: Entry) -> tuple[str, str | None]:
        key = key_of(entry.payload, self.config.partition_key)
        return (NO_KEY if key is None else key), key

    def _record(self, entry: Entry, partition: str, key: str | None) -> Record:
        self._outstanding.setdefault(partition, deque()).append(entry.seq)
        return Record(
            partition=partition, position=entry.seq, data=(entry, key), arrived=entry.time
        )

    def _ahead(self, n: int) -> list[Record]:
        """Up to ``n`` new messages from the spool, skipping partitions without room."""
        assert self._cursor is not None
        room = self.context.partitions.room
        if self.config.partition_key is None:  # one partition: read what it has room for
            n = min(n, room(NO_KEY))
        out: list[Record] = []
        taken = Counter[str]()
        for entry in self._cursor.take(n) if n > 0 else ():
            partition, key = self._partition(entry)
            if entry.seq <= self._committed.get(partition, 0) or partition in self._deferred:
                continue  # settled before a restart / read again later from the spool
            if taken[partition] >= room(partition):
                self._deferred[partition] = (entry.seq, entry.where)
                continue
            taken[partition] += 1
            out.append(self._record(entry, partition, key))
        return out

    def _again(self, n: int) -> list[Record]:
        """Messages of skipped partitions that have room now, read again from the spool
        from the oldest of them (seeking straight to it)."""
        room = self.context.partitions.room
        ready = {p for p in self._deferred if room(p) > 0}
        if not ready or n <= 0:
            return []
        assert self._cursor is not None
        start_seq, start_at = min(self._deferred[p] for p in ready)
        out: list[Record] = []
        taken = Counter[str]()
        scan = self.spool.scan(start_seq - 1, self._cursor.position, start=start_at)
        for entry in scan:
            partition, key = self._partition(entry)
            if partition not in ready or entry.seq < self._deferred[partition][0]:
                continue
            if entry.seq <= self._committed.get(partition, 0):
                continue
            if taken[partition] >= room(partition) or len(out) >= n:
                self._deferred[partition] = (entry.seq, entry.where)  # the rest waits again
                ready.discard(partition)
                if not ready:
                    break
                continue
            taken[partition] += 1
            out.append(self._record(entry, partition, key))
        for partition in ready:  # caught up with the cursor: read with the others again
            del self._deferred[partition]
        return out

    # ------------------------------------------------------------ events

    def normalize(self, record: Record) -> dict[str, Any]:
        entry, key = record.data
        return websocket_record(
            seq=entry.seq,
            payload=entry.payload,
            binary=entry.binary,
            received=entry.time,
            connection=entry.tag,
            key=key,
        )

    def filter_view(self, event: dict[str, Any]) -> dict[str, Any]:
        return filter_view(event)

    def encode_event(self, records: Sequence[Record]) -> bytes:
        return envelope(self.url, [r.encoded for r in records])

    def item_identifier(self, record: Record) -> Hashable:
        return str(record.position)

    def identifier_key(self, identifier: Any) -> Hashable | None:
        """A ``sequenceNumber``: a string of digits (or a number)."""
        if isinstance(identifier, bool):
            return None
        if isinstance(identifier, int):
            return str(identifier)
        if isinstance(identifier, str) and identifier.isdigit():
            return str(int(identifier))
        return None

    def failure_record(self, records: Sequence[Record], ctx: FailureContext) -> dict[str, Any]:
        """The on-failure record, shaped as Kinesis's (``KinesisBatchInfo``):
        ``WebSocketBatchInfo`` with the partition, the first and last sequence numbers and
        arrival times, and the batch size."""
        doc = stream_failure_base(ctx, time.time())
        first, last = records[0], records[-1]
        doc["WebSocketBatchInfo"] = {
            "url": self.url,
            "partitionKey": first.data[1],
            "startSequenceNumber": str(first.position),
            "endSequenceNumber": str(last.position),
            "approximateArrivalOfFirstRecord": iso_timestamp(first.arrived),
            "approximateArrivalOfLastRecord": iso_timestamp(last.arrived),
            "batchSize": len(records),
        }
        return doc

    # ------------------------------------------------------------ acknowledging

    async def commit(self, records: Sequence[Record]) -> None:
        for record in records:
            seq = int(record.position)
            partition = record.partition
            if seq > self._committed.get(partition, 0):
                self._committed[partition] = seq
            waiting = self._outstanding.get(partition)
            while waiting and waiting[0] <= seq:
                waiting.popleft()
            if waiting is not None and not waiting:
                del self._outstanding[partition]
        low = self._low_water()
        self._committed = {p: s for p, s in self._committed.items() if s > low}
        note: dict[str, Any] = {
            "committed": self._committed,
            "connection": self.connection,
            "partition_key": self.config.partition_key,
        }
        if self.resume_value is not None:
            note["resume"] = self.resume_value
        try:
            await self.spool.ack(low, note)
        except SpoolError as exc:
            raise CheckpointError(str(exc)) from exc

    def _low_water(self) -> int:
        """The newest seq before which every message is settled."""
        assert self._cursor is not None
        candidates = [self._cursor.position + 1]
        candidates += [q[0] for q in self._outstanding.values() if q]
        candidates += [seq for seq, _ in self._deferred.values()]
        return min(candidates) - 1


def _ssl_context(config: WebSocketSource) -> ssl.SSLContext | bool:
    tls = config.tls
    if tls is None:
        return True  # wss:// with the system's authorities; ignored for ws://
    try:
        context = ssl.create_default_context(cafile=tls.ca_file)
        if tls.cert_file:
            context.load_cert_chain(tls.cert_file, tls.key_file, password=tls.key_password)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"websocket TLS files: {exc}") from exc
    context.check_hostname = tls.check_hostname
    if not tls.check_hostname:
        context.verify_mode = ssl.CERT_REQUIRED
    return context
