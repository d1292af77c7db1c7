"""A DynamoDB Streams API in front of DynamoDB Local that does what the real service does
and DynamoDB Local cannot be made to do on demand.

DynamoDB Local gives a stream one shard, which never splits; its iterators do not expire
and nothing is ever trimmed. ``StreamsProxy`` forwards every request to it unchanged and
lets a test turn on, per call kind:

- ``expire_next(n)``: the next ``n`` GetRecords calls answer ``ExpiredIteratorException``;
- ``trim_through(seq)``: records up to sequence number ``seq`` are gone, as after the
  stream's 24-hour retention: an iterator at or after an older position answers
  ``TrimmedDataAccessException``, ``TRIM_HORIZON`` starts after ``seq``, and GetRecords
  never returns them;
- ``split_after(seq)``: the shard closes after ``seq`` and a child shard (its parent named
  in DescribeStream) carries every record after it, as when DynamoDB splits a shard.
- ``fan_out(n)``: the stream shows ``n`` open shards instead of its one, each with the
  records of the items whose keys hash to it (:meth:`StreamsProxy.fan_index`), as
  DynamoDB spreads a table's items over shards by key. Sequence numbers stay the real
  ones, so each shard's are increasing and ``AFTER_SEQUENCE_NUMBER`` works as on AWS.
  (Not combined with the other faults.)

It is a real HTTP server on loopback; the bridge talks to it as to DynamoDB. Request
signatures are not checked by DynamoDB Local, so requests are forwarded as they are.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import aiohttp
from aiohttp import web

__all__ = ["StreamsProxy"]

_STREAMS = "DynamoDBStreams_20120810."
_ERROR_PREFIX = "com.amazonaws.dynamodb.v20120810#"


class StreamsProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.url = ""
        self.calls: list[str] = []  # operations seen, in order
        self._expire = 0
        self._trimmed: int | None = None
        self._split: int | None = None
        self._child = ""
        self._width = 21
        self._fan = 0
        self.fan_shards: list[str] = []  # the shard ids shown by fan_out, once described
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    # ------------------------------------------------------------ faults

    def expire_next(self, count: int = 1) -> None:
        self._expire += count

    def trim_through(self, seq: str) -> None:
        self._trimmed = int(seq)
        self._width = len(seq)

    def split_after(self, seq: str) -> None:
        self._split = int(seq)
        self._width = len(seq)

    def fan_out(self, shards: int) -> None:
        self._fan = shards

    def fan_index(self, keys: dict[str, Any]) -> int:
        """Which of the fanned-out shards carries the item with these ``Keys`` (as a
        stream record shows them: ``{"pk": {"S": "a"}}``)."""
        return zlib.crc32(json.dumps(keys, sort_keys=True).encode()) % self._fan

    def _text(self, seq: int) -> str:
        """A sequence number as DynamoDB writes it (zero-padded, at least 21 digits)."""
        return str(seq).zfill(self._width)

    @property
    def child_shard(self) -> str:
        return self._child

    # ------------------------------------------------------------ serving

    async def __aenter__(self) -> StreamsProxy:
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.Response:
        target = request.headers.get("X-Amz-Target", "")
        body = await request.read()
        operation = target.removeprefix(_STREAMS) if target.startswith(_STREAMS) else ""
        self.calls.append(operation or target)
        if self._fan and operation in ("DescribeStream", "GetShardIterator", "GetRecords"):
            return await self._fanned(request, operation, body)
        if operation == "GetRecords" and self._expire:
            self._expire -= 1
            return _error("ExpiredIteratorException", "Iterator expired (injected)")
        if operation == "DescribeStream" and self._split is not None:
            return _ok(self._describe_split(await self._forward(request, body)))
        if operation == "GetShardIterator":
            return await self._shard_iterator(request, json.loads(body))
        if operation == "GetRecords":
            return await self._records(request, json.loads(body))
        status, answer = await self._forward(request, body)
        return web.Response(status=status, body=answer, content_type="application/x-amz-json-1.0")

    async def _forward(self, request: web.Request, body: bytes) -> tuple[int, bytes]:
        assert self._session is not None
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
        }
        async with self._session.post(self.upstream + "/", data=body, headers=headers) as answer:
            return answer.status, await answer.read()

    async def _call(self, request: web.Request, operation: str, args: dict[str, Any]) -> Any:
        headers = dict(request.headers)
        headers["X-Amz-Target"] = _STREAMS + operation
        assert self._session is not None
        data = json.dumps(args).encode()
        clean = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length")}
        async with self._session.post(self.upstream + "/", data=data, headers=clean) as answer:
            return answer.status, await answer.json(content_type=None)

    # ------------------------------------------------------------ the stream as it should be

    def _describe_split(self, forwarded: tuple[int, bytes]) -> dict[str, Any]:
        _, raw = forwarded
        doc: dict[str, Any] = json.loads(raw)
        description = doc["StreamDescription"]
        [parent] = description["Shards"]
        self._child = parent["ShardId"] + "-child"
        assert self._split is not None
        parent["SequenceNumberRange"]["EndingSequenceNumber"] = self._text(self._split)
        child = {
            "ShardId": self._child,
            "ParentShardId": parent["ShardId"],
            "SequenceNumberRange": {"StartingSequenceNumber": self._text(self._split + 1)},
        }
        description["Shards"] = [parent, child]
        return doc

    async def _shard_iterator(self, request: web.Request, args: dict[str, Any]) -> web.Response:
        shard = args["ShardId"]
        kind = args["ShardIteratorType"]
        seq = int(args["SequenceNumber"]) if "SequenceNumber" in args else None
        is_child = bool(self._child) and shard == self._child
        if is_child:
            args = {**args, "ShardId": shard.removesuffix("-child")}
        floor = self._trimmed
        if kind in ("AFTER_SEQUENCE_NUMBER", "AT_SEQUENCE_NUMBER") and floor is not None:
            assert seq is not None
            if seq < floor:
                return _error("TrimmedDataAccessException", "Trimmed (injected)")
        start = None  # start after this sequence number instead
        if kind == "TRIM_HORIZON":
            candidates = [n for n in (floor, self._split if is_child else None) if n is not None]
            start = max(candidates) if candidates else None
        elif is_child and kind in ("AFTER_SEQUENCE_NUMBER", "AT_SEQUENCE_NUMBER"):
            assert seq is not None and self._split is not None
            start = max(seq, self._split) if kind == "AFTER_SEQUENCE_NUMBER" else None
        if start is not None:
            args = {
                **args,
                "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                "SequenceNumber": self._text(start),
            }
        status, doc = await self._call(request, "GetShardIterator", args)
        if status == 200:
            doc["ShardIterator"] = ("child|" if is_child else "shard|") + doc["ShardIterator"]
        return _ok(doc, status)

    async def _records(self, request: web.Request, args: dict[str, Any]) -> web.Response:
        which, _, real = str(args["ShardIterator"]).partition("|")
        status, doc = await self._call(request, "GetRecords", {**args, "ShardIterator": real})
        if status != 200:
            return _ok(doc, status)
        records = doc.get("Records", [])
        if self._trimmed is not None:
            records = [r for r in records if _seq(r) > self._trimmed]
        closed = False
        if which == "shard" and self._split is not None:
            closed = any(_seq(r) >= self._split for r in records)
            records = [r for r in records if _seq(r) <= self._split]
        doc["Records"] = records
        if closed:
            doc.pop("NextShardIterator", None)  # read past the end of a closed shard
        elif doc.get("NextShardIterator"):
            doc["NextShardIterator"] = f"{which}|{doc['NextShardIterator']}"
        return _ok(doc)

    async def _fanned(self, request: web.Request, operation: str, body: bytes) -> web.Response:
        """DescribeStream, GetShardIterator and GetRecords of a fanned-out stream."""
        if operation == "DescribeStream":
            status, raw = await self._forward(request, body)
            doc: dict[str, Any] = json.loads(raw)
            if status != 200:
                return _ok(doc, status)
            description = doc["StreamDescription"]
            [real] = description["Shards"]
            self.fan_shards = [f"{real['ShardId']}-fan{k}" for k in range(self._fan)]
            description["Shards"] = [
                {"ShardId": shard, "SequenceNumberRange": real["SequenceNumberRange"]}
                for shard in self.fan_shards
            ]
            return _ok(doc)
        args = json.loads(body)
        if operation == "GetShardIterator":
            real, _, index = str(args["ShardId"]).rpartition("-fan")
            status, doc = await self._call(request, operation, {**args, "ShardId": real})
            if status == 200:
                doc["ShardIterator"] = f"fan{index}|{doc['ShardIterator']}"
            return _ok(doc, status)
        which, _, iterator = str(args["ShardIterator"]).partition("|")
        status, doc = await self._call(request, operation, {**args, "ShardIterator": iterator})
        if status != 200:
            return _ok(doc, status)
        index = int(which.removeprefix("fan"))
        doc["Records"] = [
            r for r in doc.get("Records", []) if self.fan_index(r["dynamodb"]["Keys"]) == index
        ]
        if doc.get("NextShardIterator"):
            doc["NextShardIterator"] = f"{which}|{doc['NextShardIterator']}"
        return _ok(doc)


def _seq(record: dict[str, Any]) -> int:
    return int(record["dynamodb"]["SequenceNumber"])


def _ok(doc: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(doc).encode(), content_type="application/x-amz-json-1.0"
    )


def _error(code: str, message: str) -> web.Response:
    body = json.dumps({"__type": _ERROR_PREFIX + code, "message": message}).encode()
    return web.Response(status=400, body=body, content_type="application/x-amz-json-1.0")
