"""A handler for the tests of the runtime host's Lambda-like behaviour (instances, limits,
layers); the event's "action" picks what it does."""

import importlib
import os
import shutil
import time

_hoard = []


def handler(event, context):
    action = event.get("action")
    if action == "sleep":
        time.sleep(event["seconds"])
    elif action == "print":
        for line in event["lines"]:
            print(line, flush=True)
    elif action == "allocate":  # touch every page, so it is resident
        _hoard.append(bytearray(event["mb"] * 1024 * 1024))
    elif action == "import":
        module = importlib.import_module(event["module"])
        return {"pid": os.getpid(), "value": module.VALUE, "file": module.__file__}
    elif action == "which":
        return {"pid": os.getpid(), "path": shutil.which(event["program"])}
    elif action == "env":
        return {"pid": os.getpid(), "env": {k: os.environ.get(k) for k in event["names"]}}
    elif action == "remaining":
        return {"pid": os.getpid(), "remaining_ms": context.get_remaining_time_in_millis()}
    return {"pid": os.getpid()}
