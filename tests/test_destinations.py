"""The dead-letter file under a real short write: the kernel's file size limit
(RLIMIT_FSIZE) makes ``write(2)`` take only part of the data and then refuse the rest,
exactly as a full disk does. Run in a child process, so the limit binds only there."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

CHILD = textwrap.dedent(
    """
    import asyncio, json, resource, signal, sys
    from bridge.destinations import DestinationError, FileDestination

    path, limit = sys.argv[1], int(sys.argv[2])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a refused write is an error, not death
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    destination = FileDestination(path)
    record = {"requestContext": {"condition": "RetryAttemptsExhausted"}, "pad": "x" * 500}
    outcomes = []

    async def write(n):
        try:
            await destination.write([{**record, "n": n}])
            outcomes.append("ok")
        except DestinationError as exc:
            outcomes.append("error: " + str(exc))

    asyncio.run(write(0))                      # fits
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    asyncio.run(write(1))                      # crosses the limit half-way
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    asyncio.run(write(2))                      # room again: the retry
    print(json.dumps(outcomes))
    """
)


def _run_child(path: Path, limit: int) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(limit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    outcomes: list[str] = json.loads(done.stdout)
    return outcomes


def test_a_short_write_is_an_error_and_leaves_no_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "failures.jsonl"
    outcomes = _run_child(path, limit=800)  # the first line is about 560 bytes
    assert outcomes[0] == "ok"
    assert outcomes[1].startswith("error: cannot write") and "large" in outcomes[1]
    assert outcomes[2] == "ok"
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""  # ends with a newline
    assert [json.loads(line)["n"] for line in lines[:-1]] == [0, 2]


def test_a_torn_line_left_behind_does_not_swallow_the_next_record(tmp_path: Path) -> None:
    import asyncio

    from bridge.destinations import FileDestination

    path = tmp_path / "failures.jsonl"
    path.write_bytes(b'{"n": 0}\n{"n": 1, "tor')  # a crash in the middle of a write
    asyncio.run(FileDestination(path).write([{"n": 2}]))
    lines = path.read_text().splitlines()
    assert lines == ['{"n": 0}', '{"n": 1, "tor', '{"n": 2}']


def test_a_record_naming_a_file_that_is_not_utf8_can_be_dead_lettered(tmp_path: Path) -> None:
    """A file name that is not UTF-8 reaches Python as a string with a lone surrogate;
    the dead letter is still written (the surrogate as its JSON escape) and reads back."""
    import asyncio

    from bridge.destinations import FileDestination

    path = tmp_path / "dead.jsonl"
    key = b"bad\xff.txt".decode("utf-8", "surrogateescape")
    asyncio.run(FileDestination(str(path)).write([{"key": key, "n": 1}]))
    [line] = path.read_bytes().splitlines()
    assert json.loads(line) == {"key": key, "n": 1}
