"""The ``s3`` source: object changes in a bucket of an S3-compatible store, delivered as
AWS S3 event notification records (one record per invocation, as S3 invokes Lambda).

Three ways to see changes, usable alone or together:

- push (``push``): MinIO's ListenBucketNotification stream. Fast, but MinIO keeps
  nothing for a listener: events sent while the stream is down are lost to it.
- webhook (``webhook``): MinIO/Ceph POST their notifications to a receiver here.
- reconcile (``reconcile``): a ListObjectsV2 listing diffed against the per-key state
  kept in the checkpoint store (ETag, size, last-modified, version id), at start,
  after every (re)connect of the push stream and every ``reconcile_interval_seconds``.
  Objects created, changed (ETag) or deleted while no one listened become
  ``ObjectCreated:Put`` / ``ObjectRemoved:Delete``. Works on any S3-compatible store.

Guarantees:

- Every change told by push is an event, as S3 sends one per request: an overwrite with
  identical bytes too, and every delete (of a version, a delete marker...).
- Gap-free with reconcile on: a change missed by push (bridge stopped, stream down,
  store restarted) is found by the next listing; only the latest state of an object
  is seen that way (two overwrites while no one listened are one event), and such a
  change is as old as its discovery (``maximum_record_age_seconds`` counts from then).
- A listing compares each key with its state: the newest change still in flight, else
  the committed one (ETag, size, last-modified, version id) in the checkpoint store,
  read page by page in key order beside the listing, so memory does not grow with the
  bucket. A change seen by push and then by a listing is delivered once in the normal
  case; at least once always (a key's state is committed when its event settled).
- Per-key order: the key is the partition (one batch in flight per key; keys in
  parallel). An event older than one already emitted for the same key may still be
  delivered after it when push and a listing race (S3 gives no order either: compare
  ``sequencer``).
- Retries as S3's asynchronous invocation: 2 retries, 6 hours maximum age, then the
  on-failure destination, with AWS's async failure record.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import fnmatch
import logging
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Hashable, Sequence
from dataclasses import replace
from typing import Any, ClassVar

from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from bridge.connector import BaseConnector, ConnectorContext, FailureContext, Feed, Record
from bridge.errors import CheckpointError, ConfigError, NormalizeError, SourceUnavailable
from bridge.spool import Spool, SpoolCursor, SpoolError, folder_of
from connectors.aws import create_client, shared_session, translate_errors
from connectors.s3.config import S3Source
from connectors.s3.listen import ListenStream, PushUnsupported
from connectors.s3.normalize import AWS_EVENT_NAMES, Change, ObjectState
from connectors.s3.reconcile import created_change, list_objects, removed_change
from connectors.s3.webhook import WebhookReceiver, changes_of
from connectors.s3_events import (
    ASYNC_INVOCATION_DEFAULTS,
    check_async_invocation,
    s3_async_failure_record,
    s3_record,
    sample_event,
)

__all__ = ["S3Connector"]

log = logging.getLogger(__name__)

_CHUNK = 100
AUTO_RECONCILE_SECONDS = 5.0  # between listings, unless listing takes long
_PAGE = 1000  # committed states read at a time during a listing
_LISTED_LATELY = 10_000


class S3Connector(BaseConnector):
    type: ClassVar[str] = "s3"
    config_model: ClassVar[builtins.type[S3Source]] = S3Source
    ordered: ClassVar[bool] = True
    singleton: ClassVar[bool] = True  # one bridge at a time, with shared state
    defaults: ClassVar[dict[str, Any]] = ASYNC_INVOCATION_DEFAULTS
    sample_event = staticmethod(sample_event)
    check_mapping = staticmethod(check_async_invocation)

    def __init__(self, config: S3Source, context: ConnectorContext) -> None:
        self.config = config
        self.context = context
        self.region = config.region or context.region
        self.bucket = config.bucket
        # the record of the newest change emitted for a key and not committed yet (what is
        # settled is in the checkpoint store): bounded by what is in flight, not by the
        # bucket's size
        self._in_flight: dict[str, Record] = {}
        self._pushed_during: set[str] | None = None  # keys push spoke of while listing
        # what listings found lately, so a push of the same write that comes after it is
        # not a second event (at most _LISTED_LATELY keys)
        self._listed_lately: OrderedDict[str, ObjectState | None] = OrderedDict()
        self._markers: OrderedDict[str, str] = OrderedDict()  # key -> delete marker made
        self._queue: Feed[list[Record]] = Feed(maxsize=64)
        self._tasks: list[asyncio.Task[None]] = []
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._reconcile_now = asyncio.Event()
        self._reconcile_lock = asyncio.Lock()
        self._last_sequencer = 0
        self.webhook: WebhookReceiver | None = None
        self.listen: ListenStream | None = None
        # webhook notifications go through a spool before MinIO hears 200; an entry is
        # acknowledged once every record made of it is settled
        self.spool: Spool | None = None
        self._spool_cursor: SpoolCursor | None = None
        self._spool_done = 0  # entries up to this seq were handed to _pushed
        self._pending: dict[int, int] = {}  # spool seq -> its records not settled yet
        self._spooled: dict[str, deque[tuple[Record, int]]] = {}  # key -> (record, seq)

    @property
    def _what(self) -> str:
        return f"S3 bucket {self.bucket} at {self.config.endpoint_url or 'AWS'}"

    # ------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Check the bucket (ConfigError if it does not exist, SourceUnavailable with
        "check the credentials" if they are refused)."""
        self._client = await self._stack.enter_async_context(
            create_client("s3", self.config, self.region, path_style=True)
        )
        with translate_errors(self._what):
            await self._client.list_objects_v2(
                Bucket=self.bucket, Prefix=self.config.prefix, MaxKeys=1
            )
        if self.config.webhook is not None:
            await self._open_spool()
            self.webhook = WebhookReceiver(
                self.config.webhook, bucket=self.bucket, accept=self._store_notification
            )
            await self.webhook.start()
            self._stack.push_async_callback(self.webhook.aclose)

    async def _open_spool(self) -> None:
        if self.context.state_dir is None:
            raise ConfigError("the s3 webhook keeps a spool in state_dir; none was given")
        spool = Spool(folder_of(self.context.state_dir, self.context.mapping), max_bytes=64 << 20)
        try:
            await spool.open()
        except SpoolError as exc:
            raise ConfigError(str(exc)) from exc
        self.spool = spool
        self._stack.push_async_callback(spool.aclose)
        self._spool_cursor = spool.cursor(spool.acked)
        self._spool_done = spool.acked
        self._stack.callback(self._spool_cursor.close)

    async def _store_notification(self, body: bytes) -> None:
        """The webhook's ``accept``: on disk when this returns (raises SpoolError)."""
        assert self.spool is not None
        await self.spool.durable(await self.spool.append(body))

    async def _from_spool(self) -> None:
        """Hand the stored notifications to ``_pushed``, oldest first."""
        spool, cursor = self.spool, self._spool_cursor
        assert spool is not None and cursor is not None
        while True:
            entries = cursor.take(100)
            if not entries:
                await spool.wait_written(cursor.position, 5.0)
                continue
            for entry in entries:
                await self._pushed(self.bucket, changes_of(entry.payload, self.bucket), entry.seq)
                self._spool_done = entry.seq
            await self._ack_spool()

    async def _ack_spool(self) -> None:
        if self.spool is None:
            return
        low = min([*self._pending, self._spool_done + 1]) - 1
        if low > self.spool.acked:
            try:
                await self.spool.ack(low)
            except SpoolError as exc:
                raise CheckpointError(str(exc)) from exc

    async def read(self) -> AsyncIterator[Sequence[Record]]:
        if self.config.push and self.config.endpoint_url:
            self.listen = ListenStream(
                endpoint_url=self.config.endpoint_url,
                bucket=self.bucket,
                region=self.region,
                prefix=self.config.prefix,
                suffix=self.config.suffix,
                ping=self.config.ping_seconds,
                reconnect_max=self.config.reconnect_max_seconds,
                credentials=self._credentials,
                on_changes=self._pushed,
                on_connect=self._reconcile_now.set,
            )
            self._tasks.append(asyncio.create_task(self._listen(self.listen)))
        elif self.config.push:
            log.warning("%s: push needs endpoint_url (a MinIO server); push is off", self._what)
        if self.config.reconcile:
            self._tasks.append(asyncio.create_task(self._reconcile_loop()))
        if self.spool is not None:
            self._tasks.append(asyncio.create_task(self._from_spool()))
        async for chunk in self._queue.items(self._tasks):
            yield chunk

    def backlog(self) -> int:
        """Changes found and not yet handed to the engine (see the connector contract)."""
        return sum(len(chunk) for chunk in self._queue.queued())

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self._stack.aclose()

    async def _credentials(self) -> Any:
        """Frozen credentials for signing the push stream: the configured ones, else the
        usual chain (environment, profile, instance role)."""
        c = self.config
        if c.aws_access_key_id and c.aws_secret_access_key:
            return Credentials(c.aws_access_key_id, c.aws_secret_access_key, c.aws_session_token)
        found = await shared_session().get_credentials()
        if found is None:
            raise SourceUnavailable(f"{self._what}: no AWS credentials found")
        return await found.get_frozen_credentials()

    # ------------------------------------------------------------ seeing changes

    async def _listen(self, stream: ListenStream) -> None:
        try:
            await stream.run()
        except PushUnsupported as exc:
            if not (self.config.reconcile or self.config.webhook):
                raise
            log.warning("%s: push is off: %s", self._what, exc)

    async def _pushed(self, bucket: str, changes: list[Change], origin: int = 0) -> None:
        """Changes told by the store (push stream, or webhook from the spool entry
        ``origin``); returns once queued. Each one is an event, as S3 sends one per
        request: an identical overwrite too."""
        records = []
        for change in changes:
            if change.event not in AWS_EVENT_NAMES:
                log.debug("%s: %s of %r is no S3 event", self._what, change.event, change.key)
                continue
            if not self._eligible(change.key):
                continue
            if not change.sequencer:
                change = replace(change, sequencer=self._sequencer())
            if self._pushed_during is not None:
                self._pushed_during.add(change.key)
            if self._listing_saw(change):
                continue
            change = self._relabel(change)
            state = change.state
            if change.event == "ObjectRemoved:Delete" and change.version_id:
                # one version went: the key may still be there (an older version, or the
                # version a removed delete marker uncovered): ask what it is now
                state = await self._current_state(change.key)
            record = await self._emit(change, arrived=change.time, state=state)
            if record is not None:
                records.append(record)
                if origin:
                    self._pending[origin] = self._pending.get(origin, 0) + 1
                    self._spooled.setdefault(record.partition, deque()).append((record, origin))
        if records:
            await self._queue.put(records)

    def _listing_saw(self, change: Change) -> bool:
        """Whether ``change`` is the very change a listing found and emitted lately (the
        push came late: MinIO may hold its stream back). A removal: the listing found the
        key gone and push said nothing of it since. A creation: the same state, and the
        write's time (MinIO's sequencer is its ModTime in hex nanoseconds) not after the
        object's LastModified as listed. A later write, even of the same bytes, is news."""
        if change.key not in self._listed_lately:
            return False
        listed = self._listed_lately.pop(change.key)
        if listed is None or change.state is None:
            return listed is None and change.state is None
        if not listed.same_as(change.state) or listed.last_modified is None:
            return False
        try:
            written = int(change.sequencer, 16) / 1e9
        except ValueError:
            return False
        return written < listed.last_modified + 0.001  # listings have milliseconds

    async def _reconcile_loop(self) -> None:
        configured = self.config.reconcile_interval_seconds
        while True:
            self._reconcile_now.clear()
            started = time.monotonic()
            await self.reconcile()
            took = time.monotonic() - started
            if configured is None:  # seconds for a new user, no hammering of a big bucket
                interval: float | None = max(AUTO_RECONCILE_SECONDS, 10 * took)
            else:
                interval = configured or None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reconcile_now.wait(), interval)

    async def reconcile(self) -> None:
        """Emit an event for every difference between the bucket and the state of each key
        (what was committed, or the newest change still in flight).

        The listing and the committed states are both walked in key order, a page at a
        time, and merged: memory does not grow with the bucket. A change found this way is
        as old as its discovery (``maximum_record_age_seconds`` counts from now; the
        event's ``eventTime`` is the object's LastModified). A key push spoke of while
        the listing ran is left to push: its news is newer than the listing's."""
        async with self._reconcile_lock:
            self._pushed_during = set()
            try:
                await self._merge_listing()
            finally:
                self._pushed_during = None

    async def _merge_listing(self) -> None:
        pushed = self._pushed_during
        assert pushed is not None
        in_flight = set(self._in_flight)
        chunk: list[Record] = []
        async for key, listed, stored in _merged(self._listed(), self._stored()):
            in_flight.discard(key)
            if key not in pushed and (record := await self._compare(key, listed, stored)):
                chunk.append(record)
                if len(chunk) >= _CHUNK:
                    await self._queue.put(chunk)
                    chunk = []
        for key in in_flight:  # neither listed nor committed: emitted, and gone since
            if key not in pushed and (record := await self._compare(key, None, None)):
                chunk.append(record)
        if chunk:
            await self._queue.put(chunk)

    async def _compare(
        self, key: str, listed: ObjectState | None, stored: ObjectState | None
    ) -> Record | None:
        pending = self._in_flight.get(key)
        known = pending.position[1] if pending is not None else stored
        if listed is not None:
            if known is not None and known.same_as(listed):
                return None
            found = created_change(key, listed, self._sequencer())
        elif known is not None:
            found = removed_change(key, self._sequencer())
        else:
            return None
        self._listed_lately[key] = listed
        self._listed_lately.move_to_end(key)
        if len(self._listed_lately) > _LISTED_LATELY:
            self._listed_lately.popitem(last=False)
        return await self._emit(found, arrived=time.time())

    async def _listed(self) -> AsyncIterator[tuple[str, ObjectState]]:
        pages = list_objects(
            self._client, bucket=self.bucket, prefix=self.config.prefix, what=self._what
        )
        async for page in pages:
            for key, state in page.items():
                if self._eligible(key):
                    yield key, state

    async def _stored(self) -> AsyncIterator[tuple[str, ObjectState]]:
        after: str | None = None
        while True:
            page = await self.context.checkpoints.page(after, _PAGE, self.config.prefix)
            for key, value in page:
                if self._eligible(key):
                    yield key, ObjectState.loads(value)
            if len(page) < _PAGE:
                return
            after = page[-1][0]

    async def _emit(
        self, change: Change, *, arrived: float, state: ObjectState | bool | None = False
    ) -> Record | None:
        """The record of ``change``, carrying the key's state after it (``change.state``
        unless given); a change of an event type not wanted is not emitted, its state is
        checkpointed at once (so the next listing knows it)."""
        after = change.state if state is False else state
        assert after is None or isinstance(after, ObjectState)
        if not self._wants(change.event):
            await self._remember(change.key, after)
            return None
        record = Record(
            partition=change.key, position=(change.key, after), data=change, arrived=arrived
        )
        self._in_flight[change.key] = record
        return record

    def _relabel(self, change: Change) -> Change:
        """MinIO files the removal of a delete marker as ``DeleteMarkerCreated`` again,
        with the marker's version id; AWS sends ``ObjectRemoved:Delete`` (a version, the
        marker, was permanently deleted). A marker id seen created before is a removal.
        (Not told apart: the removal of a marker made before the bridge started, or more
        than 10,000 markers ago; its key's state is then corrected by the next listing.)"""
        if change.event != "ObjectRemoved:DeleteMarkerCreated" or not change.version_id:
            return change
        if self._markers.pop(change.key, None) == change.version_id:
            return replace(change, event="ObjectRemoved:Delete")
        self._markers[change.key] = change.version_id
        if len(self._markers) > _LISTED_LATELY:
            self._markers.popitem(last=False)
        return change

    async def _current_state(self, key: str) -> ObjectState | None:
        """What ``key`` is now (HeadObject), None when there is no such object."""
        try:
            head = await self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status in (404, 405):  # gone, or a delete marker on top
                return None
            with translate_errors(self._what):
                raise
        modified = head.get("LastModified")
        return ObjectState(
            etag=str(head.get("ETag", "")).strip('"'),
            size=int(head.get("ContentLength", 0)),
            last_modified=modified.timestamp() if modified is not None else None,
            version_id=head.get("VersionId"),
        )

    async def _remember(self, key: str, state: ObjectState | None) -> None:
        if state is None:
            await self.context.checkpoints.write({}, [key])
        else:
            await self.context.checkpoints.write({key: state.dumps()})

    def _eligible(self, key: str) -> bool:
        return key.startswith(self.config.prefix) and key.endswith(self.config.suffix)

    def _wants(self, event: str) -> bool:
        return any(fnmatch.fnmatchcase(f"s3:{event}", p) for p in self.config.events)

    def _sequencer(self) -> str:
        # hex nanoseconds, like MinIO's own sequencers, increasing within this process
        self._last_sequencer = max(time.time_ns(), self._last_sequencer + 1)
        return f"{self._last_sequencer:016X}"

    # ------------------------------------------------------------ shaping

    def normalize(self, record: Record) -> dict[str, Any]:
        change = record.data
        if not isinstance(change, Change):
            raise NormalizeError(f"s3 record {change!r} is not an object change")
        try:
            return s3_record(
                event_name=change.event,
                bucket=self.bucket,
                key=change.key,
                sequencer=change.sequencer,
                event_time=change.time,
                region=self.region,
                size=change.size,
                etag=change.etag,
                version_id=change.version_id,
                principal=change.principal,
                source_ip=change.source_ip,
                request_id=change.request_id,
                configuration_id=self.context.mapping,
            )
        except (TypeError, ValueError, OverflowError) as exc:
            raise NormalizeError(f"s3 record for key {change.key!r}: {exc}") from exc

    def item_identifier(self, record: Record) -> Hashable:
        return str(record.partition)

    def failure_record(self, records: Sequence[Record], ctx: FailureContext) -> dict[str, Any]:
        return s3_async_failure_record(ctx)

    # ------------------------------------------------------------ settling

    async def commit(self, records: Sequence[Record]) -> None:
        """Checkpoint the settled state of the key of ``records[-1]`` (the newest settled
        change of its key: everything of that key before it is settled too)."""
        last = records[-1]
        key, state = last.position
        if state is None:
            await self.context.checkpoints.write({}, [key])
        else:
            await self.context.checkpoints.write({key: state.dumps()})
        if self._in_flight.get(key) is last:  # nothing newer of it in flight
            del self._in_flight[key]
        spooled = self._spooled.get(key)
        if spooled:
            # records of the key read before ``last`` (or it) are settled with it; one
            # the engine has not read yet (seq 0) is not
            while spooled and 0 < spooled[0][0].seq <= last.seq:
                _, origin = spooled.popleft()
                self._pending[origin] -= 1
                if not self._pending[origin]:
                    del self._pending[origin]
            if not spooled:
                del self._spooled[key]
            await self._ack_spool()


async def _merged(
    listed: AsyncIterator[tuple[str, ObjectState]],
    stored: AsyncIterator[tuple[str, ObjectState]],
) -> AsyncIterator[tuple[str, ObjectState | None, ObjectState | None]]:
    """(key, listed state, stored state) for every key of either, in key order; both
    inputs are in the byte order of the keys' UTF-8 (S3's listing order)."""
    a = await anext(listed, None)
    b = await anext(stored, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a[0].encode() < b[0].encode()):
            assert a is not None
            yield a[0], a[1], None
            a = await anext(listed, None)
        elif a is None or b[0].encode() < a[0].encode():
            yield b[0], None, b[1]
            b = await anext(stored, None)
        else:
            yield a[0], a[1], b[1]
            a, b = await anext(listed, None), await anext(stored, None)
