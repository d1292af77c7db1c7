"""Functions in other languages under the runtime target: cold start and warm round trip.

The same handler (tests/languages/functions/<language>, built and cached by
tests/languages/builds.py) under each language's Runtime API client: Python (awslambdaric),
Go (aws-lambda-go), Node.js (aws-lambda-ric, and minimal-runtime.js, a client with no
dependencies), Java (aws-lambda-java-runtime-interface-client).

Through the bridge's own runtime target, in this process (built from a config as ``run``
builds it, concurrency 1):

- cold start: from ``start()`` of a new target (which starts the process) to the answer of
  its first invocation: process start, the runtime's init, its first poll, the invocation;
  repeated with a new target each time;
- warm round trip: one invocation after another on the warm process, ``invoke()`` to
  answer (the event in, the runtime's poll, the handler, its answer back).
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import yaml

from bench._common import Report, percentile, workdir
from bridge.config import parse_config
from bridge.targets import Target, build_target
from tests.languages.builds import Built, build

__all__ = ["run"]

LANGUAGES = {
    "python": "Python 3.11, awslambdaric",
    "go": "Go, aws-lambda-go",
    "node": "Node.js 20, aws-lambda-ric 3.3.0",
    "node-minimal": "Node.js 20, minimal-runtime.js",
    "java": "Java 17, runtime interface client 2.10.1",
}
EVENT = json.dumps({"Records": [{"s3": {"object": {"key": "bench.txt"}}}]}).encode()


def _target(built: Built, tmp: Path) -> Target:
    text = yaml.safe_dump(
        {
            "state_dir": str(tmp / "state"),
            "functions": {"fn": built.function(concurrency=1, timeout=30, memory_size=512)},
        }
    )
    config = parse_config(text, "bench.yaml", {})
    return build_target("fn", config.functions["fn"], config)


def _rss_mib(target: Target) -> float | None:
    """The resident memory of the function process, if the target tells its pid."""
    pids = getattr(target, "pids", None) or []
    total = 0.0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
    return total or None


async def _measure(built: Built, tmp: Path, *, repeats: int, warm: int) -> dict[str, Any]:
    colds: list[float] = []
    trips: list[float] = []
    rss = None
    for attempt in range(repeats):
        target = _target(built, tmp)
        try:
            started = time.perf_counter()
            await target.start()
            answer = await target.invoke(EVENT, request_id=f"cold-{attempt}", timeout=None)
            colds.append((time.perf_counter() - started) * 1000)
            assert json.loads(answer)["key"] == "bench.txt", answer
            if attempt == repeats - 1:  # the warm figures on the last one
                for i in range(warm):
                    sent = time.perf_counter()
                    await target.invoke(EVENT, request_id=f"warm-{i}", timeout=None)
                    trips.append((time.perf_counter() - sent) * 1000)
                rss = _rss_mib(target)
        finally:
            await target.aclose()
    return {"cold": colds, "warm": trips, "rss": rss}


async def run(*, quick: bool, label: str) -> Report:
    repeats = 5 if quick else 10
    warm = 300 if quick else 2000
    report = Report("languages", quick, label)
    built = {language: build(language) for language in LANGUAGES}
    report.params = {
        "cold starts per language": repeats,
        "warm invocations per language": warm,
        "in flight": 1,
        "target": "runtime (in process, built from a config), concurrency 1",
        "event": f"{len(EVENT)} bytes",
    }
    async with workdir("languages") as tmp:
        for language, what in LANGUAGES.items():
            m = await _measure(built[language], tmp, repeats=repeats, warm=warm)
            cold, trips = m["cold"], m["warm"]
            report.rows.append({"function": f"{language} ({what})",
                                "cold start ms (median)": statistics.median(cold),
                                "cold min-max ms": f"{min(cold):.0f}-{max(cold):.0f}",
                                "warm round trip ms (median)": statistics.median(trips),
                                "warm p95 ms": percentile(trips, 0.95),
                                "warm p99 ms": percentile(trips, 0.99),
                                "invocations/s (1 in flight)": len(trips) / (sum(trips) / 1000),
                                "function RSS MiB": m["rss"] if m["rss"] is not None else "",
                                })  # fmt: skip
            report.series[language] = {
                "cold_ms": cold,
                "warm_ms_sorted_every_10th": sorted(trips)[::10],
            }
    report.notes.append(
        "cold start: target start() (the process starts) to the first invocation's answer; "
        "each a new target and process. Java runs with Lambda's JVM options "
        "(-XX:TieredStopAtLevel=1 -XX:+UseSerialGC)."
    )
    report.write()
    return report
