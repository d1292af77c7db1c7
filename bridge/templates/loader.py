"""Reading a CloudFormation, SAM or Serverless Framework file, with line numbers.

YAML or JSON. CloudFormation's short tags become their long forms as CloudFormation
reads them (``!Ref X`` -> ``{"Ref": "X"}``, ``!GetAtt A.B`` -> ``{"Fn::GetAtt": ["A",
"B"]}``, ``!Sub ...`` -> ``{"Fn::Sub": ...}``, ``!Condition C`` -> ``{"Condition": "C"}``).
Nothing is interpolated: ``${...}`` belongs to ``Fn::Sub`` (and to the Serverless
Framework's variables), not to the environment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bridge.config_errors import Loc, dotted, line_of
from bridge.errors import ConfigError

__all__ = ["Document", "load_document"]

_NOT_FN = {"Ref", "Condition"}  # the short tags whose long form has no "Fn::"


@dataclass
class Document:
    """A file's data and where each key path of it is (1-based lines)."""

    path: Path
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def where(self, loc: Loc) -> str:
        """``file:line`` of ``loc`` (or of its nearest ancestor in the file)."""
        return f"{self.path}:{line_of(self.lines, loc)}"

    def error(self, loc: Loc, message: str) -> ConfigError:
        """A ConfigError naming the file, the line and the key path of ``loc``."""
        return ConfigError(f"{dotted(loc)}: {message}", where=self.where(loc))


def load_document(path: str | Path) -> Document:
    """Read ``path``; raise ConfigError naming the file (and line) if it cannot be read."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", where=str(path)) from exc
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.YAMLError as exc:
        if text.lstrip().startswith("{"):  # JSON that YAML does not take (tabs, escapes)
            try:
                return Document(path, json.loads(text))
            except ValueError:
                pass
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"invalid YAML: {problem}", where=f"{path}{line}") from exc
    finally:
        loader.dispose()
    document = Document(path, {})
    if node is not None:
        document.data = _build(node, (), document, loader)
    return document


def _build(node: yaml.Node, loc: Loc, document: Document, loader: yaml.SafeLoader) -> Any:
    document.lines.setdefault(loc, node.start_mark.line + 1)
    tag = node.tag
    if tag.startswith("!"):
        name = tag[1:]
        long_name = name if name in _NOT_FN else f"Fn::{name}"
        value = _plain(node, loc, document, loader)
        if name == "GetAtt" and isinstance(value, str):
            resource, _, attribute = value.partition(".")
            value = [resource, attribute]
        return {long_name: value}
    return _plain(node, loc, document, loader)


def _plain(node: yaml.Node, loc: Loc, document: Document, loader: yaml.SafeLoader) -> Any:
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(loader.construct_object(key_node))
            if key in out:
                where = f"{document.path}:{key_node.start_mark.line + 1}"
                raise ConfigError(f"duplicate key {key!r}", where=where)
            document.lines[(*loc, key)] = key_node.start_mark.line + 1
            out[key] = _build(value_node, (*loc, key), document, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*loc, i), document, loader) for i, item in enumerate(node.value)]
    if node.tag.startswith("!"):  # a tagged scalar: its text as it is
        return loader.construct_scalar(node)  # type: ignore[arg-type]
    return loader.construct_object(node, deep=True)
