"""A Lambda function whose cold start hangs (waiting for something that never answers),
unless the file named by $START_OK exists."""

import os
import time

if not os.path.exists(os.environ.get("START_OK", "/nonexistent")):
    time.sleep(3600)


def handler(event, context):
    return {"pid": os.getpid()}
