"""``trigger-bridge validate``: check a config file.

Exit 0 if valid, 2 with the errors otherwise, 1 if it is valid but has neither mappings,
APIs nor event buses (nothing to run).
"""

from __future__ import annotations

import argparse
import sys

from bridge.commands import add_config_argument, load_or_report

NAME = "validate"
HELP = "check a config file"


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)


def main(args: argparse.Namespace) -> int:
    config = load_or_report(args)
    if config is None:
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
