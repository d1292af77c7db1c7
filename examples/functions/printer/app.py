"""A plain AWS Lambda handler that prints the essentials of every record it gets.

It understands the three event shapes of the compose stack (docker-compose.yml):

- S3 event notifications (``Records[].eventSource == "aws:s3"``): event name, bucket,
  URL-decoded key, size;
- self-managed Kafka events (``eventSource == "SelfManagedKafka"``, ``records`` grouped by
  ``"<topic>-<partition>"``): topic, partition, offset, decoded key and value;
- DynamoDB Streams records (``eventSource == "aws:dynamodb"``): event name, table (from
  the stream ARN), keys, new image.

Each record is one JSON line on stdout, which is what ``docker compose logs function``
shows. When ``PRINTER_OUT`` names a file, the same lines are also appended there (the
tests read them). Anything else is printed as an ``unknown`` event; the handler never
fails on an unfamiliar shape. It runs unchanged on AWS Lambda.
"""

import base64
import binascii
import json
import os
from urllib.parse import unquote_plus


def _text(b64):
    """Kafka keys and values arrive base64-encoded: decode to text when it is UTF-8."""
    if b64 is None:
        return None
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        return b64
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return b64


def _s3(record):
    s3 = record.get("s3", {})
    obj = s3.get("object", {})
    return {
        "source": "aws:s3",
        "event": record.get("eventName"),
        "bucket": s3.get("bucket", {}).get("name"),
        "key": unquote_plus(obj.get("key", "")),
        "size": obj.get("size"),
    }


def _dynamodb(record):
    arn = record.get("eventSourceARN", "")
    # arn:aws:dynamodb:REGION:ACCOUNT:table/NAME/stream/LABEL
    table = arn.split(":table/", 1)[-1].split("/stream/", 1)[0] if ":table/" in arn else None
    ddb = record.get("dynamodb", {})
    return {
        "source": "aws:dynamodb",
        "event": record.get("eventName"),
        "table": table,
        "keys": ddb.get("Keys"),
        "new_image": ddb.get("NewImage"),
        "sequence_number": ddb.get("SequenceNumber"),
    }


def _kafka(record):
    return {
        "source": "kafka",
        "topic": record.get("topic"),
        "partition": record.get("partition"),
        "offset": record.get("offset"),
        "key": _text(record.get("key")),
        "value": _text(record.get("value")),
    }


def essentials(event):
    """One summary dict per record of an S3, Kafka or DynamoDB Streams event."""
    if not isinstance(event, dict):
        return [{"source": "unknown", "event": event}]
    if event.get("eventSource") in ("SelfManagedKafka", "aws:kafka"):
        return [_kafka(r) for batch in event.get("records", {}).values() for r in batch]
    out = []
    for record in event.get("Records", []):
        source = record.get("eventSource")
        if source == "aws:s3":
            out.append(_s3(record))
        elif source == "aws:dynamodb":
            out.append(_dynamodb(record))
        else:
            out.append({"source": source or "unknown", "record": record})
    return out


def handler(event, context):
    lines = [
        json.dumps({**item, "request_id": context.aws_request_id}, ensure_ascii=False)
        for item in essentials(event)
    ]
    for line in lines:
        print(line, flush=True)
    out = os.environ.get("PRINTER_OUT")
    if out and lines:
        with open(out, "a", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
    return {"printed": len(lines)}
