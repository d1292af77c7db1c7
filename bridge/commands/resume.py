"""``trigger-bridge resume NAME``: start a paused mapping again (see :mod:`.pause`)."""

from __future__ import annotations

import argparse

from bridge.commands.pause import change
from bridge.commands.pause import configure as configure

NAME = "resume"
HELP = "start a paused mapping of the running bridge again"


def main(args: argparse.Namespace) -> int:
    return change(args, "resume")
