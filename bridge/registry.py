"""Finds connector classes by their ``source.type``.

Connectors are discovered through the entry-point group ``trigger_bridge.connectors``
(built-ins are registered there too, in pyproject.toml), so a third-party package adds
a source without touching the engine. The built-ins are also known by module path,
so a source checkout that was never installed still runs (tests/test_install.py checks
that this table and pyproject's entry points name the same connectors).
"""

from __future__ import annotations

import functools
import importlib
from importlib.metadata import entry_points
from typing import Any

from bridge.errors import ConfigError

__all__ = ["UnknownConnector", "connector_class", "connector_types", "register"]

ENTRY_POINT_GROUP = "trigger_bridge.connectors"

_BUILTINS = {
    "local_dir": "connectors.local_dir:LocalDirConnector",
    "sqs": "connectors.sqs:SqsConnector",
    "kafka": "connectors.kafka:KafkaConnector",
    "dynamodb_streams": "connectors.dynamodb_streams:DynamoDBStreamsConnector",
    "s3": "connectors.s3:S3Connector",
    "schedule": "connectors.schedule:ScheduleConnector",
    "eventbridge": "connectors.eventbridge:EventBridgeConnector",
    "websocket": "connectors.websocket:WebSocketConnector",
}


class UnknownConnector(ConfigError):
    """No connector is registered under that type name."""


@functools.cache
def _discovered() -> dict[str, str]:
    found = dict(_BUILTINS)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found[ep.name] = ep.value
    return found


def register(type_name: str, target: str) -> None:
    """Register ``module:Class`` as the connector for ``type_name`` in this process
    (for embedding and tests; packages should use the entry-point group)."""
    _discovered()[type_name] = target
    connector_class.cache_clear()


def connector_types() -> list[str]:
    return sorted(_discovered())


@functools.cache
def connector_class(type_name: str) -> Any:
    """The connector class for ``type_name``; raise UnknownConnector naming the known ones."""
    target = _discovered().get(type_name)
    if target is None:
        known = ", ".join(connector_types())
        raise UnknownConnector(f"unknown source type {type_name!r} (known: {known})")
    module_name, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UnknownConnector(f"source type {type_name!r}: cannot load {target}: {exc}") from exc
