"""The ``lambda`` target: the Lambda Invoke API over httpx.

``POST {endpoint}/2015-03-31/functions/{name}/invocations`` with
``X-Amz-Invocation-Type: RequestResponse``, to AWS (SigV4-signed), LocalStack, or the
Runtime Interface Emulator. Responses map onto the error tree:

======================================  ==========================================
200 with ``X-Amz-Function-Error``        FunctionError (errorType from the body)
200, emulator, ``{"errorType",...}``     FunctionError (the emulator sets no header)
200, emulator, ``Task timed out after``  FunctionError ``Sandbox.Timedout``
200 with an answer over 6291556 bytes    FunctionError ``Function.ResponseSizeTooLarge``
200 otherwise                            the response payload
429, 5xx, 401/403/404, network errors,   TargetUnavailable (retried, not an attempt)
an unreadable answer (broken encoding)
413, other 4xx                           TargetRejected
======================================  ==========================================

With ``emulator: true`` each endpoint gets at most one invocation at a time: the
emulator serves one and crashes on a second concurrent request. Several endpoints
(several emulator instances) share the load.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx

from bridge.errors import FunctionError, TargetRejected, TargetUnavailable
from bridge.targets.base import MAX_RESPONSE_SIZE, response_too_large

__all__ = ["LambdaInvokeTarget"]

_ERROR_KEYS = {"errorType", "errorMessage", "stackTrace", "requestId", "cause"}


class LambdaInvokeTarget:
    def __init__(
        self,
        name: str,
        *,
        function_name: str | None = None,
        endpoints: Sequence[str] = (),
        region: str = "us-east-1",
        qualifier: str | None = None,
        emulator: bool = False,
        concurrency: int | None = None,
        timeout: float = 900.0,
        sign_requests: bool | None = None,
        credentials: tuple[str, str, str | None] | None = None,
    ) -> None:
        self.name = name
        self.function_name = function_name or name
        self.region = region
        self.endpoints = [e.rstrip("/") for e in endpoints] or [
            f"https://lambda.{region}.amazonaws.com"
        ]
        self.qualifier = qualifier
        self.emulator = emulator
        self.timeout = timeout
        self.sign = (not endpoints) if sign_requests is None else sign_requests
        self._static_credentials = credentials
        self._credentials: Any = None
        # one token per invocation allowed at once; a token names the endpoint to use
        slots = len(self.endpoints) if emulator else (concurrency or 10)
        self._free: asyncio.Queue[str] = asyncio.Queue()
        for i in range(slots):
            self._free.put_nowait(self.endpoints[i % len(self.endpoints)])
        self._slots = slots
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout + 5, connect=10.0),
                limits=httpx.Limits(max_connections=max(10, self._slots)),
            )
        if self.sign and self._credentials is None:
            self._credentials = await asyncio.to_thread(self._resolve_credentials)

    def _resolve_credentials(self) -> Any:
        import botocore.credentials
        import botocore.session

        if self._static_credentials:
            key, secret, token = self._static_credentials
            return botocore.credentials.Credentials(key, secret, token)
        creds = botocore.session.get_session().get_credentials()
        if creds is None:
            raise TargetUnavailable(
                f"function {self.name}: sign_requests is on but no AWS credentials were found"
            )
        return creds

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _url(self, endpoint: str) -> str:
        url = f"{endpoint}/2015-03-31/functions/{quote(self.function_name, safe='')}/invocations"
        return f"{url}?Qualifier={quote(self.qualifier)}" if self.qualifier else url

    async def invoke(self, payload: bytes, *, request_id: str, timeout: float | None) -> bytes:
        if self._client is None:
            await self.start()
        assert self._client is not None
        endpoint = await self._free.get()
        try:
            return await self._invoke_at(endpoint, payload, timeout)
        finally:
            self._free.put_nowait(endpoint)

    async def _invoke_at(self, endpoint: str, payload: bytes, timeout: float | None) -> bytes:
        assert self._client is not None
        url = self._url(endpoint)
        headers = {"Content-Type": "application/json", "X-Amz-Invocation-Type": "RequestResponse"}
        if self.sign:
            headers = self._signed_headers(url, payload, headers, await self._frozen())
        request = self._client.build_request(
            "POST",
            url,
            content=payload,
            headers=headers,
            timeout=httpx.Timeout((timeout or self.timeout) + 5, connect=10.0),
        )
        try:
            response = await self._client.send(request, stream=True)
            try:
                body = await self._read_capped(response)
            finally:
                await response.aclose()
            if body is None:
                if response.status_code == 200:  # the function ran: as Lambda, its failure
                    raise response_too_large()
                body = f"(an answer over the {MAX_RESPONSE_SIZE}-byte limit)".encode()
        except httpx.TimeoutException as exc:
            raise TargetUnavailable(f"function {self.name}: {url} timed out ({exc!r})") from exc
        except httpx.TransportError as exc:
            raise TargetUnavailable(f"function {self.name}: cannot reach {url}: {exc!r}") from exc
        except httpx.HTTPError as exc:  # e.g. a body that does not decode: try again
            raise TargetUnavailable(
                f"function {self.name}: unreadable answer from {url}: {exc!r}"
            ) from exc
        return self._result(response, body)

    @staticmethod
    async def _read_capped(response: httpx.Response) -> bytes | None:
        """The answer's body, or None once its length or its bytes pass
        ``MAX_RESPONSE_SIZE`` (an endpoint that is not Lambda may send any amount): it
        is read no further and never held whole."""
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > MAX_RESPONSE_SIZE:
            return None
        chunks: list[bytes] = []
        received = 0
        async for chunk in response.aiter_bytes():
            received += len(chunk)
            if received > MAX_RESPONSE_SIZE:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def _frozen(self) -> Any:
        """The credentials to sign with. Refreshing them (STS, the instance metadata
        service) is blocking I/O in botocore: it runs in a thread, off the event loop."""
        credentials = self._credentials
        refresh_needed = getattr(credentials, "refresh_needed", None)
        if callable(refresh_needed) and refresh_needed():
            return await asyncio.to_thread(credentials.get_frozen_credentials)
        return credentials.get_frozen_credentials()

    def _signed_headers(
        self, url: str, payload: bytes, headers: dict[str, str], credentials: Any
    ) -> dict[str, str]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method="POST", url=url, data=payload, headers=headers)
        SigV4Auth(credentials, "lambda", self.region).add_auth(request)
        return dict(request.headers.items())

    def _result(self, response: httpx.Response, body: bytes) -> bytes:
        status = response.status_code
        if status == 200:
            header = response.headers.get("X-Amz-Function-Error")
            if header:
                raise _function_error(body, header, status)
            if self.emulator:
                if body.startswith(b"Task timed out after"):
                    raise FunctionError(
                        body.decode(errors="replace"),
                        error_type="Sandbox.Timedout",
                        payload=json.dumps(
                            {"errorType": "Sandbox.Timedout", "errorMessage": body.decode()}
                        ).encode(),
                    )
                if _looks_like_error(body):
                    raise _function_error(body, "Unhandled", status)
            return body
        what = f"function {self.name}: HTTP {status} {_short(body)}"
        if status == 429 or status >= 500 or status in (401, 403, 404, 408):
            raise TargetUnavailable(
                what, retry_after=_retry_after(response), throttled=status == 429
            )
        raise TargetRejected(what, status=status)


def _function_error(body: bytes, header: str, status: int) -> FunctionError:
    error_type, message = header, body.decode(errors="replace")
    try:
        doc = json.loads(body)
        if isinstance(doc, dict):
            error_type = str(doc.get("errorType") or header)
            message = str(doc.get("errorMessage") or message)
    except ValueError:
        pass
    return FunctionError(message, error_type=error_type, payload=body, status_code=status)


def _looks_like_error(body: bytes) -> bool:
    if not body.startswith(b"{") or b'"errorType"' not in body:
        return False
    try:
        doc = json.loads(body)
    except ValueError:
        return False
    return (
        isinstance(doc, dict)
        and "errorType" in doc
        and "errorMessage" in doc
        and set(doc) <= _ERROR_KEYS
    )


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _short(body: bytes) -> str:
    text = body.decode(errors="replace").strip()
    return text[:300]
