"""The error tree of trigger-bridge.

Every failure the engine reacts to is one of these classes; library exceptions
(httpx, aiokafka, botocore, sqlite3) are translated into them once, at the boundary
where they are raised, never further in::

    BridgeError
    ├─ ConfigError            bad YAML or values: fatal at start, rejected on reload
    ├─ SourceError
    │  ├─ SourceUnavailable   retry with backoff, reopen the connector
    │  └─ CheckpointError     retry; the committed frontier does not advance
    ├─ NormalizeError         this record goes to the on-failure destination
    └─ DeliveryError
       ├─ TargetUnavailable   connect error, timeout, 429, 5xx: retried, not a function error
       ├─ FunctionError       the handler failed: retried within the mapping's limits
       └─ TargetRejected      413, 400: never retried as is; bisect or dead-letter

``retryable`` tells the engine whether the same operation may simply be tried again.
"""

from __future__ import annotations

__all__ = [
    "BridgeError",
    "CheckpointError",
    "ConfigError",
    "DeliveryError",
    "FunctionError",
    "NormalizeError",
    "SourceError",
    "SourceUnavailable",
    "TargetRejected",
    "TargetUnavailable",
]


class BridgeError(Exception):
    """Base of every error trigger-bridge raises on purpose."""

    retryable: bool = False


class ConfigError(BridgeError):
    """The configuration is invalid.

    ``where`` names the place (``file:line`` and the key path) when it is known.
    """

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.message = message
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class SourceError(BridgeError):
    """The event source failed."""

    retryable = True


class SourceUnavailable(SourceError):
    """The source cannot be reached now; the supervisor reopens it with backoff."""


class CheckpointError(SourceError):
    """A checkpoint could not be read or written; the frontier does not advance."""


class NormalizeError(BridgeError):
    """One record could not be turned into an AWS-shaped event record.

    The record is dead-lettered with this message; the others flow on.
    """


class DeliveryError(BridgeError):
    """Delivering a batch to the function failed."""


class TargetUnavailable(DeliveryError):
    """The target could not be reached or throttled us; retry without counting an attempt.

    ``retry_after`` (seconds) is the target's own hint, if it gave one; ``throttled`` says
    the target refused for want of capacity (a 429) rather than being unreachable.
    """

    retryable = True

    def __init__(
        self, message: str, *, retry_after: float | None = None, throttled: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.throttled = throttled


class FunctionError(DeliveryError):
    """The function ran and failed (it raised, timed out, or its runtime crashed).

    ``error_type`` is the Lambda error type (``Runtime.ExitError``, ``ValueError``...),
    ``payload`` the error document the function returned, as bytes.
    """

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        error_type: str = "Unhandled",
        payload: bytes = b"",
        status_code: int = 200,
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.payload = payload
        self.status_code = status_code


class TargetRejected(DeliveryError):
    """The target refused the request itself (too large, malformed); never retried as is.

    ``status`` is the HTTP status when there was one.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
