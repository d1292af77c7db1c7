"""Dead letters: reading what on-failure destinations hold, and replaying it.

A *dead letter* is one failure record as a destination stored it: a line of a
``file://`` destination, a message of an ``sqs://`` queue or of a ``kafka://`` topic.
Its ``id`` is a hash of its stored bytes, so it is the same on every read and in every
process; identical copies (a destination write that was retried) are one dead letter.

Replaying a dead letter delivers its records again, once, to the mapping's function
through the function's configured target (as the engine does), or with ``to_source``
puts them back into the source they came from. What a failure record carries decides
how (``plan``):

- ``payload``: asynchronous records (S3, folders, schedules, event buses) carry the
  event as ``requestPayload``, and ``kafka://`` messages carry their record's event as
  ``payload``: that event is invoked again;
- ``re-read``: stream records (``KafkaBatchInfo`` with offset ranges per partition,
  ``DDBStreamBatchInfo`` with a shard's sequence numbers) carry only where the records
  are: they are read again from the source, while it still keeps them, and the
  mapping's filters are applied again (a range may hold records that were filtered out);
- anything else cannot be replayed, and says why (an SQS failure record names message
  ids only, the messages were deleted from their queue; a record that could not be
  shaped never reached the function).

A successful replay is marked in a ledger, ``<state_dir>/dlq/replayed.jsonl`` (fsynced,
one JSON line per replay, keyed by id), so the same dead letter is not replayed again by
accident; an ``sqs://`` dead letter is also deleted from its queue, as AWS's redrive
does. Destination files are never rewritten: the bridge may be appending to them.

Schemes and sources other than files live beside their connectors and are found by name
(the engine imports no concrete connector): a store factory ``factory(uri, source=...,
region=...)`` per scheme, ``reread(document, source=..., region=..., filters=...)`` per
batch-info key, ``put_back(event, source=..., region=...)`` per event source.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from bridge.config import BridgeConfig, MappingConfig
from bridge.destinations import FileDestination, destination_factory
from bridge.errors import BridgeError, ConfigError
from bridge.events import dumps, function_arn, iso_timestamp

__all__ = [
    "CannotReplay",
    "DeadLetter",
    "DeadLetterStore",
    "FileDeadLetters",
    "Ledger",
    "Plan",
    "StoredLetter",
    "dedupe",
    "destination_of",
    "mappings_named",
    "open_dead_letters",
    "open_store",
    "parse_document",
    "plan",
    "put_back",
    "rebuild_events",
    "stable_id",
]


class CannotReplay(BridgeError):
    """This dead letter cannot be replayed (the message says why); nothing was sent."""


@dataclass(slots=True)
class StoredLetter:
    """A failure record as read from its store: its id, where it is, the record (None
    when the stored bytes are not a JSON object: ``error`` says why), and the store's
    handles on it (SQS receipt handles; one per copy)."""

    id: str
    location: str
    document: dict[str, Any] | None
    error: str | None = None
    handles: list[Any] = field(default_factory=list)
    copies: int = 1


@dataclass(slots=True)
class DeadLetter:
    """A stored failure record attributed to a mapping, with the store it is in and its
    replay mark (None: not replayed yet)."""

    mapping: str
    destination: str
    stored: StoredLetter
    store: DeadLetterStore
    replayed: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        return self.stored.id

    @property
    def document(self) -> dict[str, Any]:
        return self.stored.document or {}

    @property
    def condition(self) -> str:
        if self.stored.document is None:
            return "Unreadable"
        context = self.document.get("requestContext")
        return str(context.get("condition", "?")) if isinstance(context, dict) else "?"

    @property
    def timestamp(self) -> float | None:
        """When it was dead-lettered (epoch seconds), from its ``timestamp``."""
        stamp = self.document.get("timestamp")
        if not isinstance(stamp, str):
            return None
        try:
            return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None

    @property
    def records(self) -> int | None:
        """How many source records it describes, when it says."""
        for key, value in self.document.items():
            if key.endswith("BatchInfo") and isinstance(value, dict):
                size = value.get("batchSize")
                return size if isinstance(size, int) else None
        return 1 if "requestPayload" in self.document else None

    def summary(self, now: float | None = None) -> dict[str, Any]:
        """A JSON-ready description (``dlq list --json``)."""
        stamp = self.timestamp
        how = plan(self.stored)
        return {
            "id": self.id,
            "mapping": self.mapping,
            "destination": self.destination,
            "location": self.stored.location,
            "copies": self.stored.copies,
            "condition": self.condition,
            "timestamp": iso_timestamp(stamp) if stamp is not None else None,
            "age_seconds": round((now or time.time()) - stamp, 3) if stamp else None,
            "records": self.records,
            "replay": {"how": how.how, "detail": how.detail},
            "replayed": self.replayed,
        }


class DeadLetterStore(Protocol):
    """Where a destination's failure records are read back from.

    ``read()`` returns every failure record stored now, in store order, deduplicated
    by id (copies counted). ``remove(letter)`` is called after a successful replay
    (SQS deletes the message; files and Kafka topics are append-only and keep it).
    ``aclose()`` frees what the store holds (SQS: messages received but not removed
    become visible again at once); it is idempotent.
    """

    uri: str

    async def read(self) -> list[StoredLetter]: ...

    async def remove(self, letter: StoredLetter) -> None: ...

    async def aclose(self) -> None: ...


def stable_id(data: bytes) -> str:
    """The id of a stored failure record: 16 hex digits of its bytes' SHA-256."""
    return hashlib.sha256(data).hexdigest()[:16]


