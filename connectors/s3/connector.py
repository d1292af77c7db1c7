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

- Gap-free with reconcile on: a change missed by push (bridge stopped, stream down,
  store restarted) is found by the next listing; only the latest state of an object
  is seen that way (two overwrites while no one listened are one event).
- Once in the normal case, at least once always: the last emitted state of each key
  (its ETag, or "deleted") decides whether a change is new, whichever way it came, so
  a change seen by push and then by a listing is delivered once. A key's state is
  checkpointed when its event is settled; a crash in between redelivers that event.
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
from collections.abc import AsyncIterator, Hashable, Sequence
from dataclasses import replace
from typing import Any, ClassVar

import aiobotocore.session
from botocore.credentials import Credentials

from bridge.connector import BaseConnector, ConnectorContext, FailureContext, Feed, Record
from bridge.errors import NormalizeError, SourceUnavailable
from connectors.aws import create_client, translate_errors
from connectors.s3.config import S3Source
from connectors.s3.listen import ListenStream, PushUnsupported
from connectors.s3.normalize import AWS_EVENT_NAMES, Change, ObjectState
from connectors.s3.reconcile import created_change, list_objects, removed_change
from connectors.s3.webhook import WebhookReceiver
from connectors.s3_events import ASYNC_INVOCATION_DEFAULTS, s3_async_failure_record, s3_record

__all__ = ["S3Connector"]

log = logging.getLogger(__name__)

_CHUNK = 100


class S3Connector(BaseConnector):
    type: ClassVar[str] = "s3"
    config_model: ClassVar[builtins.type[S3Source]] = S3Source
    ordered: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = ASYNC_INVOCATION_DEFAULTS

    def __init__(self, config: S3Source, context: ConnectorContext) -> None:
        self.config = config
        self.context = context
        self.region = config.region or context.region
        self.bucket = config.bucket
        # last emitted state per key; None: its removal was emitted; absent: unknown
        self._emitted: dict[str, ObjectState | None] = {}
        self._pushed_at: dict[str, float] = {}  # key -> monotonic time push last spoke of it
        self._queue: Feed[list[Record]] = Feed(maxsize=64)
        self._tasks: list[asyncio.Task[None]] = []
        self._stack = contextlib.AsyncExitStack()
        self._session = aiobotocore.session.get_session()
        self._client: Any = None
        self._reconcile_now = asyncio.Event()
        self._reconcile_lock = asyncio.Lock()
        self._last_sequencer = 0
        self.webhook: WebhookReceiver | None = None
        self.listen: ListenStream | None = None

    @property
    def _what(self) -> str:
        return f"S3 bucket {self.bucket} at {self.config.endpoint_url or 'AWS'}"

    # ------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Check the bucket (ConfigError if it does not exist, SourceUnavailable with
        "check the credentials" if they are refused) and load the settled state."""
        self._client = await self._stack.enter_async_context(
            create_client("s3", self.config, self.region, path_style=True)
        )
        with translate_errors(self._what):
            await self._client.list_objects_v2(
                Bucket=self.bucket, Prefix=self.config.prefix, MaxKeys=1
            )
        saved = await self.context.checkpoints.items()
        for key, value in saved.items():
            self._emitted[key] = ObjectState.loads(value)
        if self.config.webhook is not None:
            self.webhook = WebhookReceiver(
                self.config.webhook, bucket=self.bucket, on_changes=self._pushed
            )
            await self.webhook.start()
            self._stack.push_async_callback(self.webhook.aclose)

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
        async for chunk in self._queue.items(self._tasks):
            yield chunk

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
        found = await self._session.get_credentials()
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

    async def _pushed(self, bucket: str, changes: list[Change]) -> None:
        """Changes told by the store (push stream or webhook); returns once queued."""
        now = time.monotonic()
        records = []
        for change in changes:
            if change.event not in AWS_EVENT_NAMES:
                log.debug("%s: %s of %r is no S3 event", self._what, change.event, change.key)
                continue
            if not change.sequencer:
                change = replace(change, sequencer=self._sequencer())
            self._pushed_at[change.key] = now
            record = await self._offer(change, pushed=True)
            if record is not None:
                records.append(record)
        if records:
            await self._queue.put(records)

    async def _reconcile_loop(self) -> None:
        interval = self.config.reconcile_interval_seconds
        while True:
            self._reconcile_now.clear()
            await self.reconcile()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reconcile_now.wait(), interval or None)

    async def reconcile(self) -> None:
        """Emit an event for every difference between the bucket and what was emitted.

        A key push spoke of after the listing began is left to push (its news is
        newer than the listing's)."""
        async with self._reconcile_lock:
            started = time.monotonic()
            old_tombstones = {k for k, v in self._emitted.items() if v is None}
            listed: set[str] = set()
            pages = list_objects(
                self._client, bucket=self.bucket, prefix=self.config.prefix, what=self._what
            )
            async for page in pages:
                chunk = []
                for key, state in page.items():
                    if not key.endswith(self.config.suffix):
                        continue
                    listed.add(key)
                    if self._pushed_at.get(key, 0.0) > started:
                        continue
                    change = created_change(key, state, self._sequencer())
                    if (record := await self._offer(change)) is not None:
                        chunk.append(record)
                await self._put_chunks(chunk)
            gone = []
            for key, last in list(self._emitted.items()):
                if last is None or key in listed or not self._eligible(key):
                    continue
                if self._pushed_at.get(key, 0.0) > started:
                    continue
                if (
                    record := await self._offer(removed_change(key, self._sequencer()))
                ) is not None:
                    gone.append(record)
            await self._put_chunks(gone)
            # forget what push said before this listing, and removals older than the
            # previous listing: this listing covers them
            self._pushed_at = {k: t for k, t in self._pushed_at.items() if t > started}
            for key in old_tombstones:
                if self._emitted.get(key, 0) is None and key not in self._pushed_at:
                    del self._emitted[key]

    async def _put_chunks(self, records: list[Record]) -> None:
        for start in range(0, len(records), _CHUNK):
            await self._queue.put(records[start : start + _CHUNK])

    async def _offer(self, change: Change, *, pushed: bool = False) -> Record | None:
        """A record if ``change`` is news compared with the last state emitted for its key;
        a change of an event type not wanted is remembered, not emitted."""
        key = change.key
        if not self._eligible(key):
            return None
        state = change.state
        if key in self._emitted:
            previous = self._emitted[key]
            if state is None and previous is None:
                return None  # its removal was emitted already
            if state is not None and previous is not None and previous.same_as(state):
                return None
        elif state is None and not pushed:
            return None
        self._emitted[key] = state
        if not self._wants(change.event):
            await self._remember(key, state)
            return None
        return Record(partition=key, position=(key, state), data=change, arrived=change.time)

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
        """Checkpoint the settled state of each key (in order: the last one wins)."""
        put: dict[str, str] = {}
        delete: list[str] = []
        for record in records:
            key, state = record.position
            if state is None:
                put.pop(key, None)
                delete.append(key)
            else:
                put[key] = state.dumps()
                with contextlib.suppress(ValueError):
                    delete.remove(key)
        await self.context.checkpoints.write(put, delete)
