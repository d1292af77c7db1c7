"""Replaying dead letters (:mod:`bridge.dlq`) once each.

``Replayer.replay(letter)`` delivers one dead letter's records again and returns
an ``Outcome``; it never raises for the letter's own problems. The function is invoked
through the target its ``functions:`` entry configures, built and started as the engine
does (a ``runtime`` function's processes are started for the replay and stopped by
``aclose()``); each event is invoked once, without the mapping's retries: a replay that
fails is reported and can be run again. With ``ReportBatchItemFailures`` a response
naming failed items fails the replay too.

Only a replay that succeeded is marked (in the ledger, then removed from an ``sqs://``
queue); a letter already marked is skipped unless ``force``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from bridge.config import BridgeConfig, MappingConfig
from bridge.dlq import (
    CannotReplay,
    DeadLetter,
    Ledger,
    put_back,
    rebuild_events,
)
from bridge.errors import BridgeError, DeliveryError
from bridge.events import new_request_id
from bridge.targets import Target, build_target

__all__ = ["Outcome", "Replayer"]

Status = Literal["replayed", "skipped", "failed", "cannot"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one dead letter: ``replayed`` (delivered and marked), ``skipped``
    (replayed before), ``failed`` (the function or the source refused it: it may work
    another time) or ``cannot`` (it can never be replayed: ``detail`` says why)."""

    letter: DeadLetter
    status: Status
    detail: str = ""


class Replayer:
    """Replays dead letters of ``config``; ``aclose()`` stops the targets it started."""

    def __init__(
        self, config: BridgeConfig, *, to_source: bool = False, force: bool = False
    ) -> None:
        self.config = config
        self.to_source = to_source
        self.force = force
        self.ledger = Ledger(config.state_dir)
        self._mappings = {m.name: m for m in config.mappings}
        self._targets: dict[str, Target] = {}

    async def replay(self, letter: DeadLetter) -> Outcome:
        if letter.replayed is not None and not self.force:
            return Outcome(letter, "skipped", f"replayed at {letter.replayed.get('at')}")
        mapping = self._mappings[letter.mapping]
        try:
            events = await rebuild_events(letter, self.config, mapping)
            if self.to_source:
                await put_back(events, self.config, mapping)
            else:
                for event in events:
                    await self._invoke(mapping, event)
        except CannotReplay as exc:
            return Outcome(letter, "cannot", str(exc))
        except BridgeError as exc:
            return Outcome(letter, "failed", _describe(exc))
        letter.replayed = await self.ledger.mark(
            letter, "to-source" if self.to_source else "invoke"
        )
        try:
            await letter.store.remove(letter.stored)
        except BridgeError as exc:  # marked anyway: it was delivered
            return Outcome(letter, "replayed", f"delivered, but not removed: {exc}")
        detail = "" if events else "no record passes the mapping's filters now"
        return Outcome(letter, "replayed", detail)

    async def _invoke(self, mapping: MappingConfig, event: bytes) -> None:
        target = await self._target(mapping.function)
        response = await target.invoke(event, request_id=new_request_id(), timeout=None)
        if mapping.report_batch_item_failures:
            failed = _batch_item_failures(response)
            if failed:
                raise DeliveryError(f"the function reported {failed} failed items")

    async def _target(self, name: str) -> Target:
        target = self._targets.get(name)
        if target is None:
            target = build_target(name, self.config.functions[name], self.config)
            try:
                await target.start()
            except BaseException:
                await target.aclose()
                raise
            self._targets[name] = target
        return target

    async def aclose(self) -> None:
        targets, self._targets = list(self._targets.values()), {}
        for target in targets:
            await target.aclose()


def _batch_item_failures(response: bytes) -> int:
    try:
        document = json.loads(response)
    except ValueError:
        return 0
    failures = document.get("batchItemFailures") if isinstance(document, dict) else None
    return len(failures) if isinstance(failures, list) else 0


def _describe(exc: BridgeError) -> str:
    kind = type(exc).__name__
    error_type = getattr(exc, "error_type", None)
    return f"{kind} ({error_type}): {exc}" if error_type else f"{kind}: {exc}"
