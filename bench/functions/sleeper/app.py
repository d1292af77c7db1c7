"""Bench handler: sleeps the event's "seconds" (a stand-in for I/O-bound work), then
answers its pid."""

import os
import time


def handler(event, context):
    time.sleep(event.get("seconds", 0))
    return {"pid": os.getpid()}
