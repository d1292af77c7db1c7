"""``trigger-bridge status``: per mapping, its checkpoints, spooled messages and dead
letters, read from the state dir."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from bridge.commands import add_config_argument, load_or_report
from bridge.config import BridgeConfig

NAME = "status"
HELP = "checkpoints and dead letters of each mapping"


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)


def main(args: argparse.Namespace) -> int:
    config = load_or_report(args)
    if config is None:
        return 2
    print(asyncio.run(_status(config)))
    return 0


async def _status(config: BridgeConfig) -> str:
    """A table: mapping, source, function, checkpoint entries, messages waiting in its
    spool (websocket and webhook sources), dead letters (file ones)."""
    from bridge.checkpoints import SqliteCheckpointStore
    from bridge.spool import folder_of, peek

    store_path = Path(config.state_dir) / "checkpoints.sqlite3"
    store = SqliteCheckpointStore(store_path) if store_path.exists() else None

    rows = [("mapping", "source", "function", "enabled", "checkpoints", "spooled", "dead letters")]
    try:
        for m in config.mappings:
            entries = len(await store.namespace(m.name).items()) if store else 0
            uri = m.on_failure.destination if m.on_failure else None
            if uri is None:
                dead = str(_count_lines(Path(config.state_dir) / "failures" / f"{m.name}.jsonl"))
            elif uri.startswith("file://"):
                dead = str(_count_lines(Path(uri.removeprefix("file://"))))
            else:
                dead = f"see {uri}"
            spool = peek(folder_of(config.state_dir, m.name))
            spooled = f"{spool[0]} ({spool[1]} bytes)" if spool else "-"
            row = (m.name, m.source["type"], m.function, str(m.enabled), str(entries))
            rows.append((*row, spooled, dead))
    finally:
        if store:
            store.close()
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0
