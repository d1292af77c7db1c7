"""Benchmark handler for latency: at handler start, appends one line per record,
``<produced_at> <started_at>`` (epoch seconds), to $STAMP_OUT. The writer put its send
time in the record (the same rules as ``bench.sink.produced_times``, repeated here so
that the handler needs nothing but the standard library):

- Kafka: the value is ``{"t": <epoch seconds>}`` (JSON, base64 in the event);
- S3: the object key's last path segment, ``lat/<n>/<epoch seconds>`` (URL-encoded);
- DynamoDB: the ``t`` number attribute of ``NewImage``.
"""

import base64
import contextlib
import json
import os
import time
from typing import Any
from urllib.parse import unquote_plus

OUT = os.environ["STAMP_OUT"]


def _produced(event: Any) -> list[float]:
    out: list[float] = []
    if not isinstance(event, dict):
        return out
    for records in (event.get("records") or {}).values():
        for record in records:
            out.append(float(json.loads(base64.b64decode(record["value"]))["t"]))
    for record in event.get("Records") or []:
        source = record.get("eventSource")
        if source == "aws:s3":
            key = unquote_plus(record["s3"]["object"]["key"])
            with contextlib.suppress(ValueError):
                out.append(float(key.rsplit("/", 1)[-1]))
        elif source == "aws:dynamodb":
            stamp = (record["dynamodb"].get("NewImage") or {}).get("t")
            if stamp is not None and "N" in stamp:
                out.append(float(stamp["N"]))
    return out


def handler(event: Any, context: Any) -> dict[str, Any]:
    started = time.time()
    lines = [f"{produced} {started}\n" for produced in _produced(event)]
    with open(OUT, "a") as f:
        f.write("".join(lines))
    return {}
