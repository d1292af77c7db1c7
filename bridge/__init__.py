"""trigger-bridge: AWS Lambda event source mappings for any function runtime.

The public API is small: load a config, run it with a supervisor, or write a
connector against the ``Connector`` contract. Everything else is internal.
"""

from bridge.connector import Connector, ConnectorContext, FailureContext, Record
from bridge.errors import (
    BridgeError,
    CheckpointError,
    ConfigError,
    DeliveryError,
    FunctionError,
    NormalizeError,
    SourceError,
    SourceUnavailable,
    TargetRejected,
    TargetUnavailable,
)

__version__ = "0.1.0"

__all__ = [
    "BridgeError",
    "CheckpointError",
    "ConfigError",
    "Connector",
    "ConnectorContext",
    "DeliveryError",
    "FailureContext",
    "FunctionError",
    "NormalizeError",
    "Record",
    "SourceError",
    "SourceUnavailable",
    "TargetRejected",
    "TargetUnavailable",
    "__version__",
]
