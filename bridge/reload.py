"""Live reload: watch the config file and apply each valid edit.

An edit that does not validate, or that validates but cannot be applied (a
``state_dir`` that cannot be created, a function that cannot be built), is logged
(``config.rejected`` with the file and the reason) and the running configuration keeps
going unchanged. The watcher never dies: a later edit is applied as usual, and if the
folder watch itself fails it is started again. Editors that save by writing a new file
and renaming it are handled: the folder is watched, not the inode. So is a Kubernetes
ConfigMap volume, where the file is a symlink through ``..data``, a symlink to a
timestamped folder that an update swaps atomically: a change of any ``..``-named entry
of the folder re-reads the file too (applying an unchanged file changes nothing).
``SIGHUP`` and the admin API's ``POST /reload`` apply the file on demand
(:func:`reload_now`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from watchfiles import awatch

from bridge import telemetry
from bridge.config import BridgeConfig, load_config
from bridge.errors import ConfigError
from bridge.supervisor import Supervisor

__all__ = ["Loader", "apply_file", "reload_now", "watch_config"]

Applied = Callable[[BridgeConfig], Awaitable[None]]
#: how a watched file becomes a config: ``load_config``, or deriving it from a template
Loader = Callable[[Path], BridgeConfig]

RETRY_WATCH_SECONDS = 5.0


def _absolute(path: str | Path) -> Path:
    return Path(os.path.abspath(path))  # no file system access: a pure path operation


async def watch_config(
    path: Path,
    supervisor: Supervisor,
    stop: asyncio.Event,
    *,
    applied: Applied | None = None,
    loader: Loader = load_config,
) -> None:
    """Apply every valid edit of ``path`` to ``supervisor`` until ``stop`` is set; then
    ``applied(config)`` (for what lives beside the supervisor, like the admin server)."""
    target = _absolute(path)

    def relevant(_change: object, changed: str) -> bool:
        changed_path = _absolute(changed)
        if changed_path == target:
            return True
        # a ConfigMap update: ..data (or a ..<timestamp> folder) in the file's folder
        return changed_path.parent == target.parent and changed_path.name.startswith("..")

    while not stop.is_set():
        try:
            async for _ in awatch(
                target.parent,
                watch_filter=relevant,
                stop_event=stop,
                debounce=300,
                recursive=False,  # only the file matters, not what lives under its folder
            ):
                await apply_file(path, supervisor, applied=applied, loader=loader)
        except Exception as exc:  # the watch itself broke (the folder went away...)
            telemetry.emit(
                telemetry.CONFIG_WATCH_FAILED,
                file=str(path),
                error=str(exc) or repr(exc),
                retry_in=RETRY_WATCH_SECONDS,
                level=logging.ERROR,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RETRY_WATCH_SECONDS)


async def apply_file(
    path: Path,
    supervisor: Supervisor,
    *,
    applied: Applied | None = None,
    loader: Loader = load_config,
) -> bool:
    """Load ``path`` and apply it; on any failure log ``config.rejected`` (the old
    configuration keeps running) and return False."""
    return await reload_now(path, supervisor, applied=applied, loader=loader) is None


async def reload_now(
    path: Path,
    supervisor: Supervisor,
    *,
    applied: Applied | None = None,
    loader: Loader = load_config,
) -> str | None:
    """Load ``path`` and apply it: None when applied, else why not (also logged as
    ``config.rejected``; the old configuration keeps running)."""
    try:
        config = loader(path)
        await supervisor.apply(config)
        if applied is not None:
            await applied(config)
    except Exception as exc:
        if not isinstance(exc, ConfigError):
            logging.getLogger(__name__).exception("applying %s failed unexpectedly", path)
        telemetry.emit(
            telemetry.CONFIG_REJECTED,
            file=str(path),
            error=str(exc).replace("\n", "; ") or repr(exc),
            level=logging.ERROR,
        )
        return str(exc) or repr(exc)
    return None
