"""Test handler for self-managed Kafka events: appends each invocation (the whole event,
its start and end time, and the process's $RECORDER_NAME) to $RECORDER_OUT, and fails on
request. Record values that are JSON steer it: {"fail": true} raises every time;
{"report_once": true} names the record in batchItemFailures the first time it is seen
(AWS's Kafka form: {"partition": "<topic>-<partition>", "offset": N}); {"sleep": s}
sleeps s seconds; {"fail_while": path} raises while that file exists."""

import base64
import json
import os
import time
from pathlib import Path

OUT = Path(os.environ["RECORDER_OUT"])
SEEN = OUT.with_suffix(".seen")


def _seen(name):
    SEEN.mkdir(exist_ok=True)
    marker = SEEN / name
    count = int(marker.read_text()) if marker.exists() else 0
    # atomically: a process killed half-way (the bridge's SIGKILL takes its functions
    # down too) must not leave an empty count behind for the next attempt to trip on
    partial = marker.with_name(marker.name + ".tmp")
    partial.write_text(str(count + 1))
    os.replace(partial, marker)
    return count + 1


def _body(record):
    value = record.get("value")
    if value is None:
        return {}
    try:
        body = json.loads(base64.b64decode(value))
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def handler(event, context):
    started = time.time()
    failures = []
    error = None
    for name, records in event["records"].items():
        for r in records:
            body = _body(r)
            if body.get("sleep"):
                time.sleep(body["sleep"])
            if body.get("fail"):
                error = ValueError(f"record {name}@{r['offset']} fails")
            if body.get("fail_while") and os.path.exists(body["fail_while"]):
                error = ValueError(f"record {name}@{r['offset']} fails for now")
            if body.get("report_once") and _seen(f"{name}@{r['offset']}") == 1:
                failures.append({"itemIdentifier": {"partition": name, "offset": r["offset"]}})
    line = {
        "at": started,
        "end": time.time(),
        "who": os.environ.get("RECORDER_NAME", ""),
        "event": event,
    }
    fd = os.open(OUT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:  # one write per line: concurrent function processes share the file
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)
    if error is not None:
        raise error
    return {"batchItemFailures": failures}
