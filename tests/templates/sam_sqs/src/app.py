"""Appends each message body to the file named by OUT (one JSON line per message)."""

import json
import os


def handler(event, context):
    with open(os.environ["OUT"], "a") as out:
        for record in event["Records"]:
            out.write(json.dumps({"body": record["body"], "stage": os.environ["STAGE"]}) + "\n")
    return {"batchItemFailures": []}
