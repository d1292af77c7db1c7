"""The minimal function endpoint: a raw asyncio HTTP/1.1 server answering ``{}`` at once.

Run as its own process (``python -m bench.sink --port P``) so that it never shares the
bridge's event loop. Every POST is a function invocation: the server counts the records in
it (occurrences of ``"offset":``, one per Kafka record, of ``"eventSource":"aws:``, one
per S3 or DynamoDB record, and in websocket events of ``"sequenceNumber":``, counted in C)
into per-100 ms buckets, and keeps the time of each request with the records seen so far
(rates over a steady window: ``bench._common.steady_window``); of websocket events it also
keeps the ``n`` field of each message of the bench's feed (:mod:`bench.ws_feed`), to check
order, gaps and duplicates; in ``--stamp`` mode also reads each record's send time
(:func:`produced_times`) to keep ``(produced_at, received_at)`` pairs for the latency
scenario. ``GET /stats`` returns what was seen as JSON (``GET /count`` only the record and
pair counts); ``POST /reset`` clears it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import re
import time
from collections import Counter
from typing import Any
from urllib.parse import unquote_plus

_OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
_MARK = b'"offset":'
_AWS_MARK = b'"eventSource":"aws:'
_WS_EVENT = b'{"eventSource":"trigger-bridge:websocket"'
_WS_MARK = b'"sequenceNumber":'
_FEED_N = re.compile(rb'"data":"\{\\"n\\":(\d+),')  # {"n":<i>, of a bench.ws_feed message


def produced_times(event: Any) -> list[float]:
    """The send times (epoch s) the latency scenario's writers put in the records:
    Kafka: the value is ``{"t": <s>}`` (base64 in the event); S3: the object key's last
    path segment (``lat/<n>/<s>``, URL-encoded in the event); DynamoDB: the ``t`` number
    attribute of ``NewImage``. Records without a send time are left out."""
    out: list[float] = []
    if not isinstance(event, dict):
        return out
    for records in (event.get("records") or {}).values():  # self-managed Kafka
        for record in records:
            out.append(float(json.loads(base64.b64decode(record["value"]))["t"]))
    for record in event.get("Records") or []:
        source = record.get("eventSource")
        if source == "aws:s3":
            key = unquote_plus(record["s3"]["object"]["key"])
            with contextlib.suppress(ValueError):
                out.append(float(key.rsplit("/", 1)[-1]))
        elif source == "aws:dynamodb":
            stamp = (record["dynamodb"].get("NewImage") or {}).get("t")
            if stamp is not None and "N" in stamp:
                out.append(float(stamp["N"]))
    return out


class _State:
    def __init__(self, stamp: bool) -> None:
        self.stamp = stamp
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.records = 0
        self.first = 0.0
        self.last = 0.0
        self.buckets: Counter[int] = Counter()  # int(t * 10) -> records
        self.arrivals: list[tuple[float, int]] = []  # (time, records so far), per request
        self.pairs: list[tuple[float, float]] = []
        self.feed_n: list[int] = []  # websocket events: the feed's message numbers, in order

    def seen(self, body: bytes) -> None:
        now = time.time()
        count = body.count(_MARK) + body.count(_AWS_MARK)
        if body.startswith(_WS_EVENT):
            count += body.count(_WS_MARK)
            self.feed_n.extend(map(int, _FEED_N.findall(body)))
        self.requests += 1
        self.records += count
        if not self.first:
            self.first = now
        self.last = now
        self.buckets[int(now * 10)] += count
        self.arrivals.append((now, self.records))
        if self.stamp:
            for produced in produced_times(json.loads(body)):
                self.pairs.append((produced, now))

    def stats(self) -> bytes:
        doc: dict[str, Any] = {
            "requests": self.requests,
            "records": self.records,
            "first": self.first,
            "last": self.last,
            "buckets": sorted(self.buckets.items()),
            "arrivals": self.arrivals,
            "pairs": self.pairs,
            "feed": self.feed_check(),
        }
        return json.dumps(doc).encode()

    def feed_check(self) -> dict[str, Any]:
        """The feed's message numbers seen in websocket events: how many, how many distinct,
        the highest, and whether they came exactly as 0, 1, 2, ... (no gap, no duplicate,
        in order)."""
        seen = self.feed_n
        distinct = len(set(seen))
        return {
            "messages": len(seen),
            "distinct": distinct,
            "duplicates": len(seen) - distinct,
            "max": max(seen, default=-1),
            "in_order": all(n == i for i, n in enumerate(seen)),
        }


class _Http(asyncio.Protocol):
    def __init__(self, state: _State) -> None:
        self.state = state
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buf) < end + 4 + length:
                return
            body = bytes(self.buf[end + 4 : end + 4 + length])
            del self.buf[: end + 4 + length]
            self.handle(head.split(" ", 2), body)

    def handle(self, request_line: list[str], body: bytes) -> None:
        assert self.transport is not None
        method, path = request_line[0], request_line[1]
        if method == "GET" and path in ("/stats", "/count"):
            # /count is cheap: polled while the run goes on
            count = b'{"records":%d,"pairs":%d}' % (self.state.records, len(self.state.pairs))
            out = count if path == "/count" else self.state.stats()
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(out)).encode()
                + b"\r\n\r\n"
                + out
            )
            return
        if path == "/reset":
            self.state.reset()
        else:
            self.state.seen(body)
        self.transport.write(_OK)


async def serve(port: int, stamp: bool) -> None:
    state = _State(stamp)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Http(state), "127.0.0.1", port, backlog=512)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stamp", action="store_true", help="keep per-record latency pairs")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.stamp))


if __name__ == "__main__":
    main()
