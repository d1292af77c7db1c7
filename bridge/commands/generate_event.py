"""``trigger-bridge generate-event SOURCE [--PARAMETER VALUE ...]``: print a sample event.

``SOURCE`` is a source type (its connector's sample, :mod:`bridge.samples`; ``dynamodb``
is ``dynamodb_streams``), ``http-api`` or ``websocket-api``; the parameters replace
placeholder values and differ by source (``SOURCE --help`` lists them). Exit 0; 2 for an
unknown source, a parameter it does not take or a value it cannot use; 141 when the
reader closed the pipe (``| head -1``), quietly.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from bridge.commands import write_stdout

if TYPE_CHECKING:
    from bridge.samples import Parameter

NAME = "generate-event"
HELP = "print a sample AWS-shaped event"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        metavar="SOURCE",
        help="a source type (s3, local_dir, sqs, kafka, dynamodb_streams, websocket, schedule, "
        "eventbridge, a third-party connector's), http-api or websocket-api",
    )
    parser.add_argument(
        "parameters",
        nargs=argparse.REMAINDER,
        metavar="--PARAMETER VALUE",
        help="a value of the sample, e.g. s3 --bucket photos --key cat.jpg; "
        "SOURCE --help lists them",
    )


def main(args: argparse.Namespace) -> int:
    from bridge.samples import SampleError, parameters, sample_event

    try:
        known = parameters(args.source)
        values = _values(args.source, known, args.parameters)
        event = sample_event(args.source, **values)
    except SampleError as exc:
        print(f"trigger-bridge generate-event: {exc}", file=sys.stderr)
        return 2
    return write_stdout(json.dumps(event, indent=2, ensure_ascii=False) + "\n")


def _values(source: str, known: list[Parameter], argv: list[str]) -> dict[str, str]:
    """The parameters given after ``source``, by name; ``--help`` prints them and exits."""
    from bridge.samples import SampleError, describe

    parser = argparse.ArgumentParser(
        prog=f"trigger-bridge generate-event {source}",
        description=describe(source).replace("``", ""),
        allow_abbrev=False,
    )
    for parameter in known:
        kind = {int: "an integer; ", float: "a number; ", "json": "JSON; "}.get(parameter.kind, "")
        default = "the sample's" if parameter.default is None else repr(parameter.default)
        parser.add_argument(
            parameter.option,
            dest=parameter.name,
            metavar=parameter.name.upper(),
            default=argparse.SUPPRESS,
            help=f"{kind}default: {default}",
        )
    for shared in ("--log-level", "--log-format"):  # the CLI's, taken anywhere; unused here
        parser.add_argument(shared, dest="_unused", default=None, help=argparse.SUPPRESS)
    given, extra = parser.parse_known_args(argv)
    if extra:
        options = ", ".join(p.option for p in known) or "none"
        what = f"no {extra[0]}" if extra[0].startswith("-") else f"no argument {extra[0]!r}"
        raise SampleError(f"{source} takes {what} (its parameters: {options})")
    values = vars(given)
    del values["_unused"]
    return values
