"""``trigger-bridge template convert``: print the bridge.yaml a SAM or CloudFormation
template (or a serverless.yml) stands for, to see and keep what was derived.

Exit 0 and the YAML on stdout; 2 with the errors (``file:line`` of the template) on stderr.
"""

from __future__ import annotations

import argparse
import sys

from bridge.errors import ConfigError
from bridge.templates import add_template_arguments, convert, to_yaml
from bridge.templates.convert import report, source_of_args

NAME = "template"
HELP = "read a SAM/CloudFormation template or serverless.yml: convert prints its bridge.yaml"


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    command = sub.add_parser(
        "convert", help="print the equivalent bridge.yaml", description=__doc__
    )
    add_template_arguments(command)


def main(args: argparse.Namespace) -> int:
    try:
        source = source_of_args(args)
        if source is None:
            print(
                "trigger-bridge template convert: give --template or --serverless", file=sys.stderr
            )
            return 2
        data, notes = convert(source)
    except ConfigError as exc:
        report(exc)
        return 2
    sys.stdout.write(to_yaml(data, source, notes))
    return 0
