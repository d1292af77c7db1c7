"""A bucket of an S3-compatible store (MinIO, Ceph, AWS S3) as an event source."""

from connectors.s3.config import S3Source
from connectors.s3.connector import S3Connector

__all__ = ["S3Connector", "S3Source"]
