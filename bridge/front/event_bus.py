"""An EventBridge-compatible event bus: ``PutEvents`` in, rules' spools out.

The bridge serves EventBridge's JSON 1.1 API (``POST /`` with ``X-Amz-Target:
AWSEvents.<Operation>``) on the bus's port, so an application calls
``boto3.client("events", endpoint_url=...).put_events(...)`` unchanged:

- ``PutEvents``: 1 to 10 entries and 256 KB at most (entry sizes counted as
  EventBridge's "Calculating PutEvents event entry size": ``Time`` 14 bytes, the UTF-8
  bytes of ``Source``, ``DetailType``, ``Detail`` and each of ``Resources``), else
  ``ValidationException``. Each entry needs ``Source``, ``DetailType`` and a ``Detail``
  that is a JSON object (``InvalidArgument``, ``MalformedDetail`` with AWS's messages);
  an ``EventBusName`` (name or ARN) must be this bus. A valid entry becomes EventBridge's
  event envelope and is appended to the spool of every rule whose pattern matches it;
  the answer is sent once those appends are on disk, so an ``EventId`` given out is an
  event no ``kill -9`` loses. A rule whose spool is full fails the entry with
  ``ThrottlingException`` (clients retry those).
- ``ListRules`` and ``DescribeRule``: the rules (the ``eventbridge`` mappings naming this
  bus), as AWS lists them.

Rules are evaluated when an event is put, as EventBridge does: a rule added later does
not see events put before.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bridge import telemetry
from bridge.events import dumps, eventbridge_event
from bridge.filtering import Pattern
from bridge.front.config import EventBusConfig
from bridge.front.listener import Listener
from bridge.spool import Spool, SpoolError, folder_of, shared

__all__ = ["MAX_ENTRIES", "MAX_REQUEST_BYTES", "EventBusServer", "Rule", "entry_size"]

_log = logging.getLogger(__name__)

MAX_ENTRIES = 10
MAX_REQUEST_BYTES = 256 * 1024


@dataclass(frozen=True)
class Rule:
    """A rule of the bus: the ``eventbridge`` mapping ``name`` and its compiled pattern
    (``text`` as written, for ``DescribeRule``)."""

    name: str
    pattern: Pattern
    text: str
    enabled: bool = True


def entry_size(entry: dict[str, Any]) -> int:
    """An entry's size as EventBridge counts it."""
    size = 14 if entry.get("Time") is not None else 0
    for key in ("Source", "DetailType", "Detail"):
        value = entry.get(key)
        if isinstance(value, str):
            size += len(value.encode("utf-8"))
    for resource in entry.get("Resources") or []:
        if isinstance(resource, str):
            size += len(resource.encode("utf-8"))
    return size


