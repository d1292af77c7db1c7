"""A local folder as an S3-like event source."""

from connectors.local_dir.config import LocalDirSource
from connectors.local_dir.connector import LocalDirConnector

__all__ = ["LocalDirConnector", "LocalDirSource"]
