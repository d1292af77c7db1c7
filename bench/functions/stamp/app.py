"""Benchmark handler for latency: at handler start, appends one line per record,
``<produced_at> <started_at>`` (epoch seconds), to $STAMP_OUT. The producer put its send
time in the record's value as ``{"t": <epoch seconds>}`` (JSON, base64 in the event)."""

import base64
import json
import os
import time

OUT = os.environ["STAMP_OUT"]


def handler(event, context):
    started = time.time()
    lines = []
    for records in event.get("records", {}).values():
        for record in records:
            produced = json.loads(base64.b64decode(record["value"]))["t"]
            lines.append(f"{produced} {started}\n")
    with open(OUT, "a") as f:
        f.write("".join(lines))
    return {}
