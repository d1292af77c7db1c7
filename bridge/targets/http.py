"""The ``http`` target: POST the event JSON to a URL (webhooks, OpenFaaS, Knative).

==================================  ================================================
2xx                                 the response body is the function's result
2xx with a body over 6291556 bytes  FunctionError ``Function.ResponseSizeTooLarge``
408, 429, 502, 503, 504, network    TargetUnavailable (retried, not an attempt)
500 and other 5xx                   FunctionError ``HttpError`` (the handler failed)
413, other 4xx                      TargetRejected
==================================  ================================================

With ``cloudevents`` the event is sent as a CloudEvent in binary mode: the body is
the event JSON and the attributes travel as ``ce-*`` headers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from bridge.errors import FunctionError, TargetRejected, TargetUnavailable
from bridge.events import iso_timestamp
from bridge.targets._http1 import BodyTooLarge, Http1Error, Http1Pool, Response
from bridge.targets.base import MAX_RESPONSE_SIZE, response_too_large

__all__ = ["HttpTarget"]

CLOUDEVENT_TYPE = "io.trigger-bridge.lambda-event"


class HttpTarget:
    def __init__(
        self,
        name: str,
        *,
        url: str,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        concurrency: int = 10,
        cloudevents: bool = False,
    ) -> None:
        self.name = name
        self.url = url
        custom = dict(headers or {})
        # header names are case-insensitive: a configured ``content-type`` replaces the
        # default instead of being sent as a second Content-Type header
        if any(key.lower() == "content-type" for key in custom):
            self.headers = custom
        else:
            self.headers = {"Content-Type": "application/json", **custom}
        self.timeout = timeout
        self.cloudevents = cloudevents
        self._slots = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        # a small HTTP/1.1 client of our own (bridge/targets/_http1.py): aiohttp's
        # machinery was half of the bridge's CPU per unbatched invocation, as httpx's had
        # been before it (docs/benchmarks.md). 10 s to connect, then ``timeout`` seconds
        # without a byte of the answer.
        self._pool: Http1Pool | None = None

    async def start(self) -> None:
        if self._pool is None:
            self._pool = Http1Pool(self.url, max_idle=self._concurrency)

    async def invoke(self, payload: bytes, *, request_id: str, timeout: float | None) -> bytes:
        if self._pool is None:
            await self.start()
        assert self._pool is not None
        headers = dict(self.headers)
        if self.cloudevents:
            headers.update(
                {
                    "ce-specversion": "1.0",
                    "ce-id": request_id,
                    "ce-source": f"/trigger-bridge/functions/{self.name}",
                    "ce-type": CLOUDEVENT_TYPE,
                    "ce-time": iso_timestamp(time.time()),
                }
            )
        async with self._slots:
            try:
                # a 3xx is the answer: redirects are not followed
                response = await self._pool.post(
                    payload,
                    headers,
                    read_timeout=timeout or self.timeout,
                    max_body=MAX_RESPONSE_SIZE,
                )
            except BodyTooLarge as exc:
                if 200 <= exc.status < 300:  # the function ran and answered: its failure
                    raise response_too_large() from exc
                # any other status means what it means; its body is only named
                response = Response(exc.status, exc.headers, f"({exc})".encode())
            except (Http1Error, TimeoutError) as exc:
                raise TargetUnavailable(f"function {self.name}: {self.url}: {exc!r}") from exc
        status, content = response.status, response.body
        retry_after = response.headers.get("retry-after")
        if 200 <= status < 300:
            return content
        text = content.decode("utf-8", "replace")
        what = f"function {self.name}: HTTP {status} {text[:300]}"
        if status in (408, 429, 502, 503, 504):
            raise TargetUnavailable(
                what,
                retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
                throttled=status == 429,
            )
        if status >= 500:
            raise FunctionError(what, error_type="HttpError", payload=content, status_code=status)
        raise TargetRejected(what, status=status)

    async def aclose(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
