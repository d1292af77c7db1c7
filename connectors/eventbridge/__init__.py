"""The ``eventbridge`` source: a rule on one of the bridge's event buses."""

from connectors.eventbridge.connector import EventBridgeConnector

__all__ = ["EventBridgeConnector"]
