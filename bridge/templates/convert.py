"""From a template to a validated bridge config, and the command line's share of it.

Every entry point reads the file and the overlay again (a reload sees their changes),
derives the config (:func:`bridge.templates.cloudformation.derive_template` or
:func:`bridge.templates.serverless.derive_serverless`) and validates it as
``bridge.yaml`` is, with the template's ``file:line`` in every error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bridge.config import BridgeConfig, load_config, validate_document
from bridge.errors import ConfigError
from bridge.templates.cloudformation import derive_template
from bridge.templates.derived import Derived
from bridge.templates.loader import load_document
from bridge.templates.overlay import load_overlay
from bridge.templates.serverless import derive_serverless


@dataclass(frozen=True)
class Source:
    """Where a config comes from when it is derived: a SAM/CloudFormation template or a
    serverless.yml, with its overlay and parameter overrides."""

    path: Path
    serverless: bool = False
    overlay: Path | None = None
    overrides: tuple[tuple[str, str], ...] = ()

    @property
    def files(self) -> list[Path]:
        """The files it is read from (what a reload watches)."""
        return [self.path] + ([self.overlay] if self.overlay else [])


def _derive(source: Source) -> Derived:
    document = load_document(source.path)
    overlay = load_overlay(source.overlay)
    derive = derive_serverless if source.serverless else derive_template
    return derive(document, overlay, dict(source.overrides))


def _config(source: Source) -> tuple[BridgeConfig, list[str]]:
    """The validated config of ``source`` and the notes on what it leaves out."""
    derived = _derive(source)
    data, lines = derived.document()
    return validate_document(data, str(source.path), lines), derived.notes


def convert(source: Source) -> tuple[dict[str, Any], list[str]]:
    """The bridge config document derived from ``source``, validated as ``bridge.yaml``
    is, and the notes on what it leaves out; raise ConfigError naming ``file:line``."""
    derived = _derive(source)
    data, lines = derived.document()
    validate_document(_copy(data), str(source.path), lines)
    return data, derived.notes


def load_source(source: Source) -> BridgeConfig:
    """The validated config of ``source`` (for ``run`` and reloads); raise ConfigError
    naming ``file:line``."""
    return _config(source)[0]


def _copy(data: Any) -> Any:
    """A deep copy of plain data (validation renames AWS's option names in place)."""
    if isinstance(data, dict):
        return {k: _copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_copy(v) for v in data]
    return data


def to_yaml(data: Mapping[str, Any], source: Source, notes: Sequence[str]) -> str:
    """``data`` as a bridge.yaml, headed by where it comes from and the notes."""
    flag = "--serverless" if source.serverless else "--template"
    head = [f"# derived by trigger-bridge template convert {flag} {source.path}"]
    if source.overlay:
        head.append(f"#   with the overlay {source.overlay}")
    head += [f"# note: {note}" for note in notes]
    body = yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=False, width=100)
    return "\n".join(head) + "\n" + body


def parse_overrides(items: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``K=V`` items (CloudFormation's ``ParameterKey=K,ParameterValue=V`` too)."""
    out: list[tuple[str, str]] = []
    for item in items:
        if item.startswith("ParameterKey="):
            key_part, _, value_part = item.partition(",ParameterValue=")
            out.append((key_part.removeprefix("ParameterKey="), value_part))
            continue
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--parameter-overrides: expected KEY=VALUE, got {item!r}")
        out.append((key, value))
    return tuple(out)


def add_template_arguments(parser: argparse.ArgumentParser) -> None:
    """``--template``, ``--serverless``, ``--overlay``, ``--parameter-overrides``."""
    group = parser.add_argument_group("AWS templates (instead of --config)")
    group.add_argument(
        "--template", metavar="FILE", help="a SAM or CloudFormation template (YAML or JSON)"
    )
    group.add_argument("--serverless", metavar="FILE", help="a Serverless Framework serverless.yml")
    group.add_argument(
        "--overlay", metavar="FILE", help="where the template's resources are here (endpoints...)"
    )
    group.add_argument(
        "--parameter-overrides",
        metavar="KEY=VALUE",
        nargs="+",
        default=[],
        help="template parameter values",
    )


def source_of_args(args: argparse.Namespace) -> Source | None:
    """The template source the arguments name, or None (then ``--config`` applies)."""
    template, serverless = getattr(args, "template", None), getattr(args, "serverless", None)
    if template and serverless:
        raise ConfigError("give --template or --serverless, not both")
    if not template and not serverless:
        if getattr(args, "overlay", None) or getattr(args, "parameter_overrides", None):
            raise ConfigError(
                "--overlay and --parameter-overrides go with --template or --serverless"
            )
        return None
    overlay = Path(args.overlay) if getattr(args, "overlay", None) else None
    return Source(
        Path(str(template or serverless)),
        serverless=bool(serverless),
        overlay=overlay,
        overrides=parse_overrides(getattr(args, "parameter_overrides", None) or []),
    )


def report(exc: ConfigError) -> None:
    """Print why a template cannot be used, as the commands do (on stderr)."""
    print(f"trigger-bridge: invalid template\n{exc}", file=sys.stderr)


@dataclass(frozen=True)
class Derivation:
    """What ``run`` needs of a template: the file it names (what it watches), the config
    (None after printing why there is none) and how to derive it again on a reload."""

    path: Path
    config: BridgeConfig | None
    loader: Callable[[Path], BridgeConfig]


def derivation_of_args(args: argparse.Namespace) -> Derivation | None:
    """For ``run --template/--serverless``: None when the arguments name no template."""
    try:
        source = source_of_args(args)
        if source is None:
            return None
        config, notes = _config(source)
    except ConfigError as exc:
        report(exc)
        return Derivation(Path(), None, load_config)
    for note in notes:
        print(f"trigger-bridge: note: {note}", file=sys.stderr)
    return Derivation(source.path, config, lambda _path: load_source(source))
