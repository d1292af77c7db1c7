"""Dead letters on an ``sqs://`` destination queue (see :mod:`bridge.dlq`): the queue's
messages, each a failure record, read with the same endpoint and credentials as the
destination writes them (the mapping's SQS source's, else the default AWS chain).

Reading receives every message and keeps it hidden (``hold_seconds``) while the store is
open, so a listing sees each message once; ``aclose()`` makes every message not removed
visible again at once. ``remove()`` deletes a replayed message, every copy of it, as
AWS's redrive does.
"""

from __future__ import annotations

import contextlib
from typing import Any

from bridge.dlq import StoredLetter, dedupe, parse_document, stable_id
from bridge.errors import BridgeError
from connectors.aws import AwsClientOptions, create_client, translate_errors

__all__ = ["SqsDeadLetters"]


class SqsDeadLetters:
    hold_seconds = 900  # long enough for a replay of what was read

    def __init__(self, uri: str, *, source: Any = None, region: str = "us-east-1") -> None:
        self.uri = uri
        self.queue = uri.removeprefix("sqs://")
        options = source if isinstance(source, AwsClientOptions) else AwsClientOptions()
        self._options = AwsClientOptions.model_validate(
            options.model_dump(include=set(AwsClientOptions.model_fields))
        )
        self._region = region
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._url = ""
        self._held: set[str] = set()
        self._what = f"dead letters {uri}"

    async def _open(self) -> Any:
        if self._client is None:
            self._client = await self._stack.enter_async_context(
                create_client("sqs", self._options, self._region)
            )
            if self.queue.startswith(("http://", "https://")):
                self._url = self.queue
            else:
                response = await self._client.get_queue_url(QueueName=self.queue)
                self._url = response["QueueUrl"]
        return self._client

    async def read(self) -> list[StoredLetter]:
        letters: list[StoredLetter] = []
        seen: set[str] = set()
        with translate_errors(self._what):
            client = await self._open()
            while True:
                response = await client.receive_message(
                    QueueUrl=self._url,
                    MaxNumberOfMessages=10,
                    WaitTimeSeconds=1,
                    VisibilityTimeout=self.hold_seconds,
                )
                messages = response.get("Messages", [])
                if not messages:
                    break
                for m in messages:
                    self._held.add(m["ReceiptHandle"])
                    if m["MessageId"] in seen:  # a standard queue's second copy
                        continue
                    seen.add(m["MessageId"])
                    body = m["Body"].encode("utf-8")
                    location = f"{self.queue} message {m['MessageId']}"
                    document, error = parse_document(body, location)
                    letter = StoredLetter(stable_id(body), location, document, error)
                    letter.handles.append(m["ReceiptHandle"])
                    letters.append(letter)
        return dedupe(letters)

    async def remove(self, letter: StoredLetter) -> None:
        with translate_errors(self._what):
            client = await self._open()
            for handle in letter.handles:
                await client.delete_message(QueueUrl=self._url, ReceiptHandle=handle)
                self._held.discard(handle)

    async def aclose(self) -> None:
        held, self._held = list(self._held), set()
        try:
            if held and self._client is not None:
                with contextlib.suppress(BridgeError), translate_errors(self._what):
                    for start in range(0, len(held), 10):
                        await self._client.change_message_visibility_batch(
                            QueueUrl=self._url,
                            Entries=[
                                {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0}
                                for i, h in enumerate(held[start : start + 10])
                            ],
                        )
        finally:
            await self._stack.aclose()
            self._client = None
