"""A Lambda handler for the runtime target's tests; the event's "action" picks the behaviour."""

import json
import os
import signal
import time

print(f"cold start in process {os.getpid()}")


def handler(event, context):
    action = event.get("action")
    if action == "echo":  # the event exactly as this handler received it, as raw bytes
        return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
    if action == "context":
        return {
            "function_name": context.function_name,
            "function_version": context.function_version,
            "invoked_function_arn": context.invoked_function_arn,
            "aws_request_id": context.aws_request_id,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "log_group_name": context.log_group_name,
            "remaining_ms": context.get_remaining_time_in_millis(),
            "env": {k: os.environ.get(k) for k in event.get("env", [])},
        }
    if action == "raise":
        raise ValueError(event["message"])
    if action == "sleep":
        started = time.time()
        time.sleep(event["seconds"])
        return {"pid": os.getpid(), "started": started, "ended": time.time()}
    if action == "exit":
        os._exit(1)
    if action == "ignore_sigterm":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if action == "print":
        print(event["line"])
    return {"pid": os.getpid()}
