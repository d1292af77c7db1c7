"""Test handler for websocket feeds: records every invocation to $RECORDER_OUT.

Messages steer it: {"poison": true} raises; {"fail_while": path} raises while the file
is there; while the file $BLOCK exists it waits."""

import json
import os
import time
from pathlib import Path

OUT = Path(os.environ["RECORDER_OUT"])
BLOCK = os.environ.get("BLOCK")


def handler(event, context):
    while BLOCK and os.path.exists(BLOCK):
        time.sleep(0.05)
    records = event["records"]
    with OUT.open("a") as f:
        f.write(
            json.dumps(
                {"event": {k: v for k, v in event.items() if k != "records"}, "records": records}
            )
            + "\n"
        )
    for r in records:
        if r["isBase64Encoded"] or not r["data"].startswith("{"):
            continue
        body = json.loads(r["data"])
        if body.get("poison"):
            raise ValueError(f"poison message {r['sequenceNumber']}")
        if body.get("fail_while") and os.path.exists(body["fail_while"]):
            raise RuntimeError(f"message {r['sequenceNumber']} fails while {body['fail_while']}")
    return {}
