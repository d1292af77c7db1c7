"""Test handler for SQS events: records each invocation to $RECORDER_OUT and fails on
request. Bodies are JSON: {"fail": true} raises; {"fail_first": N} raises on the first N
deliveries of that message; {"report_once": true} names it in batchItemFailures the first
time; {"sleep": s} sleeps."""

import json
import os
import time
from pathlib import Path

OUT = Path(os.environ["RECORDER_OUT"])
SEEN = OUT.with_suffix(".seen")


def _seen(message_id):
    SEEN.mkdir(exist_ok=True)
    marker = SEEN / message_id
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
        f.write(json.dumps({"at": time.time(), "records": records}) + "\n")
    failures = []
    for r in records:
        body = json.loads(r["body"]) if r["body"].startswith("{") else {}
        times = _seen(r["messageId"])
        if body.get("sleep"):
            time.sleep(body["sleep"])
        if body.get("fail"):
            raise ValueError(f"message {body.get('n')} fails")
        if times <= body.get("fail_first", 0):
            raise RuntimeError(f"message {body.get('n')} fails attempt {times}")
        if body.get("report_once") and times == 1:
            failures.append({"itemIdentifier": r["messageId"]})
    return {"batchItemFailures": failures}
