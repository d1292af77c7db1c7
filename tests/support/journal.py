"""A persistent, ordered test source: the lines of a JSONL file, one record each.

Line ``n`` of ``path`` is record ``n`` of partition ``str(n % partitions)``; the
committed position per partition is kept in the checkpoint store, so it behaves
like a small Kafka topic: a restart resumes after the last committed line, and
uncommitted lines are read again. New lines appended while running are picked up.
"""

from __future__ import annotations

import asyncio
import builtins
import json
from collections.abc import AsyncIterator, Hashable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from bridge.connector import BaseConnector, ConnectorContext, FailureContext, Record
from bridge.errors import NormalizeError, SourceUnavailable
from bridge.events import stream_failure_base


class JournalSource(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["journal"]
    path: str
    partitions: int = 1
    poll_seconds: float = 0.02
    fail_opens: int = 0  # the first N opens of this journal raise SourceUnavailable
    fail_read_at_line: int | None = None  # the first read reaching this line raises
    bug_at_line: int | None = None  # building the first event with this line raises a bug


_faults: dict[str, int] = {}  # per journal path: how many faults were injected so far


class JournalConnector(BaseConnector):
    type: ClassVar[str] = "journal"
    config_model: ClassVar[builtins.type[JournalSource]] = JournalSource
    ordered: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {"batch_size": 10, "maximum_batching_window_seconds": 0}

    def __init__(self, config: JournalSource, context: ConnectorContext) -> None:
        self.config = config
        self.context = context
        self.committed: dict[str, int] = {}

    async def open(self) -> None:
        key = f"open:{self.config.path}"
        if _faults.get(key, 0) < self.config.fail_opens:
            _faults[key] = _faults.get(key, 0) + 1
            raise SourceUnavailable(f"journal {self.config.path} is not reachable (injected)")
        for key, value in (await self.context.checkpoints.items()).items():
            self.committed[key] = int(value)

    async def read(self) -> AsyncIterator[Sequence[Record]]:
        path = Path(self.config.path)
        n = 0
        offset = 0
        while True:
            data = path.read_bytes() if path.exists() else b""
            chunk: list[Record] = []
            while True:
                end = data.find(b"\n", offset)
                if end < 0:
                    break
                line = data[offset:end]
                offset = end + 1
                if n == self.config.fail_read_at_line and not _faults.get(f"read:{path}"):
                    _faults[f"read:{path}"] = 1
                    raise SourceUnavailable(f"journal {path}: read failed at line {n} (injected)")
                part = str(n % self.config.partitions)
                if n > self.committed.get(part, -1):
                    chunk.append(Record(partition=part, position=n, data=line))
                n += 1
            if chunk:
                yield chunk
            else:
                await asyncio.sleep(self.config.poll_seconds)

    def normalize(self, record: Record) -> dict[str, Any]:
        try:
            body = json.loads(record.data)
        except ValueError as exc:
            raise NormalizeError(f"line {record.position}: not JSON: {exc}") from exc
        return {"line": record.position, "partition": record.partition, "body": body}

    def encode_event(self, records: Sequence[Record]) -> bytes:
        bug = self.config.bug_at_line
        key = f"bug:{self.config.path}"
        if bug is not None and any(r.position == bug for r in records) and not _faults.get(key):
            _faults[key] = 1
            raise RuntimeError(f"journal {self.config.path}: a bug at line {bug} (injected)")
        return super().encode_event(records)

    def item_identifier(self, record: Record) -> Hashable:
        return str(record.position)

    def failure_record(self, records: Sequence[Record], ctx: FailureContext) -> dict[str, Any]:
        doc = stream_failure_base(ctx, 0)
        doc["JournalBatchInfo"] = {
            "partition": records[0].partition,
            "firstLine": records[0].position,
            "lastLine": records[-1].position,
            "batchSize": len(records),
        }
        return doc

    async def commit(self, records: Sequence[Record]) -> None:
        last = records[-1]
        self.committed[last.partition] = last.position
        await self.context.checkpoints.write({last.partition: str(last.position)})

    async def aclose(self) -> None:
        return None


class UnorderedJournalSource(JournalSource):
    type: Literal["journal_unordered"]  # type: ignore[assignment]


class UnorderedJournalConnector(JournalConnector):
    """The same journal, but records settle and commit independently (like SQS)."""

    type: ClassVar[str] = "journal_unordered"
    config_model: ClassVar[builtins.type[JournalSource]] = UnorderedJournalSource
    ordered: ClassVar[bool] = False

    async def commit(self, records: Sequence[Record]) -> None:
        return None  # nothing to checkpoint in tests of unordered delivery
