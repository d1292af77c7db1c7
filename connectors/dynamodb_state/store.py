"""The checkpoint store in a DynamoDB table that several bridges share (``state: {type:
dynamodb}``).

One table, partition key ``namespace`` (S, a mapping's name), sort key ``key`` (S), the
value in attribute ``value`` (S). Leases live in the same table under namespace
``lease:<mapping>`` (:mod:`connectors.dynamodb_state.leases`); a mapping's name cannot
hold a ``:``, so the two never meet.

Contract, as ``CheckpointNamespace`` (:mod:`bridge.checkpoints`) with DynamoDB's limits:

- Reads are strongly consistent: a read sees every write that returned, from any bridge.
- ``page`` walks keys in the byte order of their UTF-8 (DynamoDB's order of string sort
  keys, and S3's), in constant memory.
- ``write`` is atomic up to 100 keys and 4 MB (one ``TransactWriteItems``; one key is a
  plain ``PutItem``/``DeleteItem``). A larger write is split into transactions of up to
  100 keys applied in order, deletes first: each is atomic, but a failure or a crash
  between two leaves the first ones applied, so the namespace holds, key by key, the old
  or the new value (never a torn one). The ``CheckpointError`` then says how many
  transactions were applied; writing the same again completes it. ``clear`` is such a
  write of every key of the namespace.
- Keys must not be empty (DynamoDB's sort key cannot be); a value is at most about
  400 KB (DynamoDB's item size).
- Every failure raises ``CheckpointError`` naming the table and the cause; a write that
  raised may or may not have been applied (a timeout), as with any remote store.

The table is made (on demand billing) when it is missing, on first use, and used once it
is active; a table whose keys are not ``namespace``/``key`` strings is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from bridge.errors import CheckpointError, ConfigError, SourceUnavailable
from bridge.state import DynamoDBState
from connectors.aws import AwsClientOptions, create_client, translate_errors

if TYPE_CHECKING:
    from connectors.dynamodb_state.leases import DynamoDBLeaseTable

__all__ = ["Conflict", "DynamoDBNamespace", "DynamoDBStateStore", "error_code"]

log = logging.getLogger(__name__)

KEY_SCHEMA = [
    {"AttributeName": "namespace", "KeyType": "HASH"},
    {"AttributeName": "key", "KeyType": "RANGE"},
]
MAX_TRANSACTION_ITEMS = 100  # TransactWriteItems' limit
MAX_TRANSACTION_BYTES = 3_500_000  # under its 4 MB, leaving room for the request's framing
ACTIVE_TIMEOUT = 120.0  # seconds to wait for a new table to become active


class Conflict(Exception):
    """A conditional write found the item changed (``ConditionalCheckFailedException``)."""


class DynamoDBStateStore:
    """A ``CheckpointStore`` and ``SharedStore`` (:mod:`bridge.leases`) on one DynamoDB
    table; see the module docstring. Built from the ``state:`` setting; it reaches the
    table on first use, with a client shared by everything on the same endpoint."""

    def __init__(self, state: DynamoDBState, *, region: str) -> None:
        self.table = state.table
        self.lease_duration = state.lease_duration_seconds
        self.what = f"DynamoDB state table {state.table}"
        self._options = AwsClientOptions(
            endpoint_url=state.endpoint_url,
            region=state.region,
            aws_access_key_id=state.aws_access_key_id,
            aws_secret_access_key=state.aws_secret_access_key,
            aws_session_token=state.aws_session_token,
        )
        self._region = region
        self._client: Any = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._opening: asyncio.Lock | None = None
        self._closing: asyncio.Task[None] | None = None

    def namespace(self, name: str) -> DynamoDBNamespace:
        return DynamoDBNamespace(self, name)

    def lease_table(self, group: str) -> DynamoDBLeaseTable:
        from connectors.dynamodb_state.leases import DynamoDBLeaseTable

        return DynamoDBLeaseTable(self, group)

    # ------------------------------------------------------------ the client

    async def call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        """One DynamoDB API call on the table's client. Raises ``Conflict`` when a
        condition failed, ``CheckpointError`` for everything else."""
        client = await self._ready()
        with self.translated():
            answer: dict[str, Any] = await getattr(client, operation)(**kwargs)
            return answer

    @contextlib.contextmanager
    def translated(self) -> Iterator[None]:
        """botocore's errors inside as ``Conflict`` or ``CheckpointError``."""
        try:
            with translate_errors(self.what):
                try:
                    yield
                except ClientError as exc:
                    if error_code(exc) == "ConditionalCheckFailedException":
                        raise Conflict(str(exc)) from exc
                    raise
        except (ConfigError, SourceUnavailable) as exc:
            raise CheckpointError(str(exc)) from exc

    async def _ready(self) -> Any:
        """The client, once the table is there and active."""
        if self._client is not None:
            return self._client
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._client is None:
                stack = contextlib.AsyncExitStack()
                try:
                    with self.translated():
                        client = await stack.enter_async_context(
                            create_client("dynamodb", self._options, self._region)
                        )
                    await self._ensure_table(client)
                except BaseException:
                    await stack.aclose()
                    raise
                self._stack, self._client = stack, client
        return self._client

    async def _ensure_table(self, client: Any) -> None:
        try:
            with self.translated():
                table = (await client.describe_table(TableName=self.table))["Table"]
        except CheckpointError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
            table = await self._create_table(client)
        schema = sorted(table.get("KeySchema", []), key=lambda k: k["KeyType"])
        types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
        if schema != KEY_SCHEMA or types.get("namespace") != "S" or types.get("key") != "S":
            raise CheckpointError(
                f"{self.what} has keys {schema} ({types}); the state needs partition key "
                "'namespace' (S) and sort key 'key' (S): name another table"
            )
        waited = 0.0
        while table.get("TableStatus") != "ACTIVE":
            if waited >= ACTIVE_TIMEOUT:
                raise CheckpointError(f"{self.what} is not active after {ACTIVE_TIMEOUT:.0f}s")
            await asyncio.sleep(1.0)
            waited += 1.0
            with self.translated():
                table = (await client.describe_table(TableName=self.table))["Table"]

    async def _create_table(self, client: Any) -> dict[str, Any]:
        attributes = [
            {"AttributeName": "namespace", "AttributeType": "S"},
            {"AttributeName": "key", "AttributeType": "S"},
        ]
        try:
            with self.translated():
                created = await client.create_table(
                    TableName=self.table,
                    KeySchema=KEY_SCHEMA,
                    AttributeDefinitions=attributes,
                    BillingMode="PAY_PER_REQUEST",
                )
            log.info("%s was missing: made it", self.what)
            description: dict[str, Any] = created["TableDescription"]
            return description
        except CheckpointError as exc:
            if error_code(exc) != "ResourceInUseException":
                raise
            with self.translated():  # another bridge made it at the same moment
                answer = await client.describe_table(TableName=self.table)
            table: dict[str, Any] = answer["Table"]
            return table

    def close(self) -> None:
        """Nothing for a store never used; else its client is closed in the background
        (``aclose`` waits for it)."""
        if self._stack is not None and self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self.aclose())

    async def aclose(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    # ------------------------------------------------------------ checkpoints

    async def query(
        self, namespace: str, *, prefix: str = "", after: str | None = None, limit: int = 0
    ) -> list[dict[str, Any]]:
        """The items of ``namespace`` whose key starts with ``prefix``, after ``after``, in
        key order; at most ``limit`` of them (0: all)."""
        names = {"#n": "namespace"}
        values: dict[str, Any] = {":n": {"S": namespace}}
        condition = "#n = :n"
        if prefix:
            condition += " AND begins_with(#k, :p)"
            names["#k"] = "key"
            values[":p"] = {"S": prefix}
        if after and prefix and not after.startswith(prefix):
            if after > prefix:  # code point order is UTF-8's byte order
                return []  # after every key with the prefix
            after = None  # before them all
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ConsistentRead": True,
        }
        if after:
            kwargs["ExclusiveStartKey"] = {"namespace": {"S": namespace}, "key": {"S": after}}
        items: list[dict[str, Any]] = []
        async for page in self._pages(kwargs, limit):
            items.extend(page)
        return items[:limit] if limit else items

    async def _pages(self, kwargs: dict[str, Any], limit: int) -> AsyncIterator[list[Any]]:
        got = 0
        while True:
            if limit:
                kwargs["Limit"] = limit - got
            answer = await self.call("query", **kwargs)
            items = answer.get("Items", [])
            got += len(items)
            yield items
            last = answer.get("LastEvaluatedKey")
            if not last or (limit and got >= limit):
                return
            kwargs["ExclusiveStartKey"] = last

    async def write(self, namespace: str, put: Mapping[str, str], delete: Iterable[str]) -> None:
        """See the module docstring (atomicity)."""
        deletes = [k for k in dict.fromkeys(delete) if k not in put]
        for key in [*deletes, *put]:
            if not key:
                raise CheckpointError(f"{self.what}: empty key in namespace {namespace}")
        actions: list[dict[str, Any]] = [
            {"Delete": {"TableName": self.table, "Key": _key(namespace, k)}} for k in deletes
        ]
        actions += [
            {"Put": {"TableName": self.table, "Item": {**_key(namespace, k), "value": {"S": v}}}}
            for k, v in put.items()
        ]
        if len(actions) == 1:
            [(kind, action)] = actions[0].items()
            await self.call("put_item" if kind == "Put" else "delete_item", **action)
            return
        chunks = _chunks(actions)
        for done, chunk in enumerate(chunks):
            try:
                await self.call("transact_write_items", TransactItems=chunk)
            except CheckpointError as exc:
                if done:
                    raise CheckpointError(
                        f"{exc} (after {done} of the {len(chunks)} transactions of this "
                        "write were applied)"
                    ) from exc
                raise


