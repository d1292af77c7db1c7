"""``trigger-bridge invoke FUNCTION [--event FILE]``: run a function of the config once.

Like ``sam local invoke -e``: the function is reached through the target it is configured
with, built as the engine builds it (:func:`bridge.targets.build_target`), started,
invoked once and closed. The event is a JSON file (``-``: standard input; none: ``{}``),
sent as it is.

Exit 0 with the function's response on stdout (pretty-printed when it is JSON, else as
it is); 1 with the error on stderr: a function error as Lambda returns it (``errorType``,
``errorMessage``...), a target that cannot be reached or refuses the request, a timeout;
2 for an invalid config, an unknown function (naming the known ones) or an event that
cannot be read or is not JSON. What the function prints is logged on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import sys
from collections.abc import Collection
from typing import TYPE_CHECKING

from bridge.commands import add_config_argument, load_or_report, write_stdout

if TYPE_CHECKING:
    from bridge.config import BridgeConfig, FunctionConfig

NAME = "invoke"
HELP = "run a function of the config once on an event (like sam local invoke)"


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("function", metavar="FUNCTION", help="a function of the config")
    parser.add_argument(
        "--event",
        "-e",
        metavar="FILE",
        help="the event: a JSON file, - for standard input (default: {})",
    )


def main(args: argparse.Namespace) -> int:
    from bridge.errors import FunctionError, TargetRejected, TargetUnavailable

    config = load_or_report(args)
    if config is None:
        return 2
    function = config.functions.get(args.function)
    if function is None:
        _error(unknown_function(args.function, config.functions))
        return 2
    payload = _read_event(args.event)
    if payload is None:
        return 2
    name = args.function
    try:
        response = asyncio.run(invoke_once(name, function, config, payload))
    except FunctionError as exc:
        print(_error_document(exc), file=sys.stderr)
        return 1
    except TargetUnavailable as exc:
        _error(f"function {name!r} is unavailable: {exc}")
        return 1
    except TargetRejected as exc:
        _error(f"function {name!r} refused the event: {exc}")
        return 1
    except TimeoutError:
        _error(f"function {name!r} did not answer in time")
        return 1
    except KeyboardInterrupt:
        return 130
    return write_stdout(_readable(response))


async def invoke_once(
    name: str, function: FunctionConfig, config: BridgeConfig, payload: bytes
) -> bytes:
    """Build the function's target, start it, invoke it once with ``payload`` and close it;
    the response, or what the target raised (see :class:`bridge.targets.base.Target`)."""
    from bridge.errors import TargetUnavailable
    from bridge.events import new_request_id
    from bridge.targets import build_target

    if any(api.type == "websocket" for api in config.apis):
        from bridge.front.tls import LocalCA

        # as the engine: handlers are told to trust this authority, so it has to exist
        try:
            LocalCA.in_state_dir(config.state_dir).ensure()
        except OSError as exc:
            raise TargetUnavailable(f"cannot make the certificate authority: {exc}") from exc
    try:
        target = build_target(name, function, config)
    except (ValueError, OSError) as exc:
        raise TargetUnavailable(f"functions.{name}: {exc}") from exc
    try:
        await target.start()
        return await target.invoke(payload, request_id=new_request_id(), timeout=None)
    finally:
        await target.aclose()


def unknown_function(name: str, known: Collection[str]) -> str:
    """Why ``name`` is not a function, with the nearest known name."""
    if not known:
        return f"unknown function {name!r}: the config defines no functions"
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown function {name!r}{hint} (functions: {', '.join(sorted(known))})"


def _read_event(path: str | None) -> bytes | None:
    """The event's bytes; None after saying why they cannot be sent."""
    if path is None:
        return b"{}"
    try:
        if path == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as file:
                data = file.read()
    except OSError as exc:
        _error(f"cannot read the event {path}: {exc.strerror}")
        return None
    try:
        json.loads(data)
    except ValueError as exc:
        _error(f"the event {'on standard input' if path == '-' else path} is not JSON: {exc}")
        return None
    return data


def _readable(response: bytes) -> bytes:
    try:
        value = json.loads(response)
    except ValueError:
        return response
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode()


def _error_document(exc: Exception) -> str:
    """The error as Lambda's Invoke returns it: the function's error document, or one
    made of the error's type and message when the target gave none."""
    payload = getattr(exc, "payload", b"")
    try:
        document = json.loads(payload)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        document = {"errorMessage": str(exc), "errorType": getattr(exc, "error_type", "Unhandled")}
    return json.dumps(document, indent=2, ensure_ascii=False)


def _error(message: str) -> None:
    print(f"trigger-bridge invoke: {message}", file=sys.stderr)
