"""``trigger-bridge validate``: check a config file.

Exit 0 if valid, 2 with the errors otherwise, 1 if it is valid but has neither mappings,
APIs nor event buses (nothing to run). With ``--deep``, also what the file names on this
machine (see :mod:`bridge.config_checks`): problems go to stderr and exit 2, notes (a
folder the bridge will create) to stdout.
"""

from __future__ import annotations

import argparse
import sys

from bridge.commands import add_config_argument, load_or_report
from bridge.config_checks import deep_check

NAME = "validate"
HELP = "check a config file"


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument(
        "--deep",
        action="store_true",
        help="also check on this machine, without side effects: a runtime function's cwd, "
        "executable and handler, folders and files the config names",
    )


def main(args: argparse.Namespace) -> int:
    config = load_or_report(args)
    if config is None:
        return 2
    if args.deep:
        findings = deep_check(config, args.config)
        for note in (f for f in findings if not f.problem):
            print(note)
        problems = [str(f) for f in findings if f.problem]
        if problems:
            print("trigger-bridge: valid, but --deep found problems", file=sys.stderr)
            print("\n".join(problems), file=sys.stderr)
            return 2
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
