"""A plain AWS Lambda handler: it runs unchanged on AWS and under trigger-bridge.

For every S3 record it prints the bucket, the (URL-decoded) key and the size, and
returns a summary.
"""

import json
from typing import Any
from urllib.parse import unquote_plus


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    seen = []
    for record in event.get("Records", []):
        s3 = record.get("s3", {})
        key = unquote_plus(s3.get("object", {}).get("key", ""))
        size = s3.get("object", {}).get("size")
        print(
            json.dumps(
                {
                    "event": record.get("eventName"),
                    "bucket": s3.get("bucket", {}).get("name"),
                    "key": key,
                    "size": size,
                    "request_id": context.aws_request_id,
                }
            ),
            flush=True,
        )
        seen.append(key)
    return {"processed": seen}
