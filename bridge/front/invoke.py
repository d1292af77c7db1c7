"""Calling a function synchronously for the front door, and what can come of it.

The front door holds no targets of its own: it is given a :data:`Call`, which the
supervisor makes from the targets of the running configuration (so an edited function
is picked up at once). A call either returns the function's answer or raises one of the
:class:`~bridge.errors.DeliveryError` family, or ``TimeoutError`` when the integration
timeout passed; the APIs turn these into API Gateway's answers.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Awaitable, Callable

__all__ = ["Call", "call_within", "new_request_id"]

#: ``await call(function, payload, request_id=...)``: the function's answer (bytes)
Call = Callable[..., Awaitable[bytes]]


async def call_within(
    call: Call, function: str, payload: bytes, *, request_id: str, timeout: float
) -> bytes:
    """``call`` the function, giving up after ``timeout`` seconds (``TimeoutError``); the
    invocation is then withdrawn or its late answer dropped by the target."""
    async with asyncio.timeout(timeout):
        return await call(function, payload, request_id=request_id)


def new_request_id() -> str:
    """An id shaped like API Gateway's HTTP API ``requestId`` (``JKJaXmPLvHcESHA=``), with
    the URL-safe alphabet (it is also a response header and may end up in a path)."""
    return base64.urlsafe_b64encode(os.urandom(10)).decode()
