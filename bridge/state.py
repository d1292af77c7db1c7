"""Where the bridge keeps its state: the ``state:`` setting and the store it opens.

``state: {type: sqlite}`` (the default) is one SQLite file in ``state_dir``, this
bridge's own. ``state: {type: dynamodb, table: NAME}`` is a DynamoDB table that several
bridges share: their checkpoints, and the leases with which they split a DynamoDB
stream's shards among themselves (:mod:`bridge.leases`).

The DynamoDB store lives beside the AWS connectors (``connectors/dynamodb_state``), where
the shared aiobotocore clients and botocore's error translation are; the engine finds it
by name, as it finds ``sqs://`` destinations, and never imports a connector itself.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from bridge.checkpoints import CheckpointStore, SqliteCheckpointStore
from bridge.errors import CheckpointError

__all__ = ["DynamoDBState", "SqliteState", "StateConfig", "open_store"]

#: the stores found by name: ``state.type`` -> ``module:factory``
STORES: dict[str, str] = {"dynamodb": "connectors.dynamodb_state:DynamoDBStateStore"}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SqliteState(_Model):
    """One SQLite file in ``state_dir`` (``checkpoints.sqlite3``), this bridge's own."""

    type: Literal["sqlite"] = "sqlite"


class DynamoDBState(_Model):
    """A DynamoDB table shared by several bridges: checkpoints and leases.

    Partition key ``namespace`` (S), sort key ``key`` (S); made (on demand, billed per
    request) when missing. Credentials: as given here, else the usual chain
    (environment, profile, instance role)."""

    type: Literal["dynamodb"]
    table: str = Field(
        min_length=3, max_length=255, pattern=r"^[A-Za-z0-9_.-]+$", description="e.g. bridge-state"
    )
    endpoint_url: str | None = Field(None, description="e.g. http://127.0.0.1:8000")
    region: str | None = Field(None, description="default: the bridge's region")
    lease_duration_seconds: float = Field(
        10.0,
        ge=1,
        le=3600,
        description="seconds a lease lasts without renewal (renewed every third of it); a "
        "bridge that died loses its shards after this long",
    )
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None


StateConfig = Annotated[SqliteState | DynamoDBState, Field(discriminator="type")]


def open_store(
    state: SqliteState | DynamoDBState, *, state_dir: str, region: str
) -> CheckpointStore:
    """The checkpoint store ``state`` names (a ``CheckpointStore``; the DynamoDB one is
    also a :class:`~bridge.leases.SharedStore`). Raises ``CheckpointError`` when the
    SQLite file cannot be used or the store's module is missing. A
    DynamoDB store reaches its table on first use (so an unreachable table is a mapping's
    retried ``CheckpointError``, not a refusal to start)."""
    if isinstance(state, SqliteState):
        return SqliteCheckpointStore(Path(state_dir) / "checkpoints.sqlite3")
    module_name, _, attr = STORES[state.type].partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise CheckpointError(f"state: type {state.type} is not available: {exc}") from exc
    store: CheckpointStore = factory(state, region=region)
    return store
