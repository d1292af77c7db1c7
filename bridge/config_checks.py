"""Deep checks of a valid configuration: what can be checked on this machine without
side effects (``trigger-bridge validate --deep``).

Beyond the schema, :func:`deep_check` looks at the files and programs a configuration
names: for a ``runtime`` function the bridge runs (one with ``command``), its ``cwd``,
its executable, and its Python handler (``python -m awslambdaric module.function``'s
argument, else the ``handler`` option of a Python command: found as a file and parsed
with :mod:`ast`, never imported); the folders of ``local_dir`` sources and of ``file://``
destinations, the ``state_dir``, and the TLS files of sources. Addresses are not tried:
it creates, opens for writing and connects to nothing. Relative paths are taken from the
working directory, as ``run`` takes them.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from bridge._yaml import load_yaml
from bridge.config import BridgeConfig, RuntimeFunction
from bridge.config_errors import Loc, did_you_mean, dotted, line_of

__all__ = ["Finding", "deep_check"]

_PYTHON = re.compile(r"^python[0-9.]*$")
_TLS_FILES = ("ca_file", "cert_file", "key_file")

_Found = tuple[Loc, str, bool]  # where, what, whether it is a problem (else a note)


@dataclass(frozen=True)
class Finding:
    """One result of a deep check: ``where`` is ``file:line: path``; a finding that is
    not a ``problem`` is a note (a folder the bridge will create)."""

    where: str
    message: str
    problem: bool = True

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def deep_check(config: BridgeConfig, path: str | Path) -> list[Finding]:
    """Every problem (and note) found, ordered by line.

    ``config`` is what ``load_config(path)`` returned; ``path`` is read again for the
    line numbers (``OSError`` or ``ConfigError`` if it no longer reads or parses). No
    finding, or notes only, means every check passed."""
    lines = load_yaml(Path(path).read_text(encoding="utf-8"), str(path))[1]
    found: list[_Found] = []
    found += _state_dir(config.state_dir)
    for name, function in config.functions.items():
        if isinstance(function, RuntimeFunction) and function.command:
            found += _runtime(("functions", name), function)
    for i, mapping in enumerate(config.mappings):
        source = config.source_config(mapping)
        found += _source(("mappings", i, "source"), source)
        uri = mapping.on_failure.destination if mapping.on_failure else ""
        if uri.startswith("file://"):
            why = _unwritable_file(Path(uri.removeprefix("file://")))
            found += [(("mappings", i, "on_failure"), why, True)] if why else []
    found.sort(key=lambda f: line_of(lines, f[0]))
    return [Finding(f"{path}:{line_of(lines, loc)}: {dotted(loc)}", m, p) for loc, m, p in found]


# ---------------------------------------------------------------- folders and files


def _state_dir(state_dir: str) -> list[_Found]:
    loc: Loc = ("state_dir",)
    folder = Path(state_dir)
    if folder.exists():
        if not folder.is_dir():
            return [(loc, f"{folder} is not a folder", True)]
        if not os.access(folder, os.W_OK | os.X_OK):
            return [(loc, f"{folder} is not writable", True)]
        return []
    why = _uncreatable(folder)
    if why:
        return [(loc, f"{folder} cannot be created: {why}", True)]
    return [(loc, f"{folder} does not exist yet; the bridge creates it", False)]


def _uncreatable(path: Path) -> str | None:
    """Why ``path`` (missing) cannot be made with its missing parents, or None."""
    ancestor = path.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{ancestor} is not a folder"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"{ancestor} is not writable"
    return None


def _unwritable_file(path: Path) -> str | None:
    """Why a file at ``path`` cannot be appended to (made with its folders), or None."""
    if path.is_dir():
        return f"{path} is a folder"
    if path.exists():
        return None if os.access(path, os.W_OK) else f"{path} is not writable"
    why = _uncreatable(path)
    return f"{path} cannot be created: {why}" if why else None


def _source(base: Loc, source: BaseModel) -> list[_Found]:
    from connectors.local_dir.config import LocalDirSource

    found: list[_Found] = []
    if isinstance(source, LocalDirSource):
        found += _local_dir(base, source.path, source.create)
    tls = getattr(source, "tls", None)
    for key in _TLS_FILES if isinstance(tls, BaseModel) else ():
        name = getattr(tls, key, None)
        if name and not Path(name).is_file():
            found.append(((*base, "tls", key), f"file {name} does not exist", True))
        elif name and not os.access(name, os.R_OK):
            found.append(((*base, "tls", key), f"file {name} is not readable", True))
    return found


def _local_dir(base: Loc, name: str, create: bool) -> list[_Found]:
    loc: Loc = (*base, "path")
    folder = Path(name)
    if folder.is_dir():
        readable = os.access(folder, os.R_OK | os.X_OK)
        return [] if readable else [(loc, f"folder {name} is not readable", True)]
    if folder.exists():
        return [(loc, f"{name} is not a folder", True)]
    if not create:
        return [(loc, f"folder {name} does not exist (and create is false)", True)]
    why = _uncreatable(folder)
    if why:
        return [(loc, f"folder {name} cannot be created: {why}", True)]
    return [(loc, f"folder {name} does not exist yet; the mapping creates it at start", False)]


# ---------------------------------------------------------------- runtime functions


def _runtime(base: Loc, function: RuntimeFunction) -> list[_Found]:
    """A function the bridge runs: its cwd, its executable, then its Python handler."""
    command = function.command or []
    if function.cwd is not None and not Path(function.cwd).is_dir():
        return [((*base, "cwd"), f"folder {function.cwd} does not exist", True)]
    root = Path(function.cwd or ".")
    own = command[0] in ("python", "python3")  # replaced by the bridge's interpreter
    path = function.env.get("PATH", os.environ.get("PATH", os.defpath))
    if not own and _executable(command[0], root, path) is None:
        where = "is not an executable file" if "/" in command[0] else "is not found on PATH"
        return [((*base, "command"), f"{command[0]!r} {where}", True)]
    if not (own or _PYTHON.match(Path(command[0]).name)):
        return []  # not Python: its handler cannot be checked here
    script = next((a for a in command[1:] if a.endswith(".py")), None)
    if script and "-m" not in command and "-c" not in command and not (root / script).is_file():
        return [((*base, "command"), f"script {script} not found in {root}", True)]
    roots = [root, *_python_path(function.env, root)]
    return _python_handler(base, function, roots, own=own)


def _python_handler(
    base: Loc, function: RuntimeFunction, roots: list[Path], *, own: bool
) -> list[_Found]:
    """The handler of ``python -m awslambdaric module.function`` (its argument), or else
    the ``handler`` option of a Python command."""
    command = function.command or []
    module = command[command.index("-m") + 1] if "-m" in command[:-1] else None
    loc: Loc = (*base, "command")
    if module == "awslambdaric":
        if own and importlib.util.find_spec("awslambdaric") is None:
            return [(loc, f"awslambdaric is not installed for {sys.executable}", True)]
        args = command[command.index("-m") + 2 :]
        if not args:
            return [(loc, "awslambdaric needs the handler as its argument: module.function", True)]
        return [(loc, why, True) for why in _handler_problems(args[0], roots, own=own)]
    if module is None and function.handler:
        loc = (*base, "handler")
        problems = _handler_problems(function.handler, roots, own=own)
        return [(loc, why, True) for why in problems]
    return []  # another runtime module finds its handler its own way


def _executable(name: str, root: Path, path: str) -> str | None:
    """Where ``name`` runs from: a path with ``/`` is taken from the function's cwd, as
    the process starts there; a bare name is looked up on the function's PATH."""
    if "/" in name:
        file = root / name
        return str(file) if file.is_file() and os.access(file, os.X_OK) else None
    return shutil.which(name, path=path)


