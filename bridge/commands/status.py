"""``trigger-bridge status``: what each mapping is doing.

It asks the running bridge (its admin server, found through ``<state_dir>/admin.json``):
per mapping its state (running, starting, restarting or failed with the last error and
when, paused, disabled), records read, delivered and dead-lettered, records in flight,
lag and the last delivery. When no bridge runs on that state dir, it reads the files
instead: checkpoints, spooled messages, dead letters. ``--json`` prints the same as one
JSON document; ``--ready`` only checks ``/readyz`` (exit 0 when ready, 1 otherwise: the
container health check).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bridge.commands import add_config_argument, load_or_report
from bridge.config import BridgeConfig

NAME = "status"
HELP = "what each mapping is doing (asks the running bridge, else reads the state dir)"

TIMEOUT = 5.0


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--json", action="store_true", help="one JSON document")
    parser.add_argument(
        "--ready", action="store_true", help="exit 0 if the running bridge is ready, else 1"
    )


def main(args: argparse.Namespace) -> int:
    config = load_or_report(args)
    if config is None:
        return 2
    from bridge.admin import read_admin_file

    daemon = read_admin_file(config.state_dir)
    if args.ready:
        return _ready(daemon)
    live = _ask(daemon["address"], "/status") if daemon else None
    if live is not None:
        doc = json.loads(live)
        print(json.dumps(doc, indent=2) if args.json else _live_table(doc))
        return 0
    rows = asyncio.run(_from_files(config))
    if args.json:
        print(json.dumps({"running": False, "mappings": rows}, indent=2))
    else:
        print("no bridge is running on this state dir: read from its files", file=sys.stderr)
        print(_table(rows))
    return 0


def _ask(address: str, path: str) -> bytes | None:
    try:
        response = httpx.get(f"http://{address}{path}", timeout=TIMEOUT)
    except httpx.HTTPError:
        return None
    return response.content if response.status_code == 200 else None


def _ready(daemon: dict[str, Any] | None) -> int:
    if daemon is None:
        print("not ready: no bridge is running on this state dir", file=sys.stderr)
        return 1
    try:
        response = httpx.get(f"http://{daemon['address']}/readyz", timeout=TIMEOUT)
    except httpx.HTTPError as exc:
        print(f"not ready: {daemon['address']}: {exc}", file=sys.stderr)
        return 1
    if response.status_code != 200:
        print(f"not ready:\n{response.text}", file=sys.stderr, end="")
        return 1
    print("ready")
    return 0


def _ago(stamp: float | None) -> str:
    if not stamp:
        return "-"
    seconds = max(0.0, time.time() - stamp)
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def _lag_text(lag: dict[str, Any]) -> str:
    parts = []
    if "offset_lag" in lag:
        parts.append(f"{sum(lag['offset_lag'].values())} records")
    if "pending_changes" in lag:
        parts.append(f"{lag['pending_changes']} pending")
    if "oldest_record_age_seconds" in lag:
        parts.append(f"oldest {lag['oldest_record_age_seconds']:.0f}s")
    elif "iterator_age_seconds" in lag:
        parts.append(f"age {lag['iterator_age_seconds']:.0f}s")
    return ", ".join(parts) or "-"


def _live_table(doc: dict[str, Any]) -> str:
    head = ("mapping", "state", "source", "function", "read", "delivered", "dead", "in flight")
    rows: list[tuple[str, ...]] = [(*head, "lag", "last delivery")]
    errors = []
    for m in doc["mappings"]:
        r = m["records"]
        row = (m["mapping"], m["state"], m["source"], m["function"], str(r["read"]))
        rows.append(
            (
                *row,
                str(r["delivered"]),
                str(r["dead_lettered"]),
                str(r["in_flight"]),
                _lag_text(m["lag"]),
                _ago(m["last_delivery"]),
            )
        )
        if m.get("last_error") and m["state"] != "running":
            err = m["last_error"]
            errors.append(f"{m['mapping']}: {err['error']} ({_ago(err['at'])})")
    ready = "ready" if doc["ready"] else "NOT READY: " + "; ".join(doc["problems"])
    lines = [f"bridge pid {doc['pid']} ({doc['config']}): {ready}", _table_text(rows)]
    lines += [f"  {e}" for e in errors]
    for kind in ("apis", "event_buses"):
        for name, address in doc.get(kind, {}).items():
            where = address or "not listening"
            lines.append(f"{kind[:-1].replace('_', ' ')} {name}: {where}")
    return "\n".join(lines)


async def _from_files(config: BridgeConfig) -> list[dict[str, Any]]:
    """Per mapping: checkpoint entries, messages waiting in its spool (websocket and
    webhook sources), dead letters (file ones; other destinations are named)."""
    from bridge.checkpoints import SqliteCheckpointStore
    from bridge.spool import folder_of, peek
    from bridge.supervisor import read_paused

    store_path = Path(config.state_dir) / "checkpoints.sqlite3"
    store = SqliteCheckpointStore(store_path) if store_path.exists() else None
    paused = read_paused(config.state_dir)
    rows = []
    try:
        for m in config.mappings:
            entries = len(await store.namespace(m.name).items()) if store else 0
            uri = m.on_failure.destination if m.on_failure else None
            dead: int | str
            if uri is None:
                dead = _count_lines(Path(config.state_dir) / "failures" / f"{m.name}.jsonl")
            elif uri.startswith("file://"):
                dead = _count_lines(Path(uri.removeprefix("file://")))
            else:
                dead = f"see {uri}"
            spool = peek(folder_of(config.state_dir, m.name))
            state = "paused" if m.name in paused else ("stopped" if m.enabled else "disabled")
            rows.append(
                {
                    "mapping": m.name,
                    "source": m.source["type"],
                    "function": m.function,
                    "state": state,
                    "checkpoints": entries,
                    "spooled": {"messages": spool[0], "bytes": spool[1]} if spool else None,
                    "dead_letters": dead,
                }
            )
    finally:
        if store:
            store.close()
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    head = ("mapping", "source", "function", "state", "checkpoints", "spooled", "dead letters")
    out: list[tuple[str, ...]] = [head]
    for r in rows:
        spool = r["spooled"]
        spooled = f"{spool['messages']} ({spool['bytes']} bytes)" if spool else "-"
        row = (r["mapping"], r["source"], r["function"], r["state"], str(r["checkpoints"]))
        out.append((*row, spooled, str(r["dead_letters"])))
    return _table_text(out)


def _table_text(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0
