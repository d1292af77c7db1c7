"""A DynamoDB table's stream as an event source."""

from connectors.dynamodb_streams.config import DynamoDBStreamsSource
from connectors.dynamodb_streams.connector import DynamoDBStreamsConnector

__all__ = ["DynamoDBStreamsConnector", "DynamoDBStreamsSource"]
