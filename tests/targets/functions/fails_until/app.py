"""A Lambda function whose cold start fails until the file named by $START_OK exists
(a dependency being deployed, a secret not there yet)."""

import os

if not os.path.exists(os.environ["START_OK"]):
    raise RuntimeError("the configuration is not there yet")


def handler(event, context):
    return {"pid": os.getpid()}
