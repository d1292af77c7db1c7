"""The front door: API Gateway HTTP and WebSocket APIs that invoke functions synchronously."""

from __future__ import annotations