def dedupe(letters: Sequence[StoredLetter]) -> list[StoredLetter]:
    """One letter per id, in first-seen order, with the copies' handles merged."""
    out: dict[str, StoredLetter] = {}
    for letter in letters:
        seen = out.get(letter.id)
        if seen is None:
            out[letter.id] = letter
        else:
            seen.copies += letter.copies
            seen.handles.extend(letter.handles)
    return list(out.values())


def parse_document(data: bytes, location: str) -> tuple[dict[str, Any] | None, str | None]:
    """The failure record in ``data``, or None and why it is not one."""
    try:
        document = json.loads(data)
    except ValueError as exc:
        return None, f"{location}: not JSON (a line torn by a crash?): {exc}"
    if not isinstance(document, dict):
        return None, f"{location}: not a JSON object"
    return document, None


class FileDeadLetters:
    """The failure records of a ``file://`` destination (JSON Lines). A line that is
    not a JSON object (torn by a crash) is a letter of its own with ``error`` naming
    ``file:line``; blank lines are skipped. A missing file holds no dead letters."""

    def __init__(self, uri: str, **_: Any) -> None:
        self.uri = uri
        self.path = Path(uri.removeprefix("file://"))

    async def read(self) -> list[StoredLetter]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ConfigError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        letters = []
        for number, line in enumerate(data.splitlines(), start=1):
            if not line.strip():
                continue
            location = f"{self.path}:{number}"
            document, error = parse_document(line, location)
            letters.append(StoredLetter(stable_id(line), location, document, error))
        return dedupe(letters)

    async def remove(self, letter: StoredLetter) -> None:
        return None

    async def aclose(self) -> None:
        return None


STORES: dict[str, str] = {
    "file": "bridge.dlq:FileDeadLetters",
    "kafka": "connectors.kafka.dlq:KafkaDeadLetters",
    "sqs": "connectors.sqs.dlq:SqsDeadLetters",
}
REREADERS: dict[str, str] = {
    "KafkaBatchInfo": "connectors.kafka.dlq:reread",
    "DDBStreamBatchInfo": "connectors.dynamodb_streams.dlq:reread",
}
PUT_BACK: dict[str, str] = {"SelfManagedKafka": "connectors.kafka.dlq:put_back"}


def _load(spec: str) -> Callable[..., Any]:
    module, _, attr = spec.partition(":")
    found: Callable[..., Any] = getattr(importlib.import_module(module), attr)
    return found


def destination_of(config: BridgeConfig, mapping: MappingConfig) -> str:
    """The on-failure destination URI of ``mapping`` (its default file when unset)."""
    if mapping.on_failure is not None:
        return mapping.on_failure.destination
    return f"file://{Path(config.state_dir) / 'failures' / (mapping.name + '.jsonl')}"


