"""YAML loading that remembers where every value came from.

``load_yaml(text, filename)`` returns plain Python data plus a map from key paths
(tuples of keys and list indexes) to 1-based line numbers, so configuration errors
can name ``file:line``. ``${VAR}`` and ``${VAR:-default}`` in string scalars are
replaced from the environment (``$${`` stays a literal ``${``); duplicate keys are
errors, not silent overwrites.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import yaml

from bridge.errors import ConfigError

Path = tuple[str | int, ...]

_VAR = re.compile(r"\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(value: str, env: Mapping[str, str], where: str) -> str:
    """Replace ``${VAR}`` / ``${VAR:-default}``; raise ConfigError for an unset VAR."""

    def repl(m: re.Match[str]) -> str:
        if m.group(1):  # $${...} escapes
            return m.group(0)[1:]
        name, default = m.group(2), m.group(3)
        if name in env and (env[name] != "" or default is None):
            return env[name]
        if default is not None:
            return default
        raise ConfigError(
            f"environment variable {name} is not set (use ${{{name}:-default}} for a default)",
            where=where,
        )

    return _VAR.sub(repl, value)


def load_yaml(
    text: str, filename: str, env: Mapping[str, str] | None = None
) -> tuple[Any, dict[Path, int]]:
    """Parse one YAML document; return (data, {path: line})."""
    env = os.environ if env is None else env
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"invalid YAML: {problem}", where=f"{filename}{line}") from exc
    finally:
        loader.dispose()
    lines: dict[Path, int] = {}
    if node is None:
        return {}, lines
    return _build(node, (), filename, env, lines, loader), lines


def _build(
    node: yaml.Node,
    path: Path,
    filename: str,
    env: Mapping[str, str],
    lines: dict[Path, int],
    loader: yaml.SafeLoader,
) -> Any:
    lines[path] = node.start_mark.line + 1
    where = f"{filename}:{node.start_mark.line + 1}"
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _build(key_node, path, filename, env, {}, loader)
            if not isinstance(key, str):
                key = str(key)
            if key in out:
                raise ConfigError(
                    f"duplicate key {key!r}", where=f"{filename}:{key_node.start_mark.line + 1}"
                )
            out[key] = _build(value_node, (*path, key), filename, env, lines, loader)
            lines[(*path, key)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(item, (*path, i), filename, env, lines, loader)
            for i, item in enumerate(node.value)
        ]
    try:
        value = loader.construct_object(node, deep=True)
    except yaml.YAMLError as exc:  # e.g. an unknown tag: !Ref, !Sub (CloudFormation's)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"invalid YAML: {problem}", where=where) from exc
    if isinstance(value, str) and "${" in value:
        # left as a string: the models coerce "10" or "true" where a number/bool is due
        value = interpolate(value, env, where)
    return value
