"""Tiny Lambda handlers for the emulator smoke tests (run by awslambdaric under aws-lambda-rie).

``handler`` returns the event it got with a little of its context; ``fail`` raises, to show
how the emulator reports a function error.
"""

from typing import Any


def handler(event: Any, context: Any) -> dict[str, Any]:
    return {
        "echo": event,
        "function_name": context.function_name,
        "request_id": context.aws_request_id,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }


def fail(event: Any, context: Any) -> None:
    raise ValueError(f"asked to fail on {event!r}")
