"""Live reload: watch the config file and apply each valid edit.

An edit that does not validate is logged (``config.rejected`` with file, line and
key) and the running configuration keeps going unchanged. Editors that save by
writing a new file and renaming it are handled: the folder is watched, not the inode.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from watchfiles import awatch

from bridge import telemetry
from bridge.config import load_config
from bridge.errors import ConfigError
from bridge.supervisor import Supervisor

__all__ = ["watch_config"]


def _absolute(path: str | Path) -> Path:
    return Path(os.path.abspath(path))  # no file system access: a pure path operation


async def watch_config(path: Path, supervisor: Supervisor, stop: asyncio.Event) -> None:
    """Apply every valid edit of ``path`` to ``supervisor`` until ``stop`` is set."""
    target = _absolute(path)

    def relevant(_change: object, changed: str) -> bool:
        return _absolute(changed) == target

    async for _ in awatch(target.parent, watch_filter=relevant, stop_event=stop, debounce=300):
        try:
            config = load_config(path)
        except ConfigError as exc:
            telemetry.emit(
                telemetry.CONFIG_REJECTED,
                error=str(exc).replace("\n", "; "),
                level=logging.ERROR,
            )
            continue
        await supervisor.apply(config)
