"""How every benchmark ends: its figures as one JSON line on stdout and, with --out, in a file."""

from __future__ import annotations

import json
from pathlib import Path


def emit(result: dict, out: str | None) -> int:
    """Write `result` to `out` (indented) when given, print it as one line; the exit code 0."""
    if out:
        Path(out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))
    return 0
