"""The target contract shared by every delivery target."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


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
        crashed), carrying the Lambda error type and the error document;
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
