"""Checks across the parts of a configuration: names that must exist or be unique,
addresses that must not be shared.

:func:`reference_problems` reads the file's plain data (as YAML gave it, or a validated
model's dump), so it runs even when other parts of the file are invalid and reports every
problem it finds. What it cannot read (an entry that is not a mapping, a name that is not
a string) it skips: the schema reports that on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.config_errors import Loc, Problem, did_you_mean

__all__ = ["reference_problems"]

_HOST = "127.0.0.1"  # the default host of APIs and buses


def reference_problems(data: Mapping[str, Any]) -> list[Problem]:
    """Unknown functions and event buses, duplicate names, shared ports: every one."""
    functions = data.get("functions") or {}
    names = set(functions) if isinstance(functions, dict) else None  # None: unreadable
    mappings = _entries(data, "mappings")
    problems = _mapping_problems(mappings, names)
    apis = _entries(data, "apis")
    problems += _api_problems(apis, names)
    problems += _bus_problems(_entries(data, "event_buses"), apis, mappings, data)
    return problems


def _entries(data: Mapping[str, Any], key: str) -> list[tuple[int, dict[str, Any]]]:
    """The readable entries of a list at ``key``, with their indexes."""
    items = data.get(key)
    if not isinstance(items, list):
        return []
    return [(i, item) for i, item in enumerate(items) if isinstance(item, dict)]


def _unknown_function(name: object, names: set[str]) -> str | None:
    if not isinstance(name, str) or name in names:
        return None
    known = ", ".join(sorted(names)) or "none defined"
    return f"unknown function {name!r} (functions: {known}){did_you_mean(name, names)}"


def _mapping_problems(
    mappings: list[tuple[int, dict[str, Any]]], names: set[str] | None
) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[str] = set()
    for i, mapping in mappings:
        unknown = _unknown_function(mapping.get("function"), names) if names is not None else None
        if unknown:
            problems.append(Problem(("mappings", i, "function"), unknown))
        problems += _unique(("mappings", i), mapping, "mapping", seen)
    return problems


def _unique(
    loc: Loc,
    node: dict[str, Any],
    what: str,
    names: set[str],
    taken: set[tuple[str, int]] | None = None,
) -> list[Problem]:
    """``node``'s name is not in ``names`` and (given ``taken``) its fixed address is not
    in ``taken``; both are added to the sets for the nodes after it."""
    problems: list[Problem] = []
    name = node.get("name")
    if isinstance(name, str):
        if name in names:
            problems.append(Problem((*loc, "name"), f"duplicate {what} name {name!r}"))
        names.add(name)
    if taken is not None and (address := _address(node)):
        if address in taken:
            problems.append(Problem((*loc, "port"), f"{address[0]}:{address[1]} is taken"))
        taken.add(address)
    return problems


def _api_problems(apis: list[tuple[int, dict[str, Any]]], names: set[str] | None) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[str] = set()
    addresses: set[tuple[str, int]] = set()
    for i, api in apis:
        problems += _unique(("apis", i), api, "API", seen, addresses)
        routes = api.get("routes")
        if not isinstance(routes, dict):
            continue
        for key, function in routes.items():
            unknown = _unknown_function(function, names) if names is not None else None
            if unknown:
                problems.append(Problem(("apis", i, "routes", key), unknown))
        if api.get("type") == "http":
            problems += _route_key_problems(i, routes)
    return problems


def _route_key_problems(i: int, routes: dict[str, Any]) -> list[Problem]:
    """Each key of an HTTP API on its own, then (if all are good) together: ambiguity."""
    from bridge.front.routing import RouteTable

    problems: list[Problem] = []
    for key, function in routes.items():
        try:
            RouteTable({key: function})
        except ValueError as exc:
            problems.append(Problem(("apis", i, "routes", key), str(exc)))
    if not problems:
        try:
            RouteTable(routes)
        except ValueError as exc:
            problems.append(Problem(("apis", i, "routes"), str(exc)))
    return problems


def _bus_problems(
    buses: list[tuple[int, dict[str, Any]]],
    apis: list[tuple[int, dict[str, Any]]],
    mappings: list[tuple[int, dict[str, Any]]],
    data: Mapping[str, Any],
) -> list[Problem]:
    problems: list[Problem] = []
    names: set[str] = set()
    taken = {address for _, api in apis if (address := _address(api))}
    for i, bus in buses:
        problems += _unique(("event_buses", i), bus, "bus", names, taken)
    if not isinstance(data.get("event_buses", []), list):
        return problems  # the buses are unreadable: which ones exist is unknown
    for i, mapping in mappings:
        source = mapping.get("source")
        if not isinstance(source, dict) or source.get("type") != "eventbridge":
            continue
        bus = source.get("event_bus_name", "default")
        if isinstance(bus, str) and bus not in names:
            known = ", ".join(sorted(names)) or "none defined"
            problems.append(
                Problem(
                    ("mappings", i, "source", "event_bus_name"),
                    f"unknown event bus {bus!r} (event_buses: {known}){did_you_mean(bus, names)}",
                )
            )
    return problems


def _address(node: dict[str, Any]) -> tuple[str, int] | None:
    """``(host, port)`` of an API or bus with a fixed port (``${PORT}`` gives text)."""
    host, port = node.get("host", _HOST), node.get("port", 0)
    if isinstance(port, str) and port.strip().isdigit():
        port = int(port)
    if not isinstance(host, str) or isinstance(port, bool) or not isinstance(port, int):
        return None
    return (host, port) if port else None