class _Invalid(Exception):
    def __init__(self, kind: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.kind, self.message, self.status = kind, message, status


class EventBusServer:
    """Serves one bus; ``start()`` opens the rules' spools and binds (``OSError``: a port
    in use), ``aclose()`` stops and lets the spools go."""

    def __init__(
        self,
        config: EventBusConfig,
        rules: Sequence[Rule],
        *,
        state_dir: str,
        region: str,
        account_id: str,
    ) -> None:
        self.config = config
        self.rules = list(rules)
        self._state_dir = state_dir
        self._region = region
        self._account = account_id
        self.arn = f"arn:aws:events:{region}:{account_id}:event-bus/{config.name}"
        self._spools: dict[str, Spool] = {}
        self._server = web.Server(self._handle, access_log=None)
        self._listener: Listener | None = None
        self.address = ""

    async def start(self) -> str:
        for rule in self.rules:
            folder = folder_of(self._state_dir, rule.name)
            self._spools[rule.name] = await shared.acquire(
                folder, max_bytes=self.config.spool_max_bytes
            )
        listener = Listener(self._server, self.config.host, self.config.port)
        self.address = await listener.start()
        self._listener = listener
        return self.address

    async def aclose(self, grace: float = 5.0) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.aclose()
        await self._server.shutdown(grace)
        if listener is not None:
            listener.abort()
        spools, self._spools = list(self._spools.values()), {}
        for spool in spools:
            await shared.release(spool)

    # ------------------------------------------------------------ the API

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        target = request.headers.get("X-Amz-Target", "")
        operation = target.removeprefix("AWSEvents.")
        try:
            if request.method != "POST" or not target.startswith("AWSEvents."):
                raise _Invalid("UnknownOperationException", f"unknown operation {target!r}")
            try:
                body = json.loads(await request.read() or b"{}")
            except ValueError as exc:
                raise _Invalid("SerializationException", f"the body is not JSON: {exc}") from None
            if not isinstance(body, dict):
                raise _Invalid("SerializationException", "the body is not a JSON object")
            if operation == "PutEvents":
                answer = await self._put_events(body)
            elif operation == "ListRules":
                answer = self._list_rules(body)
            elif operation == "DescribeRule":
                answer = self._describe_rule(body)
            else:
                raise _Invalid("UnknownOperationException", f"{operation} is not served here")
        except _Invalid as exc:
            return _json({"__type": exc.kind, "message": exc.message}, exc.status)
        return _json(answer, 200)

    async def _put_events(self, body: dict[str, Any]) -> dict[str, Any]:
        entries = body.get("Entries")
        if not isinstance(entries, list) or not entries:
            raise _Invalid(
                "ValidationException",
                "1 validation error detected: Value null at 'entries' failed to satisfy "
                "constraint: Member must not be null",
            )
        if len(entries) > MAX_ENTRIES:
            raise _Invalid(
                "ValidationException",
                f"1 validation error detected: Value '{len(entries)} entries' at 'entries' "
                "failed to satisfy constraint: Member must have length less than or equal "
                "to 10",
            )
        if sum(entry_size(e) for e in entries if isinstance(e, dict)) > MAX_REQUEST_BYTES:
            raise _Invalid(
                "ValidationException", "Total size of the entries in the request is over the limit."
            )
        results: list[dict[str, Any]] = []
        stored: list[tuple[Spool, int]] = []
        for entry in entries:
            problem = self._check_entry(entry)
            if problem is not None:
                results.append(problem)
                continue
            event = self._event(entry)
            payload = dumps(event)
            spools = [
                self._spools[rule.name]
                for rule in self.rules
                if rule.enabled and rule.pattern.matches(event)
            ]
            if any(spool.size >= spool.max_bytes for spool in spools):
                results.append(_failed("ThrottlingException", "Rate exceeded."))
                continue  # stored for none of its rules: a retry duplicates nothing
            try:
                for spool in spools:
                    stored.append((spool, await spool.append(payload)))
            except SpoolError as exc:
                _log.error("event bus %s: cannot store an event: %s", self.config.name, exc)
                results.append(_failed("InternalFailure", "Internal service error."))
                continue
            results.append({"EventId": event["id"]})
        try:
            await asyncio.gather(*(spool.durable(seq) for spool, seq in stored))
        except SpoolError as exc:
            _log.error("event bus %s: cannot sync its events: %s", self.config.name, exc)
            raise _Invalid("InternalException", "Internal service error.", 500) from None
        failed = sum(1 for r in results if "ErrorCode" in r)
        telemetry.emit(
            telemetry.BUS_PUT,
            bus=self.config.name,
            entries=len(entries),
            failed=failed,
            stored=len(stored),
            level=logging.DEBUG,
        )
        return {"FailedEntryCount": failed, "Entries": results}

    def _check_entry(self, entry: Any) -> dict[str, str] | None:
        if not isinstance(entry, dict):
            return _failed("InvalidArgument", "Parameter Entry is not valid.")
        for key in ("Source", "DetailType", "Detail"):
            if not entry.get(key):
                return _failed(
                    "InvalidArgument",
                    f"Parameter {key} is not valid. Reason: {key} is a required argument.",
                )
        try:
            detail = json.loads(entry["Detail"])
        except (TypeError, ValueError):
            detail = None
        if not isinstance(detail, dict):
            return _failed("MalformedDetail", "Detail is malformed.")
        bus = entry.get("EventBusName")
        if bus not in (None, "", self.config.name, self.arn):
            return _failed(
                "InvalidArgument",
                f"Parameter EventBusName is not valid. Reason: this is {self.config.name}.",
            )
        return None

    def _event(self, entry: dict[str, Any]) -> dict[str, Any]:
        given = entry.get("Time")
        moment = float(given) if isinstance(given, int | float) else time.time()
        resources = entry.get("Resources") or []
        return eventbridge_event(
            detail_type=entry["DetailType"],
            source=entry["Source"],
            detail=json.loads(entry["Detail"]),
            account=self._account,
            region=self._region,
            moment=moment,
            resources=[r for r in resources if isinstance(r, str)],
        )

    def _rule_document(self, rule: Rule) -> dict[str, Any]:
        return {
            "Name": rule.name,
            "Arn": f"arn:aws:events:{self._region}:{self._account}:rule/"
            + (rule.name if self.config.name == "default" else f"{self.config.name}/{rule.name}"),
            "EventPattern": rule.text,
            "State": "ENABLED" if rule.enabled else "DISABLED",
            "EventBusName": self.config.name,
        }

    def _list_rules(self, body: dict[str, Any]) -> dict[str, Any]:
        prefix = body.get("NamePrefix") or ""
        rules = [self._rule_document(r) for r in self.rules if r.name.startswith(prefix)]
        return {"Rules": rules}

    def _describe_rule(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("Name")
        for rule in self.rules:
            if rule.name == name:
                return {**self._rule_document(rule), "CreatedBy": self._account}
        raise _Invalid(
            "ResourceNotFoundException",
            f"Rule {name} does not exist on EventBus {self.config.name}.",
        )


def _failed(code: str, message: str) -> dict[str, str]:
    return {"ErrorCode": code, "ErrorMessage": message}


def _json(document: dict[str, Any], status: int) -> web.Response:
    return web.Response(
        status=status, body=dumps(document), content_type="application/x-amz-json-1.1"
    )
