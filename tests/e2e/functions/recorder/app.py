"""Test handler: records every invocation to $RECORDER_OUT, and fails on request.

Journal bodies steer it: {"poison": true} raises; {"fail_first": N} raises on the
first N invocations that contain the line; {"report_once": true} names the line in
batchItemFailures the first time it is seen; {"sleep": s} sleeps s seconds.
"""

import json
import os
import time
from pathlib import Path

OUT = Path(os.environ["RECORDER_OUT"])
SEEN = OUT.with_suffix(".seen")


def _seen(line):
    SEEN.mkdir(exist_ok=True)
    marker = SEEN / str(line)
    count = int(marker.read_text()) if marker.exists() else 0
    # atomically: a process killed half-way (the bridge's SIGKILL takes its functions
    # down too) must not leave an empty count behind for the next attempt to trip on
    partial = marker.with_name(marker.name + ".tmp")
    partial.write_text(str(count + 1))
    os.replace(partial, marker)
    return count + 1


def handler(event, context):
    records = event["Records"]
    with OUT.open("a") as f:
        f.write(
            json.dumps(
                {
                    "request_id": context.aws_request_id,
                    "lines": [r["line"] for r in records],
                    "partitions": [r["partition"] for r in records],
                }
            )
            + "\n"
        )
    failures = []
    for r in records:
        body = r["body"]
        times = _seen(r["line"])
        if body.get("sleep"):
            time.sleep(body["sleep"])
        if body.get("poison"):
            raise ValueError(f"poison line {r['line']}")
        if times <= body.get("fail_first", 0):
            raise RuntimeError(f"line {r['line']} fails attempt {times}")
        if body.get("report_once") and times == 1:
            failures.append({"itemIdentifier": str(r["line"])})
    return {"batchItemFailures": failures}
