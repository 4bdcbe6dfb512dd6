"""Where weights may be read from: safetensors or torch.load(weights_only=True) only, checked in the
source. (Bad input through the real CLI: tests/e2e/learner/test_bad_input.py.)"""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import REPO


def test_weights_are_read_only_through_safetensors_or_weights_only_torch_load():
    unsafe = []
    for path in (REPO / d for d in ("actors", "learner", "rewards", "benchmarks")):
        for f in Path(path).rglob("*.py"):
            for n, line in enumerate(f.read_text().splitlines(), 1):
                if re.search(r"\btorch\.load\(", line) and "weights_only=True" not in line:
                    unsafe.append(f"{f.relative_to(REPO)}:{n}")
                if re.search(r"\bpickle\.loads?\(|\bcloudpickle\.loads?\(", line):
                    unsafe.append(f"{f.relative_to(REPO)}:{n}")
    assert not unsafe, f"weights read without safetensors or torch.load(weights_only=True): {unsafe}"
