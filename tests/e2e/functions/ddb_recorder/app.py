"""Test handler for DynamoDB stream events: records each invocation to $RECORDER_OUT and
fails on request. An item's NewImage may carry {"poison": {"BOOL": true}} (the batch
fails every time), {"report_once": {"BOOL": true}} (named in batchItemFailures, by its
SequenceNumber, the first time it is delivered) or {"sleep": {"N": "s"}} (sleeps s
seconds)."""

import json
import os
import time
from pathlib import Path

OUT = Path(os.environ["RECORDER_OUT"])
SEEN = OUT.with_suffix(".seen")


def _times(event_id):
    SEEN.mkdir(exist_ok=True)
    marker = SEEN / event_id
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
        image = r["dynamodb"].get("NewImage") or {}
        times = _times(r["eventID"])
        if "sleep" in image:
            time.sleep(float(image["sleep"]["N"]))
        if image.get("poison", {}).get("BOOL"):
            raise ValueError(f"poison item {image['pk']['S']}")
        if image.get("report_once", {}).get("BOOL") and times == 1:
            failures.append({"itemIdentifier": r["dynamodb"]["SequenceNumber"]})
    return {"batchItemFailures": failures}
