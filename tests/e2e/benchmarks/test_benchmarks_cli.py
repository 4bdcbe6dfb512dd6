"""The CPU benchmarks are runnable modules with a documented CLI (their measured runs take minutes
and are recorded in docs/benchmarks.md, not repeated here)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, cli_env


@pytest.mark.parametrize(
    "name, flag",
    [
        ("learning", "--phase"),
        ("gradient_alignment", "--checkpoint"),
        ("reward_factors", "--pairs"),
        ("overhead", "--repeats"),
        ("weight_sync", "--ranks"),
        ("layout", "--skip-run"),
        ("gpu_optim", "--cpu-smoke"),
        ("hacking_monitor", "--epochs"),
        ("gpu_throughput", "--fits"),
        ("real_size", "--count"),
    ],
)
def test_help(name, flag):
    res = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", "--help"],
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert flag in res.stdout and f"python -m benchmarks.{name}" in res.stdout


def test_layout_model_cli_meets_the_goal_at_4_gpus():
    cmd = [sys.executable, "-m", "benchmarks.layout", "--skip-run", "--gpus", "4"]
    res = subprocess.run(cmd, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout.strip().splitlines()[-1])
    assert result["goal_at_4_gpus"]["met"] and result["goal_at_4_gpus"]["hybrid_micro8_vs_reference"] <= 0.4


def test_step_gradients_last_step_dominates(tiny_cache, tmp_path):
    """On the tiny pipeline at T = 4, eta = 1: sigma falls step by step, and the last step's (tiny
    sigma) log-prob gradient is several times every other step's, as docs/shapes.md#the-last-step says."""
    out = tmp_path / "g.json"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.step_gradients",
            "--config",
            "tiny",
            "--trajectories",
            "2",
            "--out",
            str(out),
            f"model.tiny_cache_dir={tiny_cache}",
            "sampling.num_steps=4",
        ],
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    steps = json.loads(out.read_text())["steps"]
    sigmas = [s["sigma"] for s in steps]
    assert len(steps) == 4 and sigmas == sorted(sigmas, reverse=True) and sigmas[-1] < 0.1
    assert all(steps[-1]["grad_norm_min"] > 3 * s["grad_norm_max"] for s in steps[:-1])
