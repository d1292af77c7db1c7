"""The bridge config derived from one file, and the file being read.

A :class:`Derived` collects ``functions:``, ``mappings:``, ``apis:`` and ``event_buses:``
with, for each key, the template line it came from, so that the normal validation
(:func:`bridge.config.validate_document`) names the template's ``file:line``. Properties
are taken by name: each is mapped, or deliberately left out because it has no meaning
here (IAM, KMS, VPC, tags, metrics), or it is a ConfigError naming the resource and the
property (:func:`reject_unknown`); nothing the bridge would behave differently for is
skipped in silence.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.config import destination_of_arn
from bridge.config_errors import Loc, line_of
from bridge.errors import ConfigError
from bridge.templates.intrinsics import NO_VALUE, Resolver
from bridge.templates.loader import Document
from bridge.templates.overlay import Overlay

__all__ = ["Context", "Derived", "Draft", "reject_unknown"]


@dataclass
class Context:
    """One file being converted: its data, how to resolve its values, the overlay."""

    document: Document
    resolver: Resolver
    overlay: Overlay

    @property
    def folder(self) -> Path:
        """The file's folder (where code paths are relative to)."""
        return self.document.path.parent

    def error(self, loc: Loc, message: str) -> ConfigError:
        """A ConfigError naming the file, the line and the key path of ``loc``."""
        return self.document.error(loc, message)

    def value(self, props: Mapping[str, Any], key: str, loc: Loc, default: Any = None) -> Any:
        """``props[key]`` resolved (``loc`` is where ``props`` is), or ``default`` when it
        is absent or ``AWS::NoValue``; raise ConfigError where it cannot be resolved."""
        if key not in props:
            return default
        value = self.resolver.resolve(props[key], (*loc, key))
        return default if value is NO_VALUE else value

    def line(self, loc: Loc) -> int:
        """The line of ``loc`` (or of its nearest ancestor in the file)."""
        return line_of(self.document.lines, loc)

    def path_text(self, path: Path) -> str:
        """A path as the bridge config gives it: relative to the working directory when
        it is below it, else absolute."""
        absolute = Path(os.path.abspath(path))
        try:
            return str(absolute.relative_to(Path.cwd())) or "."
        except ValueError:
            return str(absolute)

    def destination(self, arn: Any, loc: Loc) -> str:
        """The on_failure URI of a destination ARN: the overlay's, else AWS's own queue."""
        if not isinstance(arn, str):
            raise self.error(loc, "expected a destination ARN")
        if arn in self.overlay.destinations:
            return self.overlay.destinations[arn]
        if not arn.startswith("arn:"):
            return arn
        try:
            uri = destination_of_arn(arn)
        except ValueError as exc:
            raise self.error(loc, f"{exc}; or map {arn} in the overlay's destinations") from None
        if uri.startswith("sqs://"):
            return "sqs://" + self.overlay.name(uri.removeprefix("sqs://"))
        return uri


def reject_unknown(
    context: Context, props: Mapping[str, Any], loc: Loc, known: Iterable[Any]
) -> None:
    """Raise a ConfigError for the first property of ``props`` not in ``known``."""
    for key in props:
        if key not in set(known):
            raise context.error((*loc, key), "not supported by the bridge")


@dataclass
class Draft:
    """One mapping being derived: its options (in the order they are set, which is the
    order the derived bridge.yaml shows) and the template place of each."""

    data: dict[str, Any]
    origin: Loc
    where: dict[tuple[str, ...], Loc] = field(default_factory=dict)

    @classmethod
    def new(cls, name: str, function: str, origin: Loc) -> Draft:
        """A mapping ``name`` of ``function`` with an empty source, from ``origin``."""
        return cls({"name": name, "function": function, "source": {}}, origin)

    def set(self, path: tuple[str, ...], value: Any, loc: Loc) -> None:
        """Set the option at ``path`` (``("source", "type")``...), from ``loc``."""
        node = self.data
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
        self.where[path] = loc

    @property
    def source(self) -> dict[str, Any]:
        source: dict[str, Any] = self.data["source"]
        return source


