"""``trigger-bridge init [--force] [DIR]``: write a starter ``bridge.yaml`` and its handler.

The files are the embedded default (:func:`bridge.default.starter_files`): ``bridge.yaml``
and ``hello/app.py``, for ``trigger-bridge run`` in that folder. Exit 0 after writing them;
1 when one of them exists and ``--force`` is not given (then nothing is written), or when
one cannot be written.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from bridge.default import starter_files

NAME = "init"
HELP = "write a starter bridge.yaml and example handler into a folder"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dir", nargs="?", default=".", metavar="DIR", help="where (default: the current folder)"
    )
    parser.add_argument("--force", action="store_true", help="overwrite files that exist")


def main(args: argparse.Namespace) -> int:
    folder = Path(args.dir)
    files = {folder / name: text for name, text in starter_files().items()}
    existing = [str(path) for path in files if path.exists()]
    if existing and not args.force:
        print(
            f"trigger-bridge: {', '.join(existing)} already there, nothing written "
            "(--force overwrites)",
            file=sys.stderr,
        )
        return 1
    try:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    except OSError as exc:
        print(f"trigger-bridge: cannot write {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    there = "" if folder.resolve() == Path.cwd().resolve() else f"cd {shlex.quote(args.dir)} && "
    print(f"next: {there}trigger-bridge run")
    print("then, in another terminal in that folder: echo hello > inbox/hello.txt")
    return 0
