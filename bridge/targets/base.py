"""The target contract shared by every delivery target."""

from __future__ import annotations

import json
from typing import Protocol, runtime_checkable

from bridge.errors import FunctionError

__all__ = [
    "MAX_REQUEST_SIZE",
    "MAX_RESPONSE_SIZE",
    "Target",
    "error_document",
    "response_too_large",
]

MAX_REQUEST_SIZE = 6 * 1024 * 1024  # 6291456: Lambda's synchronous Invoke request limit
MAX_RESPONSE_SIZE = MAX_REQUEST_SIZE + 100  # 6291556: the most a function may answer


def error_document(error_type: str, message: str) -> bytes:
    """Lambda's error JSON, ``{"errorMessage": ..., "errorType": ...}``, compact."""
    return json.dumps(
        {"errorMessage": message, "errorType": error_type}, separators=(",", ":")
    ).encode()


def response_too_large() -> FunctionError:
    """Lambda's failure for an answer over ``MAX_RESPONSE_SIZE`` bytes, whichever target
    got it."""
    message = (
        f"Response payload size exceeded maximum allowed payload size ({MAX_RESPONSE_SIZE} bytes)."
    )
    error_type = "Function.ResponseSizeTooLarge"
    return FunctionError(
        message, error_type=error_type, payload=error_document(error_type, message)
    )


@runtime_checkable
class Target(Protocol):
    """Something that runs a function on one event payload.

    Contract:

    - ``start()`` prepares the target (opens clients, starts processes). It is called
      once before the first ``invoke`` and may raise ``TargetUnavailable``.
    - ``invoke(payload, request_id=..., timeout=...)`` sends the event JSON (bytes,
      already encoded) and returns the function's response payload (bytes) when the
      function succeeded. It may be called concurrently; a target that can only run
      N invocations at once queues the rest itself.
      It raises:

      * ``FunctionError`` when the function ran and failed (raised, timed out,
        crashed, or answered more than ``MAX_RESPONSE_SIZE`` bytes:
        ``Function.ResponseSizeTooLarge``, as Lambda), carrying the Lambda error type
        and the error document;
      * ``TargetUnavailable`` when the function could not be reached or throttled
        (connection errors, 429, 5xx from the service, no worker alive);
      * ``TargetRejected`` when the request itself is refused (payload too large,
        malformed request).

    - ``aclose()`` frees every resource; it is idempotent.
    """

    name: str

    async def start(self) -> None: ...

    async def invoke(self, payload: bytes, *, request_id: str, timeout: float | None) -> bytes: ...

    async def aclose(self) -> None: ...
