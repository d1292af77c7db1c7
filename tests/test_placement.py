"""Where mappings run with worker processes (bridge/placement.py): pure logic."""

from __future__ import annotations

from collections import Counter

import pytest

from bridge.config import BridgeConfig, ConfigError, parse_config
from bridge.placement import DAEMON, place


def _config(mappings: str, functions: str = "", extra: str = "") -> BridgeConfig:
    text = f"""
functions:
  web: {{type: http, url: "http://127.0.0.1:9/", concurrency: 10}}
  one: {{type: http, url: "http://127.0.0.1:9/", concurrency: 1}}
  rt: {{type: runtime, command: "python -m awslambdaric app.handler"}}
{functions}
mappings:
{mappings}
{extra}
"""
    return parse_config(text, "bridge.yaml", {})


def _dir(name: str, function: str = "web", **options: object) -> str:
    extra = "".join(f", {k}: {v}" for k, v in options.items())
    return (
        f"  - {{name: {name}, function: {function}, "
        f"source: {{type: local_dir, path: /tmp/{name}}}{extra}}}\n"
    )


def _kafka(name: str, function: str = "web", **options: object) -> str:
    extra = "".join(f", {k}: {v}" for k, v in options.items())
    return (
        f"  - {{name: {name}, function: {function}, source: {{type: kafka, "
        f"bootstrap_servers: 'k:9092', topics: [t]}}{extra}}}\n"
    )


def test_mappings_spread_over_the_least_loaded_workers_and_only_needed_ones_start() -> None:
    config = _config(_dir("a") + _dir("b") + _dir("c"))
    placement = place(config, 4)
    assert placement.hosts == {"a": [0], "b": [1], "c": [2]}
    assert placement.workers == 3  # not four: there are three mappings
    two = place(config, 2)
    assert two.hosts == {"a": [0], "b": [1], "c": [0]} and two.workers == 2
    assert place(config, 2) == two  # a pure function: a reload that changes nothing moves nothing


def test_workers_zero_runtime_functions_and_bus_rules_stay_in_the_daemon() -> None:
    bus_rule = (
        "  - {name: rule, function: web, source: {type: eventbridge, "
        "event_pattern: {source: [a]}}}\n"
    )
    config = _config(_dir("a") + _dir("r", "rt") + bus_rule, extra="event_buses: [{name: default}]")
    placement = place(config, 2)
    assert placement.hosts["r"] == [DAEMON] and placement.in_daemon("r")
    assert placement.hosts["rule"] == [DAEMON]
    assert placement.hosts["a"] == [0] and placement.workers == 1
    nothing = place(config, 0)
    assert all(hosts == [DAEMON] for hosts in nothing.hosts.values()) and nothing.workers == 0


def test_parallelism_puts_each_member_in_its_own_worker_up_to_the_number_of_workers() -> None:
    config = _config(_kafka("k", parallelism=3) + _dir("a"))
    assert place(config, 4).hosts == {"k": [0, 1, 2], "a": [3]}
    capped = place(config, 2)
    assert capped.hosts["k"] == [0, 1]  # never two members in one process
    assert capped.members_of(0) == {"k": 0, "a": 0} and capped.members_of(1) == {"k": 1}


def test_a_functions_concurrency_is_shared_out_never_multiplied() -> None:
    config = _config(_kafka("k", parallelism=3) + _dir("a") + _dir("b", "one") + _dir("c", "one"))
    placement = place(config, 3)
    shares = [placement.shares.get(w, {}).get("web") for w in range(placement.workers)]
    hosting = [w for w in range(placement.workers) if "web" in placement.shares.get(w, {})]
    assert sum(s for s in shares if s is not None) == 10 and all(s >= 1 for s in shares if s)
    assert set(hosting) == {w for n in ("k", "a") for w in placement.hosts[n]}
    # concurrency 1: both of its mappings in one process, with all of it
    assert placement.hosts["b"] == placement.hosts["c"]
    assert all("one" not in shares for shares in placement.shares.values())
    worker = placement.worker_config(placement.hosts["k"][0], config)
    assert worker.functions["web"].concurrency == placement.shares[placement.hosts["k"][0]]["web"]


def test_a_function_an_api_calls_keeps_a_share_in_the_daemon() -> None:
    api = "apis: [{name: front, type: http, routes: {'GET /x': web, 'GET /y': one}}]"
    config = _config(_dir("a") + _dir("b", "one"), extra=api)
    placement = place(config, 2)
    assert placement.hosts["a"] == [0]
    assert placement.shares[DAEMON]["web"] + placement.shares[0]["web"] == 10
    # the daemon has all of "one" (concurrency 1) for its API: its mapping runs there too
    assert placement.hosts["b"] == [DAEMON]
    assert placement.functions_of(DAEMON, config)["web"].concurrency == 5


def test_a_worker_config_holds_its_mappings_and_functions_only() -> None:
    api = "apis: [{name: front, type: http, routes: {'GET /x': rt}}]"
    config = _config(_dir("a") + _dir("b", "one") + _dir("r", "rt"), extra=api)
    placement = place(config, 2)
    worker = placement.worker_config(placement.hosts["b"][0], config)
    assert [m.name for m in worker.mappings] == ["b"]
    assert set(worker.functions) == {"one"}
    assert worker.apis == [] and worker.event_buses == [] and not worker.admin.enabled
    assert worker.workers == 0  # a worker runs what it is given in its own process


def test_disabled_mappings_are_placed_too_so_enabling_one_moves_nothing_else() -> None:
    before = place(_config(_dir("a") + _dir("b", enabled="false") + _dir("c")), 2)
    after = place(_config(_dir("a") + _dir("b") + _dir("c")), 2)
    assert before.hosts == after.hosts


def test_load_stays_even_with_many_mappings() -> None:
    config = _config("".join(_dir(f"m{i}") for i in range(50)))
    counts = Counter(w for hosts in place(config, 4).hosts.values() for w in hosts)
    assert sorted(counts.values()) == [12, 12, 13, 13]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (", parallelism: 2", "parallelism: applies to Kafka"),
        (", parallelism: 0", "parallelism"),
    ],
)
def test_parallelism_is_for_kafka_only(options: str, message: str) -> None:
    text = (
        "functions: {web: {type: http, url: 'http://127.0.0.1:9/'}}\n"
        f"mappings:\n  - {{name: a, function: web, source: {{type: local_dir, path: /tmp/a}}"
        f"{options}}}\n"
    )
    with pytest.raises(ConfigError) as error:
        parse_config(text, "bridge.yaml", {})
    assert message in str(error.value)


def test_workers_takes_auto_or_a_number() -> None:
    assert _config(_dir("a")).workers == "auto"
    assert _config(_dir("a"), extra="workers: 3").workers == 3
    with pytest.raises(ConfigError) as error:
        _config(_dir("a"), extra="workers: many")
    assert "workers" in str(error.value)
