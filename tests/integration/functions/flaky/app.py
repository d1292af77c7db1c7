"""Test handler for dead-letter replays: appends every event it gets (whole, one JSON
line) to $RECORDER_OUT, then fails while the file $FAIL_WHILE exists: a broken function
is fixed by deleting that file."""

import json
import os
from pathlib import Path

OUT = Path(os.environ["RECORDER_OUT"])


def handler(event, context):
    fd = os.open(OUT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:  # one write per line: concurrent function processes share the file
        os.write(fd, (json.dumps(event) + "\n").encode())
    finally:
        os.close(fd)
    if os.path.exists(os.environ["FAIL_WHILE"]):
        raise ValueError("the function is broken for now")
    return {"batchItemFailures": []}
