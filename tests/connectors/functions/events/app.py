"""Test handler for single events (schedules, event bus rules): records each payload.

An event whose detail says {"fail": true} raises."""

import json
import os
from pathlib import Path

OUT = Path(os.environ["RECORDER_OUT"])


def handler(event, context):
    with OUT.open("a") as f:
        f.write(json.dumps({"event": event, "function": context.function_name}) + "\n")
    detail = event.get("detail") if isinstance(event, dict) else None
    if isinstance(detail, dict) and detail.get("fail"):
        raise RuntimeError("asked to fail")
    return {}
