"""The ``trigger-bridge`` command line.

``run``             run the mappings and APIs of a config file until SIGTERM/SIGINT; edits
                    apply live
``validate``        check a config file; exit 0 if valid, 2 with the errors otherwise, 1 if
                    it is valid but has neither mappings nor APIs (nothing to run)
``generate-event``  print a sample event (s3, dynamodb, sqs, kafka: AWS's shapes; websocket)
``status``          per mapping: its checkpoints and dead letters, read from the state dir
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from bridge import __version__, telemetry
from bridge.config import load_config
from bridge.errors import ConfigError

__all__ = ["main"]

DEFAULT_CONFIG = "config/local.yaml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trigger-bridge",
        description="AWS Lambda event source mappings for any function runtime.",
    )
    parser.add_argument("--version", action="version", version=f"trigger-bridge {__version__}")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log verbosity (default INFO)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the mappings and APIs of a config file")
    run.add_argument("--config", default=DEFAULT_CONFIG, help=f"default {DEFAULT_CONFIG}")
    run.add_argument("--no-reload", action="store_true", help="do not watch the config file")
    validate = sub.add_parser("validate", help="check a config file")
    validate.add_argument("--config", default=DEFAULT_CONFIG, help=f"default {DEFAULT_CONFIG}")
    status = sub.add_parser("status", help="checkpoints and dead letters of each mapping")
    status.add_argument("--config", default=DEFAULT_CONFIG, help=f"default {DEFAULT_CONFIG}")
    gen = sub.add_parser("generate-event", help="print a sample AWS-shaped event")
    gen.add_argument("source", choices=["s3", "dynamodb", "sqs", "kafka", "websocket"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command == "generate-event":
        from bridge.samples import sample_event

        print(json.dumps(sample_event(args.source), indent=2, ensure_ascii=False))
        return 0
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"trigger-bridge: invalid config\n{exc}", file=sys.stderr)
        return 2
    if args.command == "status":
        print(asyncio.run(_status(config)))
        return 0
    if args.command == "validate":
        if not config.mappings and not config.apis and not config.event_buses:
            print(
                f"{args.config}: valid, but it has nothing to run: no mappings, apis or buses",
                file=sys.stderr,
            )
            return 1
        names = ", ".join(m.name for m in config.mappings) or "none"
        apis = ", ".join(a.name for a in config.apis) or "none"
        buses = ", ".join(b.name for b in config.event_buses) or "none"
        print(
            f"{args.config}: OK ({len(config.functions)} functions; mappings: {names}; "
            f"apis: {apis}; event buses: {buses})"
        )
        return 0
    return asyncio.run(_run(Path(args.config), config, reload=not args.no_reload))


async def _status(config: object) -> str:
    """A table: mapping, source, function, checkpoint entries, messages waiting in its
    spool (websocket and webhook sources), dead letters (file ones)."""
    from bridge.checkpoints import SqliteCheckpointStore
    from bridge.config import BridgeConfig

    assert isinstance(config, BridgeConfig)
    store_path = Path(config.state_dir) / "checkpoints.sqlite3"
    store = SqliteCheckpointStore(store_path) if store_path.exists() else None
    from bridge.spool import folder_of, peek

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


async def _run(path: Path, config: object, *, reload: bool) -> int:
    from bridge.config import BridgeConfig
    from bridge.reload import watch_config
    from bridge.supervisor import Supervisor

    assert isinstance(config, BridgeConfig)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    supervisor = Supervisor()
    telemetry.emit(
        telemetry.STARTED, config=str(path), mappings=len(config.mappings), apis=len(config.apis)
    )
    if not config.mappings and not config.apis and not config.event_buses:
        telemetry.emit(
            telemetry.NOTHING_TO_RUN, config=str(path), level=logging.WARNING
        )  # it runs on: an edit of the file may add mappings
    try:
        await supervisor.apply(config)
    except ConfigError as exc:
        print(f"trigger-bridge: cannot start\n{path}: {exc}", file=sys.stderr)
        await supervisor.aclose()
        return 2
    # what start-up built (modules, config, clients) lives as long as the process: keep the
    # cyclic GC from scanning it again and again (about 40 % of its time under load)
    gc.freeze()
    watcher = asyncio.create_task(watch_config(path, supervisor, stop)) if reload else None
    await stop.wait()
    telemetry.emit(telemetry.STOPPING)
    if watcher is not None:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    await supervisor.aclose()
    telemetry.emit(telemetry.STOPPED)
    return 0
