"""The shared state store in a DynamoDB table (``state: {type: dynamodb}``): checkpoints,
and the leases with which several bridges split a DynamoDB stream's shards."""

from connectors.dynamodb_state.leases import DynamoDBLeaseTable
from connectors.dynamodb_state.store import DynamoDBStateStore

__all__ = ["DynamoDBLeaseTable", "DynamoDBStateStore"]
