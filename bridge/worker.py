"""A worker process: runs the mappings the daemon gives it (``python -m bridge.worker``).

The daemon (:mod:`bridge.workers`) starts each worker with one end of a socket pair and
talks to it in frames (a 4-byte big-endian length, then a pickled dict; both ends are
this program, so pickle is safe here). Requests carry an ``id``, answered by a frame with
the same ``id``:

``{"op": "apply", "config": BridgeConfig, "members": {mapping: int}}``
    run exactly the mappings of ``config`` (a :meth:`~bridge.placement.Placement.
    worker_config`), as :meth:`Supervisor.apply` does, each parallel one as the member
    ``members`` names; answer ``{"error": str | None}``.
``{"op": "views"}``
    answer ``{"views": [MappingView...], "stats": {mapping: MappingStats}}``: the views
    of its mappings, and the totals of every mapping this process ever ran (so a
    mapping moved to another worker keeps its counts).
``{"op": "stop"}``
    drain every mapping (as a daemon's shutdown does), answer as ``views``, and exit.

The worker shares the daemon's state directory: the checkpoint store is one SQLite file
in WAL mode, written by each process in its own transactions, and the state lock is the
daemon's. When the daemon goes away (its end of the socket closes, also on ``kill -9``)
the worker drains and exits. SIGINT (a terminal's ^C reaches the whole process group)
and SIGHUP are the daemon's business and ignored here; SIGTERM drains and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import signal
import socket
import struct
import sys
from typing import Any

from bridge.logs import setup_logging

__all__ = ["main", "read_frame", "write_frame"]

log = logging.getLogger(__name__)

_LENGTH = struct.Struct(">I")


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next frame's dict; None at the end of the stream (the other end is gone)."""
    try:
        head = await reader.readexactly(_LENGTH.size)
        body = await reader.readexactly(_LENGTH.unpack(head)[0])
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    message: dict[str, Any] = pickle.loads(body)
    return message


def write_frame(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    writer.write(_LENGTH.pack(len(body)) + body)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    fd, index, level, fmt = int(args[0]), int(args[1]), int(args[2]), args[3]
    setup_logging(level, fmt, worker=index)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    return asyncio.run(_serve(socket.socket(fileno=fd)))


async def _serve(sock: socket.socket) -> int:
    from bridge.metrics import all_stats
    from bridge.supervisor import Supervisor, freeze_heap

    reader, writer = await asyncio.open_connection(sock=sock)
    supervisor = Supervisor(shared_state=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    tasks: set[asyncio.Task[None]] = set()
    stop_id: int | None = None

    def answer(request_id: int, **fields: Any) -> None:
        write_frame(writer, {"id": request_id, **fields})

    def views() -> dict[str, Any]:
        return {"views": supervisor.mapping_views(), "stats": all_stats()}

    async def handle(message: dict[str, Any]) -> None:
        if message["op"] == "apply":
            error = None
            try:
                supervisor.members = message["members"]
                await supervisor.apply(message["config"])
                freeze_heap()
            except Exception as exc:  # a ConfigError, or a bug: the daemon shows it
                log.exception("worker: cannot apply the configuration")
                error = str(exc) or type(exc).__name__
            answer(message["id"], error=error)
        elif message["op"] == "views":
            answer(message["id"], **views())

    async def requests() -> None:
        nonlocal stop_id
        while (message := await read_frame(reader)) is not None:
            if message["op"] == "stop":
                stop_id = message["id"]
                return
            task = asyncio.create_task(handle(message))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    reading = asyncio.create_task(requests())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
    for task in (reading, stopping, *tasks):
        task.cancel()
    await asyncio.gather(reading, stopping, *tasks, return_exceptions=True)
    await supervisor.aclose()
    if stop_id is not None:
        answer(stop_id, **views())
    with contextlib.suppress(ConnectionError):
        await writer.drain()
        writer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
