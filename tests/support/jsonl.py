"""Reading the JSON-lines files test functions write while a bridge runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_jsonl(path: Path) -> list[Any]:
    """Each complete line of ``path`` parsed (none if there is no file). A line without
    its newline yet is left out: the function writing it may be half-way through."""
    if not path.exists():
        return []
    text = path.read_text()
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]
