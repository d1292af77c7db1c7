"""Sample events in AWS's shapes, for ``trigger-bridge generate-event``.

Each is what the corresponding AWS source sends to a Lambda function, with
placeholder values, so a handler can be tried without a running source.
"""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any

from bridge.events import dumps

__all__ = ["sample_event"]

REGION = "us-east-1"
ACCOUNT = "123456789012"


def sample_event(source: str) -> dict[str, Any]:
    """The sample event for ``source`` (s3, dynamodb, sqs, kafka, websocket); KeyError
    otherwise."""
    return _SAMPLES[source]()


def _s3() -> dict[str, Any]:
    from connectors.s3_events import s3_record

    return {
        "Records": [
            s3_record(
                event_name="ObjectCreated:Put",
                bucket="example-bucket",
                key="uploads/hello world.txt",
                sequencer="0A1B2C3D4E5F678901",
                event_time=time.time(),
                region=REGION,
                size=1024,
                etag="0123456789abcdef0123456789abcdef",
            )
        ]
    }


def _dynamodb() -> dict[str, Any]:
    table = "arn:aws:dynamodb:us-east-1:123456789012:table/ExampleTable"
    return {
        "Records": [
            {
                "eventID": "c4ca4238a0b923820dcc509a6f75849b",
                "eventName": "INSERT",
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": REGION,
                "dynamodb": {
                    "ApproximateCreationDateTime": int(time.time()),
                    "Keys": {"Id": {"N": "101"}},
                    "NewImage": {"Message": {"S": "New item!"}, "Id": {"N": "101"}},
                    "SequenceNumber": "4421584500000000017450439091",
                    "SizeBytes": 26,
                    "StreamViewType": "NEW_AND_OLD_IMAGES",
                },
                "eventSourceARN": f"{table}/stream/2026-01-01T00:00:00.000",
            }
        ]
    }


def _sqs() -> dict[str, Any]:
    body = '{"hello": "world"}'
    now = str(int(time.time() * 1000))
    return {
        "Records": [
            {
                "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
                "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": now,
                    "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                    "ApproximateFirstReceiveTimestamp": now,
                },
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:my-queue",
                "awsRegion": REGION,
            }
        ]
    }


def _kafka() -> dict[str, Any]:
    value = dumps({"hello": "world"})
    return {
        "eventSource": "SelfManagedKafka",
        "bootstrapServers": "127.0.0.1:9092",
        "records": {
            "mytopic-0": [
                {
                    "topic": "mytopic",
                    "partition": 0,
                    "offset": 15,
                    "timestamp": int(time.time() * 1000),
                    "timestampType": "CREATE_TIME",
                    "key": base64.b64encode(b"key-1").decode(),
                    "value": base64.b64encode(value).decode(),
                    "headers": [{"headerKey": list(b"headerValue")}],
                }
            ]
        },
    }


def _websocket() -> dict[str, Any]:
    from connectors.websocket.normalize import EVENT_SOURCE, websocket_record

    now = time.time()
    message = dumps({"symbol": "AAPL", "price": 187.5})
    return {
        "eventSource": EVENT_SOURCE,
        "eventSourceUrl": "wss://feed.example.com/v1",
        "records": [
            websocket_record(
                seq=42, payload=message, binary=False, received=now, connection=3, key="AAPL"
            ),
            websocket_record(
                seq=43, payload=b"\x00\x01", binary=True, received=now, connection=3, key=None
            ),
        ],
    }


_SAMPLES = {
    "s3": _s3,
    "dynamodb": _dynamodb,
    "sqs": _sqs,
    "kafka": _kafka,
    "websocket": _websocket,
}
