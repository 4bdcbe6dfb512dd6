"""Where weights may be read from: safetensors or torch.load(weights_only=True) only, checked in the
source. (Bad input through the real CLI: tests/e2e/learner/test_bad_input.py.)"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO


def test_weights_are_read_only_through_safetensors_or_weights_only_torch_load():
    unsafe = []
    for path in (REPO / d for d in ("plumbing", "shapes", "actors", "learner", "rewards", "scripts", "benchmarks")):
        for f in Path(path).rglob("*.py"):
            for node in ast.walk(ast.parse(f.read_text())):
                if not isinstance(node, ast.Call):
                    continue
                name = ast.unparse(node.func)
                weights_only = any(k.arg == "weights_only" and ast.unparse(k.value) == "True" for k in node.keywords)
                if (name == "torch.load" and not weights_only) or name in (
                    "pickle.load",
                    "pickle.loads",
                    "cloudpickle.load",
                    "cloudpickle.loads",
                ):
                    unsafe.append(f"{f.relative_to(REPO)}:{node.lineno}")
    assert not unsafe, f"weights read without safetensors or torch.load(weights_only=True): {unsafe}"
