"""A WebSocket API handler for the front door's tests; the message's "do" picks what to do."""

import json
import os
import time


def handler(event, context):
    request = event["requestContext"]
    if request["routeKey"] == "$connect":
        query = event.get("queryStringParameters") or {}
        if "status" in query:  # refuse (or accept) with this status
            return {"statusCode": int(query["status"])}
        if "protocol" in query:
            return {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": query["protocol"]}}
        if "boom" in query:
            raise RuntimeError("connect failed")
        return {"statusCode": 200}
    if request["routeKey"] == "$disconnect":
        with open(os.environ["WS_LOG"], "a") as log:
            log.write(json.dumps(event) + "\n")
        return {"statusCode": 200}
    body = json.loads(event["body"]) if event.get("body", "").startswith("{") else {}
    what = body.get("do")
    if what == "raise":
        raise ValueError("the handler failed")
    if what == "sleep":
        time.sleep(body["seconds"])
    if what == "garbage":
        return "not a proxy response"
    return {"statusCode": 200, "body": json.dumps(event)}
