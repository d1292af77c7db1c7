"""Benchmark handler for the HTTP API front door: answers ``200 ok`` at once."""

from typing import Any

_OK = {"statusCode": 200, "body": "ok"}


def handler(event: Any, context: Any) -> dict[str, Any]:
    return _OK
