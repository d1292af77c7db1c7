"""Configuration errors that say where, what, and what was probably meant.

A :class:`Problem` is a key path in the file's data (``("mappings", 0, "batch_size")``)
and a message. :func:`describe` words a pydantic error as one; :func:`did_you_mean`
suggests the closest known key or name for a misspelt one; :func:`report` turns every
problem of a file into one ``ConfigError`` whose lines read ``file:line: path: message``,
sorted by line. Values of keys that name secrets are never echoed.
"""

from __future__ import annotations

import difflib
import json
import re
import types
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal, NamedTuple, Union, get_args, get_origin

from pydantic import BaseModel

from bridge.errors import ConfigError

__all__ = ["Loc", "Problem", "describe", "did_you_mean", "dotted", "line_of", "report"]

Loc = tuple[str | int, ...]


class Problem(NamedTuple):
    """One thing wrong with the file: where (a key path) and what; ``meant`` is the key
    an unknown key is probably a misspelling of."""

    loc: Loc
    message: str
    meant: str | None = None


def did_you_mean(word: object, choices: Iterable[str], *, cutoff: float = 0.6) -> str:
    """``"; did you mean 'x'?"`` naming the choice closest to ``word``, or ``""`` when
    none is close. Case, ``_`` and ``-`` are ignored, so ``BatchSize`` finds
    ``batch_size``."""
    match = _closest(word, choices, cutoff=cutoff)
    return f"; did you mean {match!r}?" if match else ""


def _closest(word: object, choices: Iterable[str], *, cutoff: float = 0.6) -> str | None:
    if not isinstance(word, str):
        return None
    by_form = {_form(c): c for c in choices if c != word}
    match = difflib.get_close_matches(_form(word), list(by_form), n=1, cutoff=cutoff)
    return by_form[match[0]] if match else None


def _form(word: str) -> str:
    return word.lower().replace("_", "").replace("-", "")


def report(problems: Iterable[Problem], filename: str, lines: Mapping[Loc, int]) -> ConfigError:
    """One ConfigError listing every problem once, ordered by line (then as given). A
    required key reported missing next to its misspelling is left out: it is the same
    mistake."""
    unique = list(dict.fromkeys(problems))
    misspelt = {(*p.loc[:-1], p.meant) for p in unique if p.meant}
    unique = [p for p in unique if not (p.message == _MISSING and p.loc in misspelt)]
    unique.sort(key=lambda p: line_of(lines, p.loc))
    return ConfigError(
        "\n".join(
            f"{filename}:{line_of(lines, p.loc)}: {dotted(p.loc)}: {p.message}" for p in unique
        )
    )


def line_of(lines: Mapping[Loc, int], loc: Loc) -> int:
    """The line of ``loc``, or of its nearest ancestor the file has (a missing key)."""
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return 1


def dotted(loc: Loc) -> str:
    """``mappings[0].source.type``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def describe(
    err: Mapping[str, Any], data: Any, model: type[BaseModel], *, base: Loc = ()
) -> Problem:
    """The problem a pydantic error of ``model.model_validate(data)`` stands for; ``base``
    is where ``data`` sits in the file."""
    kind = err["type"]
    loc = _data_path(tuple(err["loc"]), data, missing=kind == "missing")
    ctx = err.get("ctx") or {}
    msg = str(err["msg"]).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        keys = allowed_keys(model, loc[:-1], data)
        expected = f" (expected one of: {', '.join(keys)})" if keys else ""
        meant = _closest(loc[-1], keys)
        hint = f"; did you mean {meant!r}?" if meant else ""
        return Problem((*base, *loc), f"unknown key {loc[-1]!r}{expected}{hint}", meant)
    if kind == "missing":
        msg = _MISSING
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        loc = (*loc, "type")
        msg += did_you_mean(ctx.get("tag"), _quoted(ctx.get("expected_tags")))
    else:
        found = _HINT.search(msg)
        hint = found.group() if found else ""
        msg = msg[: found.start()] if found else msg
        if (
            "input" in err
            and not isinstance(err["input"], dict | list)
            and not (loc and _is_secret(loc[-1]))  # never echo a password, token or key
        ):
            msg = f"{msg} (got {json.dumps(err['input'], default=str)})"
        if kind == "literal_error":
            hint = did_you_mean(err.get("input"), _quoted(ctx.get("expected")))
        msg += hint  # last, after the value
    return Problem((*base, *loc), msg)


_HINT = re.compile(r"; did you mean '[^']*'\?$")  # a validator's own suggestion


def _quoted(text: object) -> list[str]:
    """The quoted names of pydantic's ``'a', 'b' or 'c'``."""
    return re.findall(r"'([^']*)'", text) if isinstance(text, str) else []


_MISSING = "required key is missing"

_SECRET_WORDS = ("password", "secret", "token", "authorization", "private", "credential")


def _is_secret(key: str | int) -> bool:
    """Whether a key names a secret (``sasl.password``, ``aws_secret_access_key``,
    ``auth_token``, an ``Authorization`` header...), whose value an error must not show."""
    name = str(key).lower()
    return any(word in name for word in _SECRET_WORDS)


def _data_path(loc: tuple[Any, ...], data: Any, *, missing: bool) -> Loc:
    """The key path in the data of a pydantic error location: union tags and type
    names are dropped; a missing key is kept as the last part."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and part < len(node)
        ):
            path.append(part)
            node = node[part]
    if missing and loc and loc[-1] not in path[-1:]:
        path.append(loc[-1])
    return tuple(path)


def allowed_keys(model: type[BaseModel], path: Loc, data: Any) -> list[str]:
    """The keys the model allows in the mapping at ``path`` of ``data`` (empty when its
    keys are free, as a dict's, or when the path leads nowhere known)."""
    kind: Any = model
    node = data
    for part in path:
        kind = _narrow(kind, node)
        if isinstance(kind, type) and issubclass(kind, BaseModel) and isinstance(part, str):
            field = kind.model_fields.get(part)
            if field is None:
                return []
            kind = field.annotation
        elif get_origin(kind) in (list, dict) and get_args(kind):
            kind = get_args(kind)[-1]
        else:
            return []
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return []
    kind = _narrow(kind, node)
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return list(kind.model_fields)
    return []


def _narrow(kind: Any, node: Any) -> Any:
    """What ``kind`` is for ``node``: ``Annotated`` dropped, a union resolved by the
    node's shape and its ``type`` tag."""
    while get_origin(kind) is Annotated:
        kind = get_args(kind)[0]
    if get_origin(kind) not in (Union, types.UnionType):
        return kind
    options = [_narrow(option, node) for option in get_args(kind)]
    if isinstance(node, dict):
        models = [o for o in options if isinstance(o, type) and issubclass(o, BaseModel)]
        tagged = [m for m in models if _tag_matches(m, node)]
        if tagged or len(models) == 1:
            return (tagged or models)[0]
        return next((o for o in options if get_origin(o) is dict), None)
    if isinstance(node, list):
        return next((o for o in options if get_origin(o) is list), None)
    return None


def _tag_matches(model: type[BaseModel], node: dict[str, Any]) -> bool:
    field = model.model_fields.get("type")
    if field is None or get_origin(field.annotation) is not Literal:
        return False
    return node.get("type") in get_args(field.annotation)
