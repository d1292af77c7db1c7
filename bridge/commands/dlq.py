"""``trigger-bridge dlq list | show | replay``: the dead letters of the mappings'
on-failure destinations (``file://``, ``sqs://``, ``kafka://``), and replaying them
(see :mod:`bridge.dlq` and :mod:`bridge.replay`).

Exit status: 0 when all went well, 1 when a record could not be replayed (or a
destination could not be read), 2 for a usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from bridge.commands import add_config_argument, load_or_report
from bridge.config import BridgeConfig
from bridge.dlq import DeadLetter, Ledger, mappings_named, open_dead_letters, plan
from bridge.errors import BridgeError, ConfigError

NAME = "dlq"
HELP = "list, show and replay dead letters (on-failure destinations)"


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="dlq_action", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list", help="dead letters with condition, age, mapping and whether replayed"
    )
    show = actions.add_parser("show", help="one dead letter, whole")
    show.add_argument("id", help="its id (a unique prefix will do)")
    replay = actions.add_parser(
        "replay", help="deliver dead letters again, once each (a ledger marks them)"
    )
    replay.add_argument("ids", nargs="*", metavar="ID", help="only these (default: all)")
    replay.add_argument(
        "--to-source",
        action="store_true",
        help="put the records back into their source (Kafka) instead of invoking",
    )
    replay.add_argument("--force", action="store_true", help="replay those replayed before too")
    for sub in (listing, show, replay):
        add_config_argument(sub)
        sub.add_argument("--mapping", metavar="NAME", help="only this mapping's dead letters")
    for sub in (listing, show):
        sub.add_argument("--json", action="store_true", help="JSON instead of text")


def main(args: argparse.Namespace) -> int:
    config = load_or_report(args)
    if config is None:
        return 2
    run = {"list": _list, "show": _show, "replay": _replay}[args.dlq_action]
    try:
        return asyncio.run(run(config, args))
    except ConfigError as exc:
        print(f"trigger-bridge dlq: {exc}", file=sys.stderr)
        return 2
    except BridgeError as exc:  # a destination that cannot be reached
        print(f"trigger-bridge dlq: {exc}", file=sys.stderr)
        return 1


def _warn_unreadable(letters: list[DeadLetter]) -> None:
    for letter in letters:
        if letter.stored.error:
            print(f"trigger-bridge dlq: warning: {letter.stored.error}", file=sys.stderr)


async def _list(config: BridgeConfig, args: argparse.Namespace) -> int:
    mappings = mappings_named(config, args.mapping)
    async with open_dead_letters(config, mappings, Ledger(config.state_dir)) as letters:
        _warn_unreadable(letters)
        now = time.time()
        if args.json:
            print(json.dumps([letter.summary(now) for letter in letters], indent=2))
            return 0
        if not letters:
            print("no dead letters")
            return 0
        rows = [("ID", "MAPPING", "CONDITION", "AGE", "RECORDS", "REPLAY", "REPLAYED", "WHERE")]
        for letter in letters:
            stamp = letter.timestamp
            rows.append(
                (
                    letter.id,
                    letter.mapping,
                    letter.condition,
                    _age(now - stamp) if stamp else "?",
                    str(letter.records) if letter.records is not None else "?",
                    plan(letter.stored).how or "no",
                    str(letter.replayed["at"]) if letter.replayed else "-",
                    letter.stored.location,
                )
            )
        print(_table(rows))
    return 0


async def _show(config: BridgeConfig, args: argparse.Namespace) -> int:
    mappings = mappings_named(config, args.mapping)
    async with open_dead_letters(config, mappings, Ledger(config.state_dir)) as letters:
        letter = _pick(letters, args.id)
        if args.json:
            print(json.dumps({**letter.summary(), "document": letter.stored.document}, indent=2))
            return 0
        how = plan(letter.stored)
        mark = letter.replayed
        replayed = f"{mark.get('at')} ({mark.get('how')})" if mark else "no"
        lines = [
            f"id:          {letter.id}",
            f"mapping:     {letter.mapping}",
            f"destination: {letter.destination}",
            f"where:       {letter.stored.location}"
            + (f" ({letter.stored.copies} copies)" if letter.stored.copies > 1 else ""),
            f"condition:   {letter.condition}",
            f"replay:      {how.how or 'not possible'}: {how.detail}",
            f"replayed:    {replayed}",
            "",
        ]
        print("\n".join(lines))
        document: Any = letter.stored.document
        print(json.dumps(document, indent=2, ensure_ascii=False) if document else "(unreadable)")
    return 0


def _pick(letters: list[DeadLetter], prefix: str) -> DeadLetter:
    found = [letter for letter in letters if letter.id.startswith(prefix)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise ConfigError(f"no dead letter {prefix!r} (`trigger-bridge dlq list` shows them)")
    ids = ", ".join(letter.id for letter in found[:10])
    raise ConfigError(f"{prefix!r} names {len(found)} dead letters: {ids}")


async def _replay(config: BridgeConfig, args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from bridge.replay import Outcome, Replayer

    mappings = mappings_named(config, args.mapping)
    replayer = Replayer(config, to_source=args.to_source, force=args.force)
    outcomes: list[Outcome] = []
    try:
        async with open_dead_letters(config, mappings, replayer.ledger) as letters:
            _warn_unreadable(letters)
            chosen = [_pick(letters, i) for i in args.ids] if args.ids else letters
            chosen = list({id(letter): letter for letter in chosen}.values())
            progress = Progress(
                TextColumn("replaying"),
                BarColumn(),
                MofNCompleteColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            with progress:
                task = progress.add_task("replay", total=len(chosen))
                for letter in chosen:
                    outcomes.append(await replayer.replay(letter))
                    progress.advance(task)
    finally:
        await replayer.aclose()
    print(_summary(outcomes))
    return 1 if any(o.status in ("failed", "cannot") for o in outcomes) else 0


def _summary(outcomes: list[Any]) -> str:
    if not outcomes:
        return "no dead letters to replay"
    counts = {s: sum(o.status == s for o in outcomes) for s in ("replayed", "skipped", "failed")}
    cannot = sum(o.status == "cannot" for o in outcomes)
    skipped = f"skipped {counts['skipped']}"
    if counts["skipped"]:
        skipped += " (replayed before; --force replays them again)"
    head = (
        f"replayed {counts['replayed']}, {skipped}, failed {counts['failed']}, "
        f"cannot be replayed {cannot}"
    )
    lines = [head]
    for o in outcomes:
        if o.status in ("failed", "cannot") or (o.detail and o.status == "replayed"):
            word = "cannot be replayed" if o.status == "cannot" else o.status
            lines.append(f"  {o.letter.id}  {o.letter.mapping}  {word}: {o.detail}")
    return "\n".join(lines)


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )
