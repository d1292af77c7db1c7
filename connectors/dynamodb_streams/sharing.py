"""Several bridges on one DynamoDB Streams mapping: each reads the shards whose lease it
holds (:mod:`bridge.leases`), when the state store is shared (``state: {type: dynamodb}``).

Every ``lease_duration / 3`` a round runs: renew the leases held (a lost one: stop
reading its shard, drop what was read of it and not delivered, let the batches in flight
end and commit nothing more of it); learn which shards other bridges finished (from
their ``done`` checkpoints); create the leases of shards that have none; take leases
towards the fair share; and start reading each shard taken, right after the checkpoint
its last owner wrote (``AFTER_SEQUENCE_NUMBER``), or from the start of the shard.

Lineage across bridges: the lease of a child shard is taken only once its parent is
finished in the shared checkpoint, whichever bridge finished it. A finished shard's
lease is deleted; on a clean stop the leases held are released after the last commits,
so another bridge takes them at once. A bridge that dies keeps them until they expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine
from typing import Any

from bridge.checkpoints import CheckpointNamespace
from bridge.errors import CheckpointError
from bridge.leases import Leases
from connectors.dynamodb_streams.shards import SHARD_PREFIX, Shard

__all__ = ["ShardLeases"]

log = logging.getLogger(__name__)


class ShardLeases:
    """The lease side of one connector: which of its ``shards`` it reads now.

    ``start(shard)`` starts reading a shard (its checkpoint fields set); ``stop(shard)``
    stops reading it and drops what of it was read and not delivered; ``spawn(coro,
    name)`` runs a background task of the connector."""

    def __init__(
        self,
        leases: Leases,
        *,
        shards: dict[str, Shard],
        checkpoints: CheckpointNamespace,
        what: str,
        start: Callable[[Shard], None],
        stop: Callable[[Shard], Awaitable[None]],
        spawn: Callable[[Coroutine[Any, Any, None], str], object],
    ) -> None:
        self.leases = leases
        self._shards = shards
        self._checkpoints = checkpoints
        self._what = what
        self._start = start
        self._stop = stop
        self._spawn = spawn
        self._letting_go: set[str] = set()

    def holds(self, shard_id: str) -> bool:
        """Whether this bridge may read and commit the shard now."""
        return self.leases.holds(shard_id)

    async def run(self) -> None:
        """Rounds, forever. A round that fails (the state table cannot be reached) is
        logged and tried again; failing for longer than a lease lasts (every lease is
        lost by then) raises its ``CheckpointError``, and the mapping restarts."""
        failing_since: float | None = None
        while True:
            began = time.monotonic()
            try:
                await self.round()
                failing_since = None
            except CheckpointError as exc:
                failing_since = failing_since or began
                if began - failing_since > self.leases.duration:
                    raise
                log.warning("%s: a lease round failed: %s", self._what, exc)
            spent = time.monotonic() - began
            await asyncio.sleep(max(0.0, self.leases.renew_interval - spent))

    async def round(self) -> None:
        for shard_id in await self.leases.renew():
            self._letting_go.add(shard_id)
            self._spawn(self._let_go(shard_id), f"let-go:{shard_id}")
        await self._learn_finished()
        wanted = [i for i, s in self._shards.items() if not s.finished.is_set()]
        await self.leases.balance(wanted, self._eligible)
        for shard_id in self.leases.held:
            shard = self._shards.get(shard_id)
            if shard is None or shard.task is not None or shard_id in self._letting_go:
                continue
            if self.holds(shard_id):  # a stolen one only once its old owner has stopped
                await self._resume(shard)

    def _eligible(self, shard_id: str) -> bool:
        """A shard this bridge may take: known, not finished, not being let go, and its
        parent (if the stream still has it) finished."""
        shard = self._shards.get(shard_id)
        if shard is None or shard.finished.is_set() or shard_id in self._letting_go:
            return False
        parent = self._shards.get(shard.parent_id) if shard.parent_id else None
        return parent is None or parent is shard or parent.finished.is_set()

    async def _learn_finished(self) -> None:
        """Mark finished the shards another bridge finished (their children may start)."""
        saved = await self._checkpoints.items(SHARD_PREFIX)
        for shard in self._shards.values():
            if shard.finished.is_set() or self.holds(shard.shard_id):
                continue
            raw = saved.get(shard.key)
            if raw is not None and json.loads(raw).get("done"):
                shard.ended = True
                shard.finished.set()

    async def _resume(self, shard: Shard) -> None:
        """Start reading a shard just taken, after the checkpoint its last owner wrote."""
        raw = await self._checkpoints.get(shard.key)
        state = json.loads(raw) if raw is not None else {}
        if state.get("done"):
            shard.ended = True
            shard.finished.set()
            await self.leases.finish(shard.shard_id)
            return
        if raw is not None:
            shard.checkpoint = state.get("seq")
            shard.latest = bool(state.get("latest"))
        shard.last_read = None
        shard.ended = False
        log.info(
            "%s: reading shard %s after %s",
            self._what,
            shard.shard_id,
            shard.checkpoint or ("its end" if shard.latest else "its start"),
        )
        self._start(shard)

    async def _let_go(self, shard_id: str) -> None:
        try:
            shard = self._shards.get(shard_id)
            if shard is not None:
                await self._stop(shard)
        finally:
            self._letting_go.discard(shard_id)

    async def finished(self, shard: Shard) -> None:
        """The shard was read to its end and its last record committed (``done``
        written): its lease is not needed any more."""
        await self.leases.finish(shard.shard_id)

    async def drop(self, shard_ids: Collection[str]) -> None:
        """The shards are gone from the stream: delete their leases (best effort)."""
        with contextlib.suppress(CheckpointError):
            await self.leases.drop(shard_ids)

    async def release_all(self) -> None:
        """A clean stop, after the last commits: give every lease back."""
        await self.leases.release_all()
