"""Test handler for S3 events: records each invocation to $RECORDER_OUT; raises for an
object whose key contains "poison" (to exercise retries and the on-failure record)."""

import json
import os
import time
from pathlib import Path

OUT = Path(os.environ["RECORDER_OUT"])


def handler(event, context):
    records = event["Records"]
    with OUT.open("a") as f:
        f.write(json.dumps({"at": time.time(), "records": records}) + "\n")
    for r in records:
        if "poison" in r["s3"]["object"]["key"]:
            raise ValueError(f"cannot process {r['s3']['object']['key']}")
    return {"ok": True}