def mappings_named(config: BridgeConfig, name: str | None) -> list[MappingConfig]:
    """Every mapping, or the one called ``name``; raise ConfigError listing the known
    ones when there is none of that name."""
    if name is None:
        return list(config.mappings)
    for mapping in config.mappings:
        if mapping.name == name:
            return [mapping]
    known = ", ".join(m.name for m in config.mappings) or "none defined"
    raise ConfigError(f"unknown mapping {name!r} (mappings: {known})")


@contextlib.asynccontextmanager
async def open_store(
    config: BridgeConfig, mapping: MappingConfig, uri: str
) -> AsyncIterator[DeadLetterStore]:
    """The store of destination ``uri`` (a mapping's), closed on exit; raise
    ConfigError for a scheme that cannot be read back."""
    destination_factory(uri)  # the same scheme check and message as the engine's
    scheme = uri.partition("://")[0]
    if scheme not in STORES:
        raise ConfigError(f"dead letters at {uri!r} cannot be read back ({scheme}://)")
    source = config.source_config(mapping)
    store: DeadLetterStore = _load(STORES[scheme])(uri, source=source, region=config.region)
    try:
        yield store
    finally:
        await store.aclose()


def _owner(document: dict[str, Any] | None, arns: list[str]) -> int:
    """Which of several mappings sharing a destination a record belongs to: the first
    whose function ARN it names (else the first)."""
    context = (document or {}).get("requestContext")
    arn = context.get("functionArn", "") if isinstance(context, dict) else ""
    arn = str(arn).removesuffix(":$LATEST")
    return arns.index(arn) if arn in arns else 0


@contextlib.asynccontextmanager
async def open_dead_letters(
    config: BridgeConfig, mappings: Sequence[MappingConfig], ledger: Ledger
) -> AsyncIterator[list[DeadLetter]]:
    """The dead letters of ``mappings``, in destination order then store order, each
    attributed to one mapping (mappings sharing a destination: by function ARN), with
    its replay mark and its store, which stays open until the block exits. Raise
    ConfigError for a destination that cannot be read back, and the store's
    SourceUnavailable / ConfigError when it cannot be reached."""
    marks = ledger.marks()
    by_uri: dict[str, list[MappingConfig]] = {}
    for mapping in config.mappings:  # every mapping: sharing decides attribution
        by_uri.setdefault(destination_of(config, mapping), []).append(mapping)
    wanted = {m.name for m in mappings}
    letters: list[DeadLetter] = []
    async with contextlib.AsyncExitStack() as stack:
        for uri, sharing in by_uri.items():
            if not wanted & {m.name for m in sharing}:
                continue
            arns = [
                function_arn(_function_name(config, m), config.region, config.account_id)
                for m in sharing
            ]
            store = await stack.enter_async_context(open_store(config, sharing[0], uri))
            for stored in await store.read():
                owner = sharing[_owner(stored.document, arns)]
                if owner.name in wanted:
                    mark = marks.get(stored.id)
                    letters.append(DeadLetter(owner.name, uri, stored, store, mark))
        yield letters


def _function_name(config: BridgeConfig, mapping: MappingConfig) -> str:
    function = config.functions[mapping.function]
    return getattr(function, "function_name", None) or mapping.function


# ---------------------------------------------------------------- planning a replay


@dataclass(frozen=True, slots=True)
class Plan:
    """How a dead letter can be replayed: ``payload`` (the event is in the record),
    ``re-read`` (from the source, while it keeps the records), or ``None`` with
    ``detail`` saying why it cannot be."""

    how: Literal["payload", "re-read"] | None
    detail: str


