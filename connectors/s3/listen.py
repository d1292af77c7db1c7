"""The push side of the ``s3`` source: MinIO's ListenBucketNotification stream.

``GET /{bucket}?events=...&prefix=...&suffix=...&ping=N`` is a MinIO extension
(botocore has no operation for it): the request is signed with botocore's SigV4
signer, afresh on every connection (credentials may rotate, and a signature is only
valid for minutes), and streamed with httpx. MinIO writes one JSON object per line,
``{"Records": [...]}``; keep-alive pings are ``{"Records": null}`` or blank lines.

MinIO does not queue events for a listener: whatever happens while no stream is
connected is lost to push. ``on_connect`` is called each time a stream is up, so the
caller can reconcile then. A stream silent for three ping intervals is dead (a
half-open connection) and is reconnected, with exponential backoff on failures.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
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

    async def run(self) -> None:
        delay = 0.5
        timeout = httpx.Timeout(5.0, read=3.0 * self.ping)
        async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
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
        async with client.stream("GET", self.url, headers=headers) as response:
            if response.status_code != 200:
                await self._refuse(response)
            if "xml" in response.headers.get("content-type", ""):
                # not MinIO: an S3 store answered GET /bucket?events= with a listing
                raise PushUnsupported(
                    f"bucket {self.bucket}: the store has no ListenBucketNotification"
                )
            self.connects += 1
            log.info("listen stream of bucket %s connected", self.bucket)
            self._on_connect()
            async for line in response.aiter_lines():
                line = line.strip()
                if not line:
                    continue  # keep-alive
                records = json.loads(line).get("Records") or []
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
