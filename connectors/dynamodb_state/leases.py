"""Leases in the DynamoDB state table (``LeaseTable``, :mod:`bridge.leases`).

A group's leases are items of namespace ``lease:<group>``: ``key`` the lease's key,
``counter`` (N), and ``owner`` (S, absent while the lease is free). Every change is one
conditional write (``ConditionExpression`` on the counter and the owner as the writer
last saw them), so of two bridges that race for a lease exactly one write succeeds.
"""

from __future__ import annotations

from typing import Any

from bridge.leases import Lease
from connectors.dynamodb_state.store import Conflict, DynamoDBStateStore

__all__ = ["DynamoDBLeaseTable"]

_NAMES = {"#k": "key", "#o": "owner", "#c": "counter"}


class DynamoDBLeaseTable:
    """The leases of one group in a ``DynamoDBStateStore``'s table."""

    def __init__(self, store: DynamoDBStateStore, group: str) -> None:
        self._store = store
        self.group = group
        self.namespace = f"lease:{group}"

    def _key(self, key: str) -> dict[str, Any]:
        return {"namespace": {"S": self.namespace}, "key": {"S": key}}

    async def list(self) -> list[Lease]:
        return [
            Lease(
                key=item["key"]["S"],
                owner=item["owner"]["S"] if "owner" in item else None,
                counter=int(item["counter"]["N"]),
            )
            for item in await self._store.query(self.namespace)
        ]

    async def create(self, key: str) -> Lease | None:
        try:
            await self._store.call(
                "put_item",
                TableName=self._store.table,
                Item={**self._key(key), "counter": {"N": "0"}},
                ConditionExpression="attribute_not_exists(#k)",
                ExpressionAttributeNames={"#k": "key"},
            )
        except Conflict:
            return None
        return Lease(key, None, 0)

    async def _update(self, lease: Lease, update: str, owner: str | None = None) -> bool:
        """``update`` on the lease if it is still as given (``:me`` is ``owner``)."""
        values: dict[str, Any] = {":c": {"N": str(lease.counter)}, ":one": {"N": "1"}}
        if owner is not None:
            values[":me"] = {"S": owner}
        try:
            await self._store.call(
                "update_item",
                TableName=self._store.table,
                Key=self._key(lease.key),
                UpdateExpression=update,
                ExpressionAttributeNames=_NAMES,
                ExpressionAttributeValues={**values, **_was(lease)},
                ConditionExpression=_unchanged(lease),
            )
        except Conflict:
            return False
        return True

    async def take(self, lease: Lease, owner: str) -> Lease | None:
        if await self._update(lease, "SET #o = :me, #c = #c + :one", owner):
            return Lease(lease.key, owner, lease.counter + 1)
        return None

    async def renew(self, lease: Lease) -> Lease | None:
        if lease.owner is None:
            return None
        return await self.take(lease, lease.owner)

    async def release(self, lease: Lease) -> bool:
        return await self._update(lease, "REMOVE #o SET #c = #c + :one")

    async def delete(self, lease: Lease) -> bool:
        try:
            await self._store.call(
                "delete_item",
                TableName=self._store.table,
                Key=self._key(lease.key),
                ExpressionAttributeNames=_NAMES,
                ExpressionAttributeValues={":c": {"N": str(lease.counter)}, **_was(lease)},
                ConditionExpression=_unchanged(lease),
            )
        except Conflict:
            return False
        return True


def _unchanged(lease: Lease) -> str:
    """The condition: the item exists with the lease's counter and owner."""
    owner = "attribute_not_exists(#o)" if lease.owner is None else "#o = :was"
    return f"attribute_exists(#k) AND #c = :c AND {owner}"


def _was(lease: Lease) -> dict[str, Any]:
    return {} if lease.owner is None else {":was": {"S": lease.owner}}
