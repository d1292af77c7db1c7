"""Test handler for tumbling windows: records each invocation's window properties and
records to $RECORDER_OUT and answers the window's state: {"count": records so far,
"keys": the Kafka values (or DynamoDB pk) so far}. $NO_STATE set: answers without one."""

import base64
import json
import os
from pathlib import Path

OUT = Path(os.environ["RECORDER_OUT"])


def _items(event):
    if "Records" in event:
        return [r["dynamodb"]["Keys"]["pk"]["S"] for r in event["Records"]]
    return [
        base64.b64decode(r["value"]).decode()
        for records in event.get("records", {}).values()
        for r in records
    ]


def handler(event, context):
    items = _items(event)
    seen = {k: event.get(k) for k in ("window", "state", "shardId", "eventSourceARN")}
    seen["final"] = event.get("isFinalInvokeForWindow")
    seen["early"] = event.get("isWindowTerminatedEarly")
    seen["items"] = items
    with OUT.open("a") as f:
        f.write(json.dumps(seen) + "\n")
    if os.environ.get("NO_STATE"):
        return {"batchItemFailures": []}
    state = event.get("state") or {}
    return {
        "state": {
            "count": state.get("count", 0) + len(items),
            "keys": state.get("keys", []) + items,
        },
        "batchItemFailures": [],
    }
