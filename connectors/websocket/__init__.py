"""The ``websocket`` source: messages of a websocket feed, through a durable spool."""

from connectors.websocket.connector import WebSocketConnector

__all__ = ["WebSocketConnector"]
