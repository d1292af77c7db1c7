"""Test handler for parallelized DynamoDB stream events: appends one line per invocation
to $RECORDER_OUT once it ends (start and end times, its records, whether it failed).

An item's NewImage may carry {"sleep": {"N": "s"}} (sleeps s seconds), {"poison":
{"BOOL": true}} (the batch fails every time) or {"blocked": {"BOOL": true}} (the batch
fails while the file $RECORDER_OUT.blocked exists)."""

import json
import os
import time
from pathlib import Path

OUT = Path(os.environ["RECORDER_OUT"])
BLOCKED = OUT.with_suffix(".blocked")


def handler(event, context):
    start = time.time()
    records = event["Records"]
    error = None
    for r in records:
        image = r["dynamodb"].get("NewImage") or {}
        if "sleep" in image:
            time.sleep(float(image["sleep"]["N"]))
        if image.get("poison", {}).get("BOOL"):
            error = f"poison item {image['pk']['S']}"
        if image.get("blocked", {}).get("BOOL") and BLOCKED.exists():
            error = f"blocked item {image['pk']['S']}"
    line = {"start": start, "end": time.time(), "failed": error is not None, "records": records}
    with OUT.open("a") as f:
        f.write(json.dumps(line) + "\n")
    if error is not None:
        raise ValueError(error)
    return {}
