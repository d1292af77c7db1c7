"""The push side of the ``s3`` source: MinIO's ListenBucketNotification stream.

``GET /{bucket}?events=...&prefix=...&suffix=...&ping=N`` is a MinIO extension
(botocore has no operation for it): the request is signed with botocore's SigV4
signer, afresh on every connection (credentials may rotate, and a signature is only
valid for minutes), and streamed with httpx. MinIO writes one JSON object per line,
``{"Records": [...]}``, and ``{"Records":null}`` every ``ping`` seconds.

MinIO does not queue events for a listener: whatever happens while no stream is
connected is lost to push. ``on_connect`` is called each time a stream is up, so the
caller can reconcile then; failures reconnect with exponential backoff.

Silence is not taken for a dead stream: MinIO builds since 2025-10-24 (commit 52eee5a2,
PR #21651: their S3 response writer lost its ``Flush``) hold the whole stream, response
headers and pings included, in a 4 KB buffer, so a quiet bucket says nothing for minutes
and events come in 4 KB bursts. Reconnecting on silence would throw the buffered events
away. A dead peer is found by TCP keep-alive instead (about 30 s), and a server that
sends no headers within three ping intervals is reported once, with that explanation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlencode

import httpx
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest

from bridge.errors import ConfigError, SourceError
from connectors.s3.normalize import Change, from_minio

__all__ = ["ListenStream", "PushUnsupported"]

log = logging.getLogger(__name__)

#: what MinIO is asked for; the connector filters by the configured event types itself,
#: so it also learns the state of objects whose events it does not emit
LISTEN_EVENTS = ("s3:ObjectCreated:*", "s3:ObjectRemoved:*")
_AUTH_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"}
_UNSUPPORTED = {400, 405, 501}
# find a dead peer without reading timeouts: probe after 15 s idle, every 5 s, 3 times
_KEEPALIVE = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)] + [
    (socket.IPPROTO_TCP, option, value)
    for name, value in (("TCP_KEEPIDLE", 15), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3))
    if (option := getattr(socket, name, None)) is not None
]


class PushUnsupported(SourceError):
    """The store does not serve ListenBucketNotification (it is not MinIO)."""


class ListenStream:
    """Follows the notification stream of one bucket until cancelled.

    ``credentials()`` returns frozen botocore credentials (called on every connect);
    ``on_changes(bucket, changes)`` is awaited for every line with records (it may
    block: that is backpressure on the stream); ``on_connect()`` after each connect.
    ``run()`` raises ``ConfigError`` when the bucket does not exist and
    ``PushUnsupported`` when the store has no such API; every other failure is
    retried with backoff up to ``reconnect_max`` seconds.
    """

    def __init__(
        self,
        *,
        endpoint_url: str,
        bucket: str,
        region: str,
        prefix: str,
        suffix: str,
        ping: int,
        reconnect_max: float,
        credentials: Callable[[], Awaitable[Any]],
        on_changes: Callable[[str, list[Change]], Awaitable[None]],
        on_connect: Callable[[], None],
    ) -> None:
        query = [("events", e) for e in LISTEN_EVENTS]
        query += [("ping", str(ping)), ("prefix", prefix), ("suffix", suffix)]
        self.url = (
            f"{endpoint_url.rstrip('/')}/{quote(bucket, safe='')}?"
            # encoded exactly as SigV4 canonicalizes it, so what is sent is what was signed
            + urlencode(query, quote_via=quote, safe="-_.~")
        )
        self.bucket = bucket
        self.region = region
        self.ping = ping
        self.reconnect_max = reconnect_max
        self._credentials = credentials
        self._on_changes = on_changes
        self._on_connect = on_connect
        self.connects = 0
        self.held_back = False  # the server was found to hold the stream back

    async def run(self) -> None:
        delay = 0.5
        timeout = httpx.Timeout(5.0, read=None)  # silence is normal (see the module doc)
        transport = httpx.AsyncHTTPTransport(socket_options=_KEEPALIVE)
        async with httpx.AsyncClient(
            timeout=timeout, transport=transport, trust_env=False
        ) as client:
            while True:
                try:
                    await self._follow(client)
                    delay = 0.5  # the server ended a healthy stream: reconnect at once
                except (ConfigError, PushUnsupported):
                    raise
                except (httpx.HTTPError, SourceError, ValueError) as exc:
                    log.warning(
                        "listen stream of bucket %s: %s; reconnecting in %.1fs",
                        self.bucket,
                        str(exc) or type(exc).__name__,
                        delay,
                    )
                    await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                    delay = min(self.reconnect_max, delay * 2)

    def _signed_headers(self, credentials: Any) -> dict[str, str]:
        request = AWSRequest(method="GET", url=self.url, headers={})
        S3SigV4Auth(credentials, "s3", self.region).add_auth(request)
        # identity: a compressed stream is buffered by the server's gzip writer
        return {**dict(request.headers.items()), "Accept-Encoding": "identity"}

    async def _follow(self, client: httpx.AsyncClient) -> None:
        headers = self._signed_headers(await self._credentials())
        asked = time.monotonic()
        watch = asyncio.get_running_loop().call_later(3.0 * self.ping, self._held_back)
        try:
            async with client.stream("GET", self.url, headers=headers) as response:
                watch.cancel()
                await self._stream(response, time.monotonic() - asked)
        finally:
            watch.cancel()

    def _held_back(self) -> None:
        if self.held_back:
            return
        self.held_back = True
        log.warning(
            "listen stream of bucket %s: the server sent nothing for %ss although pings were "
            "asked every %ss. MinIO builds since 2025-10-24 hold the notification stream "
            "back until 4 KB of events piled up (their response writer lost its Flush, "
            "MinIO commit 52eee5a2): push events come late here, in bursts. Changes are "
            "still found by listings (reconcile_interval_seconds); for events within "
            "milliseconds point MinIO's webhook at the source's webhook receiver",
            self.bucket,
            3 * self.ping,
            self.ping,
        )

    async def _stream(self, response: httpx.Response, waited: float) -> None:
        if response.status_code != 200:
            await self._refuse(response)
        if "xml" in response.headers.get("content-type", ""):
            # not MinIO: an S3 store answered GET /bucket?events= with a listing
            raise PushUnsupported(
                f"bucket {self.bucket}: the store has no ListenBucketNotification"
            )
        self.connects += 1
        log.info("listen stream of bucket %s connected after %.1fs", self.bucket, waited)
        self._on_connect()
        async for line in response.aiter_lines():
            line = line.strip()
            if not line:
                continue
            records = json.loads(line).get("Records") or []  # null: a ping
            changes = []
            for record in records:
                try:
                    bucket, change = from_minio(record, key_escaped=False)
                except ValueError as exc:
                    log.warning("bucket %s: skipping notification: %s", self.bucket, exc)
                    continue
                if bucket == self.bucket:
                    changes.append(change)
            if changes:
                await self._on_changes(self.bucket, changes)

    async def _refuse(self, response: httpx.Response) -> None:
        body = (await response.aread()).decode("utf-8", "replace")
        code = message = ""
        try:
            root = ET.fromstring(body)
            code = root.findtext("Code") or ""
            message = root.findtext("Message") or ""
        except ET.ParseError:
            message = body[:200]
        what = f"listen on bucket {self.bucket}: HTTP {response.status_code} {code}: {message}"
        if code == "NoSuchBucket":
            raise ConfigError(what)
        if code in _AUTH_CODES:
            raise SourceError(f"{what} (check the credentials)")
        if response.status_code in _UNSUPPORTED or code == "NotImplemented":
            raise PushUnsupported(what)
        raise SourceError(what)
