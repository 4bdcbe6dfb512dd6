"""The CPU benchmarks are runnable modules with a documented CLI (their measured runs take minutes
and are recorded in docs/benchmarks.md, not repeated here)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO, cli_env


@pytest.mark.parametrize("name, flag", [("learning", "--epochs"), ("overhead", "--repeats"), ("weight_sync", "--ranks")])
def test_help(name, flag):
    res = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--help"], cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert flag in res.stdout and f"python -m benchmarks.{name}" in res.stdout


def test_seed_mean_history():
    from benchmarks.learning import seed_mean_history

    a = [{"epoch": 0, "x": 1.0}, {"epoch": 1, "x": 3.0, "eval_reward_1step_mean": 2.0}]
    b = [{"epoch": 0, "x": 3.0}, {"epoch": 1, "x": 5.0, "eval_reward_1step_mean": 4.0}]
    assert seed_mean_history([a, b]) == [{"epoch": 0, "x": 2.0}, {"epoch": 1, "x": 4.0, "eval_reward_1step_mean": 3.0}]