class DynamoDBNamespace:
    """The checkpoints of one mapping (``CheckpointNamespace``)."""

    def __init__(self, store: DynamoDBStateStore, name: str) -> None:
        self._store = store
        self.name = name

    async def get(self, key: str) -> str | None:
        if not key:
            return None
        answer = await self._store.call(
            "get_item",
            TableName=self._store.table,
            Key=_key(self.name, key),
            ConsistentRead=True,
        )
        value = answer.get("Item", {}).get("value", {}).get("S")
        return None if value is None else str(value)

    async def items(self, prefix: str = "") -> dict[str, str]:
        return dict(_pairs(await self._store.query(self.name, prefix=prefix)))

    async def page(self, after: str | None, limit: int, prefix: str = "") -> list[tuple[str, str]]:
        if limit <= 0:
            return []
        return _pairs(await self._store.query(self.name, prefix=prefix, after=after, limit=limit))

    async def write(self, put: Mapping[str, str], delete: Iterable[str] = ()) -> None:
        await self._store.write(self.name, dict(put), list(delete))

    async def clear(self) -> None:
        keys = [item["key"]["S"] for item in await self._store.query(self.name)]
        if keys:
            await self._store.write(self.name, {}, keys)


def error_code(exc: BaseException | None) -> str:
    """The AWS error code behind a translated error ('' when there is none)."""
    while exc is not None:
        if isinstance(exc, ClientError):
            return str(exc.response.get("Error", {}).get("Code", ""))
        exc = exc.__cause__
    return ""


def _key(namespace: str, key: str) -> dict[str, Any]:
    return {"namespace": {"S": namespace}, "key": {"S": key}}


def _pairs(items: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(item["key"]["S"], item.get("value", {}).get("S", "")) for item in items]


def _size(action: dict[str, Any]) -> int:
    """About the bytes an action adds to a transaction."""
    [(_, body)] = action.items()
    item = body.get("Item") or body["Key"]
    return 100 + sum(len(k) + len(next(iter(v.values())).encode()) for k, v in item.items())


def _chunks(actions: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Transactions of at most ``MAX_TRANSACTION_ITEMS`` actions and about
    ``MAX_TRANSACTION_BYTES``, in order."""
    chunks: list[list[dict[str, Any]]] = [[]]
    size = 0
    for action in actions:
        grows = _size(action)
        if chunks[-1] and (
            len(chunks[-1]) >= MAX_TRANSACTION_ITEMS or size + grows > MAX_TRANSACTION_BYTES
        ):
            chunks.append([])
            size = 0
        chunks[-1].append(action)
        size += grows
    return chunks
