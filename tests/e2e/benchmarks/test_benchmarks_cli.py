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
    [("learning", "--phase"), ("gradient_alignment", "--checkpoint"), ("reward_factors", "--pairs"), ("overhead", "--repeats"),
     ("weight_sync", "--ranks"), ("layout", "--skip-run"), ("gpu_optim", "--cpu-smoke"), ("hacking_monitor", "--epochs"),
     ("gpu_throughput", "--fits"), ("real_size", "--count")]
)
def test_help(name, flag):
    res = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--help"], cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert flag in res.stdout and f"python -m benchmarks.{name}" in res.stdout


def test_layout_model_hand_worked():
    """rates 2 pairs/s rollout, 0.5 update (micro 2), 1.0 (micro 8), per GPU; 4 policy GPUs, 32 pairs each:
    reference = 32/2 + 32/0.5 = 16 + 64 = 80 s; hybrid micro 8 = 16 + 32 = 48 s (0.6 of it), all GPUs busy;
    disaggregated = 4 rollout GPUs + 1 learner on 128 pairs: 128/(4*2) + 128/1 = 16 + 128 = 144 s, and its
    5 GPUs work 128/2 + 128/1 = 192 GPU-s of 5 x 144 = 720: 26.7 % busy (communication adds < 0.1 s)."""
    from benchmarks.layout import model_epoch

    rates = {"rollout": 2.0, "update_micro2": 0.5, "update_micro8": 1.0, "rollout_compiled": 2.0, "update_compiled_micro8": 1.0}
    ref, hyb, dis = (model_epoch(name, 4, rates) for name in ("reference", "hybrid_micro8", "disaggregated"))
    assert ref["epoch_s"] == pytest.approx(80.0, abs=0.1) and hyb["epoch_s"] == pytest.approx(48.0, abs=0.1)
    assert hyb["busy_fraction"] == pytest.approx(1.0, abs=0.002)
    assert dis["gpus"] == 5 and dis["epoch_s"] == pytest.approx(144.0, abs=0.2)
    assert dis["busy_fraction"] == pytest.approx(192 / 720, abs=0.002)


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
        [sys.executable, "-m", "benchmarks.step_gradients", "--config", "tiny", "--trajectories", "2", "--out", str(out),
         f"model.tiny_cache_dir={tiny_cache}", "sampling.num_steps=4"],
        cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    steps = json.loads(out.read_text())["steps"]
    sigmas = [s["sigma"] for s in steps]
    assert len(steps) == 4 and sigmas == sorted(sigmas, reverse=True) and sigmas[-1] < 0.1
    assert all(steps[-1]["grad_norm_min"] > 3 * s["grad_norm_max"] for s in steps[:-1])
