"""AWS's simple WebSocket chat sample (aws-samples/simple-websockets-chat-app), in Python:
connections are kept as files in $CHAT_CONNECTIONS instead of a DynamoDB table, the rest
is the sample's logic, callback URL included."""

import json
import os
from pathlib import Path

import boto3

CONNECTIONS = Path(os.environ["CHAT_CONNECTIONS"])


def handler(event, context):
    request = event["requestContext"]
    route, connection = request["routeKey"], request["connectionId"]
    if route == "$connect":
        (CONNECTIONS / connection).write_text(json.dumps(event))
        return {"statusCode": 200, "body": "Connected."}
    if route == "$disconnect":
        (CONNECTIONS / connection).unlink(missing_ok=True)
        with open(CONNECTIONS.parent / "disconnects.jsonl", "a") as log:
            log.write(json.dumps(event) + "\n")
        return {"statusCode": 200, "body": "Disconnected."}
    # sendmessage
    data = json.loads(event["body"])["data"]
    api = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url="https://" + request["domainName"] + "/" + request["stage"],
    )
    for path in CONNECTIONS.iterdir():
        try:
            api.post_to_connection(ConnectionId=path.name, Data=data)
        except api.exceptions.GoneException:
            path.unlink(missing_ok=True)  # stale: the sample deletes it
    return {"statusCode": 200, "body": "Data sent."}
