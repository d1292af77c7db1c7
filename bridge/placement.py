"""Which process runs each mapping when the daemon has worker processes (``workers:``).

A pure function of the configuration and the number of workers, so a reload that
changes nothing moves nothing. The rules, and why:

- A mapping runs **in the daemon's own process** when its function is a ``runtime``
  function (the runtime host is one pool per function, as a Lambda function is one:
  its reserved concurrency, warm instances, cold starts and fixed ports hold as
  configured; its function processes are processes of their own anyway), or when its
  connector says ``in_daemon`` (an event bus rule reads the spool the bus writes), or
  when ``workers`` is 0.
- Every other mapping runs in a **worker**: the least loaded one (fewest mappings), ties
  to the lowest index. A mapping with ``parallelism: N`` (Kafka: members of its consumer
  group) gets N members in N different workers (no more members than workers).
- A function's ``concurrency`` stays the function's: when its mappings run in several
  processes (or an API of the daemon calls it too), each process gets a share, the
  shares adding up to the limit (never less than 1 each, so a function of concurrency C
  is never put in more than C processes: its further mappings go to the workers that
  have it already).
- Only as many workers as there are members to run are started.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from bridge.config import BridgeConfig, FunctionConfig, MappingConfig

__all__ = ["DAEMON", "Placement", "place", "worker_count"]

#: the daemon's own process, in :attr:`Placement.hosts`
DAEMON = -1


def worker_count(config: BridgeConfig) -> int:
    """The most worker processes ``config`` asks for (``auto``: one per core)."""
    if config.workers == "auto":
        return os.cpu_count() or 1
    return int(config.workers)


@dataclass
class Placement:
    """Where each mapping runs: ``hosts[name]`` is the list of processes running a member
    of it (``DAEMON`` or a worker index); ``shares[process][function]`` the concurrency
    that process may use of the function (absent: the function's own setting)."""

    workers: int = 0
    hosts: dict[str, list[int]] = field(default_factory=dict)
    shares: dict[int, dict[str, int]] = field(default_factory=dict)

    def in_daemon(self, mapping: str) -> bool:
        return DAEMON in self.hosts.get(mapping, [DAEMON])

    def members_of(self, index: int) -> dict[str, int]:
        """Which member (0 to N-1) of each of its mappings worker ``index`` runs."""
        return {name: hosts.index(index) for name, hosts in self.hosts.items() if index in hosts}

    def of_worker(self, index: int) -> list[str]:
        return [name for name, hosts in self.hosts.items() if index in hosts]

    def functions_of(self, process: int, config: BridgeConfig) -> dict[str, FunctionConfig]:
        """``config``'s functions as ``process`` runs them: with its concurrency share."""
        shares = self.shares.get(process, {})
        return {
            name: (
                function.model_copy(update={"concurrency": shares[name]})
                if name in shares
                else function
            )
            for name, function in config.functions.items()
        }

    def worker_config(self, index: int, config: BridgeConfig) -> BridgeConfig:
        """What worker ``index`` runs: its mappings and their functions (with its shares),
        no APIs, buses or admin server, mappings in their own processes (``workers: 0``)."""
        names = set(self.of_worker(index))
        mappings = [m for m in config.mappings if m.name in names]
        used = {m.function for m in mappings}
        functions = {n: f for n, f in self.functions_of(index, config).items() if n in used}
        return config.model_copy(
            update={
                "mappings": mappings,
                "functions": functions,
                "apis": [],
                "event_buses": [],
                "admin": config.admin.model_copy(update={"enabled": False}),
                "workers": 0,
            }
        )


def _runs_in_daemon(mapping: MappingConfig, config: BridgeConfig) -> bool:
    from bridge.registry import connector_class

    function = config.functions.get(mapping.function)
    if function is not None and function.type == "runtime":
        return True
    try:
        cls: Any = connector_class(mapping.source["type"])
    except Exception:
        return True  # the config check says what is wrong with it
    return bool(getattr(cls, "in_daemon", False))


def _called_by_daemon(config: BridgeConfig) -> set[str]:
    """Functions the daemon's APIs call."""
    called: set[str] = set()
    for api in config.apis:
        called.update(getattr(api, "routes", {}).values())
    return called


def place(config: BridgeConfig, workers: int | None = None) -> Placement:
    """Place ``config``'s mappings on the daemon and up to ``workers`` worker processes
    (default :func:`worker_count`); disabled and paused mappings are placed too, so that
    enabling or resuming one moves nothing else."""
    limit = worker_count(config) if workers is None else workers
    placement = Placement()
    remote = [m for m in config.mappings if limit > 0 and not _runs_in_daemon(m, config)]
    for m in config.mappings:
        placement.hosts[m.name] = [DAEMON]  # until a worker is chosen below
    if not remote:
        return placement
    # a function's processes: the daemon when an API calls it, then the workers given it
    holders: dict[str, list[int]] = {}
    for name in _called_by_daemon(config):
        holders[name] = [DAEMON]
    load = [0] * limit
    for m in remote:
        cap = _concurrency(config.functions.get(m.function))
        have = holders.setdefault(m.function, [])
        members = min(m.parallelism or 1, limit)
        chosen: list[int] = []
        for _ in range(members):
            spread = cap is None or len(have) < cap
            candidates = [w for w in range(limit) if w not in chosen and (spread or w in have)]
            if not candidates:
                break  # the function is in as many processes as its concurrency allows
            best = min(candidates, key=lambda w: (load[w], w))
            chosen.append(best)
            load[best] += 1
            if best not in have:
                have.append(best)
        if chosen:  # else: the daemon has the function, and all of its concurrency
            placement.hosts[m.name] = sorted(chosen)
    placement.workers = max(w for hosts in placement.hosts.values() for w in hosts) + 1
    for name, processes in holders.items():
        cap = _concurrency(config.functions.get(name))
        if cap is None or len(processes) < 2:
            continue
        base, extra = divmod(cap, len(processes))
        for i, process in enumerate(processes):
            placement.shares.setdefault(process, {})[name] = base + (1 if i < extra else 0)
    return placement


def _concurrency(function: FunctionConfig | None) -> int | None:
    value = getattr(function, "concurrency", None)
    return int(value) if value is not None else None
