"""The ``trigger-bridge`` command line.

Each subcommand is a module of :mod:`bridge.commands` with ``NAME``, ``HELP``,
``configure(parser)`` and ``main(args) -> int`` (its exit status); this module builds the
parser from them, sets up logging and dispatches. The options every command shares
(``--log-level``, ``--log-format``) are accepted before or after the subcommand.
"""

from __future__ import annotations

import argparse
import importlib
import logging
from collections.abc import Sequence
from types import ModuleType

from bridge import __version__
from bridge.logs import setup_logging

__all__ = ["main"]

# in the order ``--help`` lists them
COMMANDS = (
    "init",
    "run",
    "validate",
    "status",
    "pause",
    "resume",
    "generate_event",
    "invoke",
    "dlq",
    "template",
)


def _modules() -> list[ModuleType]:
    return [importlib.import_module(f"bridge.commands.{name}") for name in COMMANDS]


def _common(defaults: bool) -> argparse.ArgumentParser:
    """The shared options; on subcommands without defaults, so a value given before the
    subcommand is not overwritten by the subcommand's default."""
    common = argparse.ArgumentParser(add_help=False)
    suppress = argparse.SUPPRESS
    common.add_argument(
        "--log-level",
        type=str.upper,
        default="INFO" if defaults else suppress,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log verbosity (default INFO)",
    )
    common.add_argument(
        "--log-format",
        default="text" if defaults else suppress,
        choices=["text", "json"],
        help="text lines, or one JSON object per line (default text)",
    )
    return common


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trigger-bridge",
        description="AWS Lambda event source mappings for any function runtime.",
        parents=[_common(defaults=True)],
    )
    parser.add_argument("--version", action="version", version=f"trigger-bridge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    shared = _common(defaults=False)
    for module in _modules():
        command = sub.add_parser(
            module.NAME, help=module.HELP, description=module.HELP, parents=[shared]
        )
        command.set_defaults(handler=module.main)
        module.configure(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(getattr(logging, args.log_level), args.log_format)
    status: int = args.handler(args)
    return status