@dataclass
class Derived:
    """The bridge config derived from one file, with the line of every key."""

    context: Context
    functions: dict[str, dict[str, Any]] = field(default_factory=dict)
    mappings: list[dict[str, Any]] = field(default_factory=list)
    apis: dict[str, dict[str, Any]] = field(default_factory=dict)
    buses: dict[str, dict[str, Any]] = field(default_factory=dict)
    lines: dict[Loc, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    used: set[str] = field(default_factory=set)  # functions that events name
    unrunnable: dict[str, ConfigError] = field(default_factory=dict)

    def add_mapping(self, draft: Draft) -> None:
        """Append the mapping ``draft`` (its function counts as named by an event)."""
        i = len(self.mappings)
        self.mappings.append(draft.data)
        self.used.add(draft.data["function"])
        line = self.context.line
        self.lines[("mappings", i)] = line(draft.origin)
        for key in ("name", "function", "source"):
            self.lines[("mappings", i, key)] = line(draft.origin)
        for path, loc in draft.where.items():
            self.lines[("mappings", i, *path)] = line(loc)

    def add_function(self, name: str, entry: dict[str, Any] | ConfigError, loc: Loc) -> None:
        """A function, or why the bridge cannot run it (an error only if an event names
        it: see :meth:`settle`)."""
        if isinstance(entry, ConfigError):
            self.unrunnable[name] = entry
            return
        self.functions[name] = entry
        self.lines[("functions", name)] = self.context.line(loc)

    def settle(self) -> None:
        """Raise the error of the first function that cannot run and that an event names;
        the others are left out, with a note."""
        for name, error in self.unrunnable.items():
            if name in self.used:
                raise error
            self.notes.append(f"function {name} left out (no event names it): {error.message}")

    def add_route(
        self, api: str, route: str, function: str, loc: Loc, options: Mapping[str, Any]
    ) -> None:
        """Route ``route`` of API ``api`` to ``function``; ``options`` (payload version,
        stage, timeout...) must agree with the API's other routes, and a route is given
        once: else a ConfigError naming ``loc``."""
        entry = self.apis.setdefault(api, {"name": api, "routes": {}})
        for key, value in options.items():
            if key in entry and entry[key] != value:
                raise self.context.error(
                    loc,
                    f"{key} {value!r} differs from {entry[key]!r} of another route of "
                    f"API {api}; the bridge takes one per API",
                )
            entry[key] = value
        if route in entry["routes"]:
            raise self.context.error(loc, f"route {route!r} of API {api} is given twice")
        entry["routes"][route] = function
        self.used.add(function)
        self.lines.setdefault(("apis", api), self.context.line(loc))

    def add_bus(self, name: str, loc: Loc) -> None:
        """The event bus ``name`` (once, at the line of its first rule)."""
        if name not in self.buses:
            self.buses[name] = {"name": name}
            self.lines[("event_buses", name)] = self.context.line(loc)

    def document(self) -> tuple[dict[str, Any], dict[Loc, int]]:
        """The bridge config document and the template line of its keys (lists of APIs and
        buses indexed as the document has them)."""
        overlay = self.context.overlay
        data: dict[str, Any] = {
            **overlay.bridge,
            "region": overlay.region,
            "account_id": overlay.account_id,
            "functions": self.functions,
            "mappings": self.mappings,
        }
        lines = {k: v for k, v in self.lines.items() if k[0] in ("functions", "mappings")}
        for section, named, extra in (
            ("apis", self.apis, overlay.apis),
            ("event_buses", self.buses, overlay.event_buses),
        ):
            if named:
                data[section] = [{**entry, **extra.get(name, {})} for name, entry in named.items()]
                for i, name in enumerate(named):
                    lines[(section, i)] = self.lines.get((section, name), 1)
        return data, lines
