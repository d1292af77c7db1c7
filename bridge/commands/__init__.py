"""The subcommands of ``trigger-bridge``, one module each (see :mod:`bridge.cli`).

A command module has ``NAME`` (as typed), ``HELP`` (one line), ``configure(parser)``
(adds its arguments) and ``main(args) -> int`` (runs it; the exit status). What several
commands share lives here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bridge.config import BridgeConfig, load_config
from bridge.errors import ConfigError

__all__ = ["DEFAULT_CONFIG", "add_config_argument", "load_or_report"]

DEFAULT_CONFIG = "config/local.yaml"


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", default=DEFAULT_CONFIG, help=f"the config file (default {DEFAULT_CONFIG})"
    )


def load_or_report(args: argparse.Namespace) -> BridgeConfig | None:
    """The config named by ``args.config``; None after printing why it is invalid."""
    try:
        return load_config(args.config)
    except ConfigError as exc:
        print(f"trigger-bridge: invalid config\n{exc}", file=sys.stderr)
        return None


def config_path(args: argparse.Namespace) -> Path:
    return Path(args.config)
