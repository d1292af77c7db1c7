"""Benthos, the comparison peer (github.com/benthosdev/benthos/v4 v4.27.0, MIT): its binary
(built from the Go module proxy by ``scripts/build-benthos``), its process (sampled like the
bridge's) and its config.

The config reads the same topic as the bridge (``kafka_franz``, a consumer group of its own,
offsets committed only for delivered messages: at-least-once, as the bridge) and posts to the
same endpoint. Each request carries AWS's self-managed Kafka event, built by Bloblang
mappings, so the endpoint counts records the same way and Benthos does comparable work per
record (base64 of the value, JSON of the record). What differs from the bridge's events:
the keys are in alphabetical order, ``timestamp`` has whole seconds (Benthos exposes the
record time in seconds), and ``headers`` is always empty (the bench's records have none).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from bench._common import ROOT, BridgeProcess

__all__ = ["BenthosProcess", "binary", "kafka_to_http", "version"]

# one record of the event, from a kafka_franz message
_RECORD = """{
  "topic": @kafka_topic,
  "partition": @kafka_partition,
  "offset": @kafka_offset,
  "timestamp": @kafka_timestamp_unix * 1000,
  "timestampType": "CREATE_TIME",
  "value": content().encode("base64"),
  "headers": []
}"""


def binary() -> Path:
    """The Benthos binary, built (once, cached by version) by ``scripts/build-benthos``."""
    out = subprocess.run(
        [str(ROOT / "scripts" / "build-benthos")], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip())


def version(path: Path) -> str:
    out = subprocess.run([str(path), "--version"], check=True, capture_output=True, text=True)
    return out.stdout.splitlines()[0].removeprefix("Version: ").strip()


class BenthosProcess(BridgeProcess):
    """``benthos -c <config>``, its RSS and CPU sampled as :class:`BridgeProcess` does."""

    log_name = "benthos.log"
    what = "benthos"

    def __init__(self, config: str, workdir: Path, *, path: Path, interval: float = 0.5) -> None:
        super().__init__(config, workdir, interval=interval)
        self.binary = path

    def command(self) -> tuple[list[str], str, dict[str, str]]:
        return [str(self.binary), "-c", str(self.config_path)], str(self.workdir), {**os.environ}


def kafka_to_http(
    *,
    bootstrap: str,
    topic: str,
    group: str,
    url: str,
    batch: int,
    period: str,
    max_in_flight: int,
    checkpoint_limit: int = 1024,
) -> str:
    """A config reading ``topic`` as ``group`` from the oldest offset and posting AWS's Kafka
    event to ``url``, ``max_in_flight`` requests at once. ``batch`` > 1: the input batches
    each partition's messages (``count`` ``batch``, flushed after ``period`` as the bridge's
    batching window) and one request carries a batch; 1: one request per message."""
    envelope = (
        'root.eventSource = "SelfManagedKafka"\n'
        f"root.bootstrapServers = {json.dumps(bootstrap)}\n"
        'let key = "%s-%d".format(@kafka_topic, @kafka_partition)\n'
    )
    source: dict[str, Any] = {
        "seed_brokers": [bootstrap],
        "topics": [topic],
        "consumer_group": group,
        "start_from_oldest": True,
        "commit_period": "1s",
        "checkpoint_limit": checkpoint_limit,
    }
    pipeline: dict[str, Any] = {"processors": []}
    if batch > 1:
        source["batching"] = {
            "count": batch,
            "period": period,
            "processors": [
                {"mapping": f"root = {_RECORD}"},
                {"archive": {"format": "json_array"}},
                {
                    # the archived batch has no metadata of its own: name it from a record
                    "mapping": envelope.replace("@kafka_topic", "this.index(0).topic").replace(
                        "@kafka_partition", "this.index(0).partition"
                    )
                    + "root.records = {$key: this}"
                },
            ],
        }
    else:
        pipeline["processors"].append(
            {"mapping": f"{envelope}let record = {_RECORD}\nroot.records = {{$key: [$record]}}"}
        )
    config = {
        "http": {"enabled": False},
        "logger": {"level": "WARN"},
        "input": {"kafka_franz": source},
        "pipeline": pipeline,
        "output": {
            "http_client": {
                "url": url,
                "verb": "POST",
                "headers": {"Content-Type": "application/json"},
                "max_in_flight": max_in_flight,
                "timeout": "30s",
            }
        },
    }
    return json.dumps(config, indent=1)  # JSON is YAML
