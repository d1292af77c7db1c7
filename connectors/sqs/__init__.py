"""An SQS queue as an event source."""

from connectors.sqs.config import SqsSource
from connectors.sqs.connector import SqsConnector

__all__ = ["SqsConnector", "SqsSource"]
