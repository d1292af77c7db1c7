"""A Lambda handler in Python under awslambdaric, the same as the Go, Node.js and Java ones
beside it: it records each call as a JSON line in $CALLS_OUT (when set) and answers with
the language, the event's key and Lambda's context. A key containing "fail" is a function
error (errorType "LanguageError")."""

import json
import os
import platform


class LanguageError(Exception):
    pass


def handler(event, context):
    http = isinstance(event.get("rawPath"), str)
    records = event.get("Records") or [{}]
    key = event["rawPath"] if http else records[0].get("s3", {}).get("object", {}).get("key", "")
    info = {
        "language": "python",
        "runtime": platform.python_version(),
        "key": key,
        "functionName": context.function_name,
        "memoryLimitInMB": int(context.memory_limit_in_mb),
        "invokedFunctionArn": context.invoked_function_arn,
        "awsRequestId": context.aws_request_id,
        "remainingMs": context.get_remaining_time_in_millis(),
    }
    if os.environ.get("CALLS_OUT"):
        with open(os.environ["CALLS_OUT"], "a") as out:
            out.write(json.dumps(info) + "\n")
    if "fail" in key:
        raise LanguageError(f"python failed on {key}")
    if not http:
        return info
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(info),
    }
