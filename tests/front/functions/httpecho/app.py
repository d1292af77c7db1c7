"""An HTTP API handler for the front door's tests: the last path segment picks what to do."""

import base64
import json
import time


def handler(event, context):
    path = event.get("rawPath") or event.get("path") or ""
    query = event.get("queryStringParameters") or {}
    what = path.rstrip("/").rsplit("/", 1)[-1]
    if what == "raise":
        raise ValueError("the handler failed")
    if what == "garbage":
        return {"statusCode": "two hundred"}
    if what == "sleep":
        time.sleep(float(query.get("seconds", "1")))
    if what == "plain":  # 2.0: a value without statusCode is a 200 JSON body
        return {"hello": "world", "n": [1, 2]}
    if what == "binary":
        return {
            "statusCode": 200,
            "headers": {"content-type": "application/octet-stream"},
            "body": base64.b64encode(bytes(range(256))).decode(),
            "isBase64Encoded": True,
        }
    answer = {
        "statusCode": int(query.get("status", "200")),
        "headers": {"content-type": "application/json", "x-handler": context.function_name},
        "body": json.dumps(event),
    }
    if "cookie" in query and "version" in event and event["version"] == "2.0":
        answer["cookies"] = ["a=1; Path=/", "b=2; HttpOnly"]
    if "cookie" in query and "httpMethod" in event:
        answer["multiValueHeaders"] = {"set-cookie": ["a=1; Path=/", "b=2; HttpOnly"]}
    return answer
