"""Benchmark handler: does nothing and answers ``{}`` (no batch item failures)."""

from typing import Any


def handler(event: Any, context: Any) -> dict[str, Any]:
    return {}
