"""The subcommands of ``trigger-bridge``, one module each (see :mod:`bridge.cli`).

A command module has ``NAME`` (as typed), ``HELP`` (one line), ``configure(parser)``
(adds its arguments) and ``main(args) -> int`` (runs it; the exit status). What several
commands share lives here.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

from bridge import default
from bridge.config import BridgeConfig, RuntimeFunction, load_config
from bridge.errors import ConfigError

__all__ = [
    "BROKEN_PIPE",
    "add_config_argument",
    "default_config_path",
    "load_or_report",
    "write_stdout",
]


CONFIG_VARIABLE = "TRIGGER_BRIDGE_CONFIG"


def default_config_path() -> Path:
    """``$TRIGGER_BRIDGE_CONFIG`` when set (a container image sets it, so its health check
    and its command follow one setting), else ``./bridge.yaml`` when the working directory
    has one, else the packaged default (:mod:`bridge.default`)."""
    named = os.environ.get(CONFIG_VARIABLE)
    if named:
        return Path(named)
    local = Path(default.CONFIG_NAME)
    return local if local.is_file() else default.CONFIG


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """``--config``; its default is chosen when the parser is built (in the working
    directory of that moment), so ``args.config`` is always a path."""
    parser.add_argument(
        "--config",
        default=str(default_config_path()),
        help=f"the config file (default: ${CONFIG_VARIABLE}, else ./{default.CONFIG_NAME}, "
        "else the packaged default)",
    )


def load_or_report(args: argparse.Namespace) -> BridgeConfig | None:
    """The config named by ``args.config``; None after printing why it is invalid."""
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"trigger-bridge: invalid config\n{exc}", file=sys.stderr)
        return None
    _warn_without_awslambdaric(config)
    return config


def config_path(args: argparse.Namespace) -> Path:
    return Path(args.config)


def _warn_without_awslambdaric(config: BridgeConfig) -> None:
    """Say how to get awslambdaric when a function runs ``python -m awslambdaric`` (the
    bridge's own interpreter) and it is missing: it is a dependency only where it has wheels
    (Linux on x86_64 and aarch64), elsewhere it is built from source on request."""
    users = [
        name
        for name, function in config.functions.items()
        if isinstance(function, RuntimeFunction)
        and function.command
        and function.command[0] in ("python", "python3")
        and function.command[1:3] == ["-m", "awslambdaric"]
    ]
    if users and importlib.util.find_spec("awslambdaric") is None:
        print(
            f"trigger-bridge: warning: function {', '.join(users)} runs awslambdaric, which "
            f"is not installed with trigger-bridge here ({sys.executable}); add it with "
            "`pipx inject trigger-bridge awslambdaric` or `pip install awslambdaric` "
            "(without a wheel for this platform it builds from source: it needs cmake, "
            "autoconf, automake, libtool and a C++ compiler)",
            file=sys.stderr,
        )


#: the exit status of a process that SIGPIPE ended, as shells report it
BROKEN_PIPE = 128 + 13


def write_stdout(text: str | bytes) -> int:
    """Write ``text`` to stdout: 0, or :data:`BROKEN_PIPE` without a traceback when the
    reader has gone (the recipe of the ``signal`` module's "Note on SIGPIPE": stdout is
    pointed at devnull, so the flush at exit does not fail again)."""
    try:
        if isinstance(text, bytes):
            sys.stdout.flush()
            sys.stdout.buffer.write(text)
        else:
            sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return BROKEN_PIPE
    return 0