def _python_path(env: Mapping[str, str], root: Path) -> list[Path]:
    return [root / entry for entry in env.get("PYTHONPATH", "").split(os.pathsep) if entry]


def _handler_problems(handler: str, roots: list[Path], *, own: bool) -> list[str]:
    """What stops awslambdaric from loading ``module.function`` (empty: nothing): the
    module is looked for under ``roots``, then (``own``: the bridge's interpreter runs
    it) where that interpreter's packages are."""
    module, dot, name = handler.rpartition(".")
    if not dot or not module or not name:
        return [f"handler {handler!r} is not module.function"]
    module = module.replace("/", ".")  # awslambdaric takes path/to/module.function too
    file = _find_module(module, roots) or (_installed_module(module) if own else None)
    if file is None:
        as_path = module.replace(".", "/")
        return [f"handler module {module!r} not found ({as_path}.py or {as_path}/__init__.py)"]
    try:
        tree = ast.parse(file.read_bytes(), filename=str(file))
    except (OSError, SyntaxError, ValueError) as exc:
        return [f"handler module {file} cannot be read: {exc}"]
    names = _top_level_names(tree)
    if names is None or name in names:
        return []
    functions = [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    return [f"{file} defines no top-level {name!r}{did_you_mean(name, functions)}"]


def _find_module(module: str, roots: list[Path]) -> Path | None:
    """``module``'s source file under the first root that has it."""
    *packages, last = module.split(".")
    for root in roots:
        folder = root.joinpath(*packages)
        for candidate in (folder / f"{last}.py", folder / last / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def _installed_module(module: str) -> Path | None:
    """``module``'s source file as the bridge's interpreter finds it: the top-level
    package by the import system's finders (installed, editable), which run none of its
    code, then the rest by folders."""
    top, *rest = module.split(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if not rest:
        origin = spec.origin or ""
        return Path(origin) if origin.endswith(".py") else None
    folders = [Path(folder) for folder in spec.submodule_search_locations or ()]
    return _find_module(".".join(rest), folders)


def _top_level_names(tree: ast.Module) -> set[str] | None:
    """The names a module binds outside functions and classes (under ``if``, ``try``...
    too); None when that cannot be told (``from x import *``, a module ``__getattr__``)."""
    names: set[str] = set()
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                if alias.name == "*":
                    return None
                names.add(alias.asname or alias.name.partition(".")[0])
            continue
        if isinstance(
            node, ast.Lambda | ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp
        ):
            continue  # a scope of its own
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        pending.extend(ast.iter_child_nodes(node))
    return None if "__getattr__" in names else names
