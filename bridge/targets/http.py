"""The ``http`` target: POST the event JSON to a URL (webhooks, OpenFaaS, Knative).

=================================  ==========================================
2xx                                the response body is the function's result
408, 429, 502, 503, 504, network   TargetUnavailable (retried, not an attempt)
500 and other 5xx                  FunctionError ``HttpError`` (the handler failed)
413, other 4xx                     TargetRejected
=================================  ==========================================

With ``cloudevents`` the event is sent as a CloudEvent in binary mode: the body is
the event JSON and the attributes travel as ``ce-*`` headers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import httpx

from bridge.errors import FunctionError, TargetRejected, TargetUnavailable
from bridge.events import iso_timestamp

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
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout, connect=10.0),
                limits=httpx.Limits(max_connections=self._concurrency),
            )

    async def invoke(self, payload: bytes, *, request_id: str, timeout: float | None) -> bytes:
        if self._client is None:
            await self.start()
        assert self._client is not None
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
                response = await self._client.post(
                    self.url,
                    content=payload,
                    headers=headers,
                    timeout=httpx.Timeout(timeout or self.timeout, connect=10.0),
                )
            except httpx.TransportError as exc:
                raise TargetUnavailable(f"function {self.name}: {self.url}: {exc!r}") from exc
        status = response.status_code
        if 200 <= status < 300:
            return response.content
        what = f"function {self.name}: HTTP {status} {response.text[:300]}"
        if status in (408, 429, 502, 503, 504):
            retry_after = response.headers.get("Retry-After")
            raise TargetUnavailable(
                what,
                retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
            )
        if status >= 500:
            raise FunctionError(
                what, error_type="HttpError", payload=response.content, status_code=status
            )
        raise TargetRejected(what, status=status)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
