"""``trigger-bridge generate-event SOURCE``: print a sample AWS-shaped event."""

from __future__ import annotations

import argparse
import json

NAME = "generate-event"
HELP = "print a sample AWS-shaped event"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", choices=["s3", "dynamodb", "sqs", "kafka", "websocket"])


def main(args: argparse.Namespace) -> int:
    from bridge.samples import sample_event

    print(json.dumps(sample_event(args.source), indent=2, ensure_ascii=False))
    return 0
