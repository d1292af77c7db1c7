"""The local websocket feed of the ``websocket`` scenario: a bare aiohttp server in a process
of its own (``python -m bench.ws_feed --port P --messages N``).

Every connection to ``/ws`` waits for ``POST /go`` (``POST /hold``: connections made
from then on wait for the next go), then gets the same N text messages of
about 140 bytes of JSON (``{"n":<i>,"sym":...,"price":...}``, ``n`` from 0), sent as fast
as the client takes them (aiohttp's writer waits for the socket to drain), and stays open
until the client closes it. Pings are answered all along (a reader runs beside the sender).
``GET /stats`` returns, per connection in order: when it connected, when the first message
went out, when the last send returned (epoch seconds) and how many were sent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from typing import Any

from aiohttp import web

_SYMBOLS = ("ABCD", "EFGH", "IJKL", "MNOP")


def message(i: int) -> str:
    """The feed's message ``i``: 134-143 bytes of JSON."""
    return (
        f'{{"n":{i},"sym":"{_SYMBOLS[i % 4]}","price":{100 + (i * 7919) % 10000 / 100:.2f},'
        f'"bid":{99 + (i * 7919) % 10000 / 100:.2f},"ask":{101 + (i * 7919) % 10000 / 100:.2f},'
        f'"qty":{(i * 31) % 1000 + 1},"side":"{"buy" if i % 3 else "sell"}","venue":"XNAS",'
        f'"ts":{1764495000 + i / 1000:.3f},"cond":["@","F"]}}'
    )


class _Feed:
    def __init__(self, count: int) -> None:
        self.messages = [message(i) for i in range(count)]
        self.connections: list[dict[str, Any]] = []
        self.go = asyncio.Event()

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await ws.prepare(request)
        stats: dict[str, Any] = {"connected": time.time(), "first": 0.0, "last": 0.0, "sent": 0}
        self.connections.append(stats)
        reader = asyncio.create_task(self._read(ws))  # answers pings, sees the close
        try:
            await self.go.wait()
            stats["first"] = time.time()
            for text in self.messages:
                if ws.closed:
                    break
                await ws.send_str(text)
                stats["sent"] += 1
            stats["last"] = time.time()
            await reader
        except (ConnectionError, RuntimeError):
            pass  # the client went away
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            stats["closed"] = time.time()
        return ws

    async def _read(self, ws: web.WebSocketResponse) -> None:
        async for _ in ws:
            pass

    async def start(self, request: web.Request) -> web.Response:
        self.go.set()
        return web.json_response({"connections": len(self.connections)})

    async def stop(self, request: web.Request) -> web.Response:
        self.go.clear()  # connections made from now on wait for the next POST /go
        return web.json_response({})

    async def stats(self, request: web.Request) -> web.Response:
        return web.Response(text=json.dumps(self.connections), content_type="application/json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--messages", type=int, required=True)
    args = parser.parse_args()

    async def app() -> web.Application:
        feed = _Feed(args.messages)
        application = web.Application()
        application.router.add_get("/ws", feed.ws)
        application.router.add_post("/go", feed.start)
        application.router.add_post("/hold", feed.stop)
        application.router.add_get("/stats", feed.stats)
        return application

    web.run_app(app(), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