def plan(stored: StoredLetter) -> Plan:
    """What ``stored`` allows (pure: reads nothing)."""
    doc = stored.document
    if doc is None:
        return Plan(None, stored.error or "not a failure record")
    if doc.get("requestPayload") is not None:
        return Plan("payload", "the event is in requestPayload")
    if isinstance(doc.get("payload"), dict):
        return Plan("payload", "the event is in payload")
    context = doc.get("requestContext")
    if isinstance(context, dict) and context.get("condition") == "RecordNotNormalized":
        return Plan(None, f"the record could not be shaped ({doc.get('errorMessage', '?')})")
    if "SQSBatchInfo" in doc:
        return Plan(
            None,
            "an SQS failure record names message ids only; the messages were deleted "
            "from their queue when they were dead-lettered",
        )
    info = doc.get("KafkaBatchInfo")
    if isinstance(info, dict) and "recordInfo" in info:
        return Plan(
            None,
            "this kafka:// failure record lost its payload (too large for the topic) and "
            "does not name its partition",
        )
    if isinstance(info, dict) and isinstance(info.get("recordsInfo"), dict):
        ranges = ", ".join(
            f"{name}@{r.get('firstRecordOffset')}..{r.get('lastRecordOffset')}"
            for name, r in info["recordsInfo"].items()
            if isinstance(r, dict)
        )
        return Plan("re-read", f"offsets {ranges}")
    info = doc.get("DDBStreamBatchInfo")
    if isinstance(info, dict):
        return Plan(
            "re-read",
            f"shard {info.get('shardId')} sequence numbers "
            f"{info.get('startSequenceNumber')}..{info.get('endSequenceNumber')}",
        )
    keys = [k for k in doc if k.endswith("BatchInfo")]
    if keys:
        return Plan(None, f"records of a {keys[0]} cannot be read again from their source")
    return Plan(None, "the record carries neither an event nor where its records are")


async def rebuild_events(
    letter: DeadLetter, config: BridgeConfig, mapping: MappingConfig
) -> list[bytes]:
    """The events to invoke for ``letter`` (the original ones: an empty list when
    re-read records all fail the mapping's filters now); raise CannotReplay saying why
    there are none (and, from a re-read, why the source no longer has them)."""
    how = plan(letter.stored)
    doc = letter.document
    if how.how is None:
        raise CannotReplay(how.detail)
    if how.how == "payload":
        event = doc.get("requestPayload")
        if event is None:
            event = doc["payload"]
        return [event.encode("utf-8") if isinstance(event, str) else dumps(event)]
    key = next(k for k in REREADERS if isinstance(doc.get(k), dict))
    try:
        reread = _load(REREADERS[key])
    except ImportError as exc:  # pragma: no cover - a connector left out of the install
        raise CannotReplay(f"records of a {key} cannot be read again here: {exc}") from exc
    filters = mapping.filter_criteria.compile() if mapping.filter_criteria else None
    source = config.source_config(mapping)
    events: list[bytes] = await reread(doc, source=source, region=config.region, filters=filters)
    return events


async def put_back(events: Sequence[bytes], config: BridgeConfig, mapping: MappingConfig) -> None:
    """Put the records of ``events`` back into the mapping's source; raise CannotReplay
    for a source they cannot be put back into."""
    source = config.source_config(mapping)
    for event in events:
        kind = json.loads(event).get("eventSource") if event.startswith(b"{") else None
        if kind not in PUT_BACK:
            raise CannotReplay(
                f"records of a {mapping.source['type']} source cannot be put back into it; "
                "replay without --to-source invokes the function"
            )
        await _load(PUT_BACK[kind])(event, source=source, region=config.region)


# ---------------------------------------------------------------- marking replays


class Ledger:
    """The replays done, ``<state_dir>/dlq/replayed.jsonl``: one JSON object per line
    (``id``, ``mapping``, ``destination``, ``location``, ``how``, ``at``), appended and
    fsynced before a replay counts as done. A line torn by a crash is ignored (that
    replay is not marked: at-least-once, like the rest of the bridge)."""

    def __init__(self, state_dir: str | Path) -> None:
        self.path = Path(state_dir) / "dlq" / "replayed.jsonl"
        self._file = FileDestination(self.path)

    def marks(self) -> dict[str, dict[str, Any]]:
        """The latest mark of every replayed id."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        out: dict[str, dict[str, Any]] = {}
        for line in data.splitlines():
            with contextlib.suppress(ValueError):
                mark = json.loads(line)
                if isinstance(mark, dict) and isinstance(mark.get("id"), str):
                    out[mark["id"]] = mark
        return out

    async def mark(self, letter: DeadLetter, how: str) -> dict[str, Any]:
        """Record that ``letter`` was replayed (durably); return the mark."""
        entry = {
            "id": letter.id,
            "mapping": letter.mapping,
            "destination": letter.destination,
            "location": letter.stored.location,
            "how": how,
            "at": iso_timestamp(time.time()),
        }
        await self._file.write([entry])
        return entry
