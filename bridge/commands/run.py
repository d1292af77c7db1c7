"""``trigger-bridge run``: run the mappings and APIs of a config file until SIGTERM or
SIGINT; edits of the file apply live, and so does ``SIGHUP`` (read the file again). The
admin server (:mod:`bridge.admin`) and the progress lines run beside the mappings."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bridge import telemetry
from bridge.commands import add_config_argument, load_or_report
from bridge.config import BridgeConfig, load_config
from bridge.errors import ConfigError
from bridge.templates import add_template_arguments, derivation_of_args

if TYPE_CHECKING:
    from bridge.reload import Loader

NAME = "run"
HELP = "run the mappings and APIs of a config file"


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--no-reload", action="store_true", help="do not watch the config file")
    add_template_arguments(parser)


def main(args: argparse.Namespace) -> int:
    derived = derivation_of_args(args)  # --template / --serverless: the config it derives
    if derived is not None:
        if derived.config is None:
            return 2
        watch = not args.no_reload
        return asyncio.run(_run(derived.path, derived.config, watch=watch, loader=derived.loader))
    config = load_or_report(args)
    if config is None:
        return 2
    return asyncio.run(_run(Path(args.config), config, watch=not args.no_reload))


async def _run(
    path: Path, config: BridgeConfig, *, watch: bool, loader: Loader = load_config
) -> int:
    from bridge.admin import AdminServer, progress_loop
    from bridge.reload import reload_now, watch_config
    from bridge.supervisor import Supervisor, freeze_heap

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    supervisor = Supervisor(worker_processes=True)
    current = config

    async def applied(new: BridgeConfig) -> None:
        nonlocal current
        current = new
        freeze_heap()
        await admin.apply(new)

    async def reload() -> str | None:
        return await reload_now(path, supervisor, applied=applied, loader=loader)

    admin = AdminServer(supervisor, config_path=str(path), reload=reload)
    background: set[asyncio.Task[object]] = set()

    def on_hangup() -> None:
        telemetry.emit(telemetry.CONFIG_RELOAD_ASKED, via="SIGHUP")
        task: asyncio.Task[object] = asyncio.create_task(reload())
        background.add(task)
        task.add_done_callback(background.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hangup)
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
    freeze_heap()
    await admin.apply(config)
    tasks = [asyncio.create_task(progress_loop(supervisor, lambda: current.progress_log_seconds))]
    if watch:
        watcher = watch_config(path, supervisor, stop, applied=applied, loader=loader)
        tasks.append(asyncio.create_task(watcher))
    await stop.wait()
    telemetry.emit(telemetry.STOPPING)
    for task in [*tasks, *background]:
        task.cancel()
    await asyncio.gather(*tasks, *background, return_exceptions=True)
    await supervisor.aclose()
    await admin.aclose()
    telemetry.emit(telemetry.STOPPED)
    return 0
