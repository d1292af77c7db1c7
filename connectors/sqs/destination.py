"""``sqs://queue``: failure records sent as messages to an SQS queue (by name or URL),
on the same endpoint and with the same credentials as the mapping's SQS source, or
the default AWS chain for other sources."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from typing import Any

from bridge.destinations import DestinationError
from bridge.errors import BridgeError
from connectors.aws import AwsClientOptions, create_client, translate_errors


class SqsDestination:
    def __init__(self, uri: str, *, source: Any = None, context: Any = None) -> None:
        self.uri = uri
        self.queue = uri.removeprefix("sqs://")
        options = source if isinstance(source, AwsClientOptions) else AwsClientOptions()
        self._options = AwsClientOptions.model_validate(
            options.model_dump(include=set(AwsClientOptions.model_fields))
        )
        self._region = getattr(context, "region", None) or "us-east-1"
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._url = ""

    async def write(self, documents: Sequence[dict[str, Any]]) -> None:
        try:
            with translate_errors(f"on_failure {self.uri}"):
                if self._client is None:
                    self._client = await self._stack.enter_async_context(
                        create_client("sqs", self._options, self._region)
                    )
                if not self._url:
                    if self.queue.startswith(("http://", "https://")):
                        self._url = self.queue
                    else:
                        self._url = (await self._client.get_queue_url(QueueName=self.queue))[
                            "QueueUrl"
                        ]
                for doc in documents:
                    await self._client.send_message(QueueUrl=self._url, MessageBody=json.dumps(doc))
        except BridgeError as exc:
            raise DestinationError(str(exc)) from exc

    async def aclose(self) -> None:
        await self._stack.aclose()
        self._client = None
