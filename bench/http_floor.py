"""The HTTP floor of the ``http-api`` scenario: a bare aiohttp server answering ``ok`` to
``GET /hello``, in a process of its own (``python -m bench.http_floor --port P``). It is
the same server library the bridge's HTTP API uses, with nothing behind it."""

from __future__ import annotations

import argparse
import contextlib

from aiohttp import web


async def _hello(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_get("/hello", _hello)
    with contextlib.suppress(KeyboardInterrupt):
        web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
