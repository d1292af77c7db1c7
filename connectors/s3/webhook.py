"""The webhook side of the ``s3`` source: an HTTP receiver for store notifications.

MinIO's ``notify_webhook`` target (Ceph's HTTP endpoint alike) POSTs
``{"EventName": ..., "Key": ..., "Records": [...]}`` with
``Authorization: Bearer <auth_token>``. A request without the configured token is
answered 401, a body that is not a notification 400. Otherwise the body is handed to the
connector, which stores it in its spool (:mod:`bridge.spool`), and 200 is answered only
once it is stored: a notification MinIO was told "received" survives a ``kill -9`` of
the bridge, and one that was not is posted again by a store that retries (MinIO with a
``queue_dir``). :func:`changes_of` reads a stored body back.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from bridge.errors import ConfigError, SourceUnavailable
from bridge.spool import SpoolError
from connectors.s3.config import WebhookOptions
from connectors.s3.normalize import Change, from_minio

__all__ = ["WebhookReceiver", "changes_of"]

log = logging.getLogger(__name__)


def changes_of(body: bytes, bucket: str) -> list[Change]:
    """The changes of ``bucket`` a notification body tells (records of other buckets and
    records that are not S3 notifications are left out, the latter with a warning)."""
    try:
        records = json.loads(body).get("Records") or []
    except (ValueError, AttributeError):
        return []
    changes = []
    for record in records if isinstance(records, list) else []:
        try:
            record_bucket, change = from_minio(record, key_escaped=True)
        except ValueError as exc:
            log.warning("webhook: skipping notification record: %s", exc)
            continue
        if record_bucket == bucket:
            changes.append(change)
    return changes


class WebhookReceiver:
    """``await start()`` listens on ``options.host:port``; ``await aclose()`` stops.
    ``port`` is the bound port once started (useful with port 0). ``accept(body)`` gets
    each authorized notification body and returns once it is stored; the 200 waits
    for it."""

    def __init__(
        self,
        options: WebhookOptions,
        *,
        bucket: str,
        accept: Callable[[bytes], Awaitable[None]],
    ) -> None:
        self.options = options
        self.bucket = bucket
        self.port = options.port
        self._accept = accept
        self._expected = f"Bearer {options.auth_token}".encode()
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(self.options.path, self._receive)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.options.host, self.options.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            where = f"{self.options.host}:{self.options.port}"
            raise SourceUnavailable(f"webhook receiver cannot listen on {where}: {exc}") from exc
        except ValueError as exc:
            await runner.cleanup()
            raise ConfigError(f"webhook receiver: {exc}") from exc
        self._runner = runner
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _receive(self, request: web.Request) -> web.Response:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, self._expected):
            return web.Response(status=401, text="missing or wrong bearer token")
        body = await request.read()
        try:
            records = json.loads(body).get("Records") or []
            if not isinstance(records, list):
                raise ValueError("Records is not a list")
        except (ValueError, AttributeError) as exc:
            return web.Response(status=400, text=f"not a notification: {exc}")
        if records:
            try:
                await self._accept(body)
            except SpoolError as exc:
                log.error("webhook: cannot store a notification: %s", exc)
                return web.Response(status=503, text="cannot store the notification now")
        return web.Response(status=200)
