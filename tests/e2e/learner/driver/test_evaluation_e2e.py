"""Held-out step-generalization evaluation through short real CLI runs for SDPO and DDPO
(ray.enabled=false): metrics, grids, curves, a disabled eval, bad eval prompts, and a damaged initial
evaluation on resume. (The pieces on the tiny pipeline in-process: tests/unit/learner/driver/test_evaluation.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from learner.run.outputs import read_metrics
from tests.conftest import run_args, run_cli

SMALL = ["rollout.pairs_per_epoch=4", "rollout.chunk_size=2", "sampling.num_steps=4", "ray.enabled=false"]


@pytest.fixture(scope="module")
def sdpo_run(tiny_cache, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("eval") / "run"
    res = run_cli(
        *run_args(run_dir, tiny_cache, 2),
        *SMALL,
        "eval.every=1",
        "eval.steps=[1,2]",
        "eval.num_prompts=3",
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "held-out eval of v2: 1-step" in res.stdout
    return run_dir


def test_eval_metrics_in_metrics_jsonl(sdpo_run):
    metrics = read_metrics(sdpo_run)
    assert [m["epoch"] for m in metrics] == [0, 1]
    for m in metrics:
        for k in (1, 2):
            assert np.isfinite(m[f"eval_reward_{k}step_mean"]) and m[f"eval_reward_{k}step_std"] >= 0
        assert "eval_reward_4step_mean" not in m
        assert m["eval_policy_version"] == m["weights_version"] + 1  # the policy after this epoch's update
        assert m["eval_rewards_missing"] == 0
    assert metrics[0]["eval_reward_1step_mean"] != metrics[1]["eval_reward_1step_mean"]  # the policy moved


def test_eval_grids_reward_curves_and_tensorboard(sdpo_run):
    grids = sorted((sdpo_run / "eval").glob("epoch_*.png"))
    assert [g.name for g in grids] == ["epoch_0000.png", "epoch_0001.png"]
    width, height = Image.open(grids[0]).size  # labelled; columns: 3 prompts, rows: initial and epoch per step count
    assert 3 * 130 < width < 3 * 130 + 200 and 4 * 130 < height < 4 * 130 + 60  # 64 px images shown at 128 px
    assert (sdpo_run / "eval" / "initial.npz").exists() and (sdpo_run / "eval" / "initial.png").exists()
    assert (sdpo_run / "reward_curves.png").stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(sdpo_run / "tensorboard"))
    events.Reload()
    assert {"eval_reward_1step_mean", "eval_reward_2step_std"} <= set(events.Tags()["scalars"])


def test_ddpo_runs_end_to_end(tiny_cache, tmp_path):
    """algorithm=ddpo through the real CLI: the same actors, rewards and learner; the default eval
    (8 held-out prompts at 1, 2, 4, 8 steps) after the last epoch."""
    run_dir = tmp_path / "ddpo"
    res = run_cli(*run_args(run_dir, tiny_cache, 2), *SMALL, "algorithm=ddpo")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert res.stdout.startswith("DDPO: 2 epochs")
    metrics = read_metrics(run_dir)
    assert [m["epoch"] for m in metrics] == [0, 1]
    for m in metrics:
        assert np.isfinite(m["loss"]) and m["ratio_first_pass"] == pytest.approx(1.0, abs=1e-6)
        assert m["reward_queries"] == 2 * m["pairs"]  # ddpo-pytorch's: the final x_T of each trajectory
        assert "reward_1step_mean" not in m and np.isfinite(m["reward_final_mean"])
    assert "eval_reward_1step_mean" not in metrics[0]  # eval.every = 5: only after the last epoch
    assert all(np.isfinite(metrics[1][f"eval_reward_{k}step_mean"]) for k in (1, 2, 4, 8))
    assert json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])["epoch"] == 1
    assert (run_dir / "reward_curves.png").exists() and (run_dir / "eval" / "epoch_0001.png").exists()


def test_bad_eval_prompts_exit_2(tmp_path):
    res = run_cli("--run-dir", str(tmp_path / "x"), "ray.enabled=false", "eval.prompts=/no/such/file.txt")
    assert res.returncode == 2
    assert "eval.prompts: '/no/such/file.txt' is neither a built-in list" in res.stderr


def test_eval_disabled_runs_without_eval_or_its_prompts(tiny_cache, tmp_path):
    res = run_cli(
        *run_args(tmp_path / "off", tiny_cache, 1),
        *SMALL,
        "eval.enabled=false",
        "eval.prompts=/no/such/file.txt",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    (m,) = read_metrics(tmp_path / "off")
    assert not any(k.startswith("eval_") for k in m)
    assert not (tmp_path / "off" / "eval").exists() and (tmp_path / "off" / "reward_curves.png").exists()


def test_a_damaged_or_mismatched_initial_evaluation_is_left_out_on_resume(tiny_cache, tmp_path):
    """A resumed run reads the initial policy's evaluation back from eval/initial.npz. Damaged (not a
    zip) or made with other eval settings (more or fewer held-out prompts), it is left out with one
    warning line: the run finishes, and no grid row is labelled 'initial' under another prompt."""
    import shutil

    run_dir = tmp_path / "run"
    base = [
        "--run-dir",
        str(run_dir),
        f"model.tiny_cache_dir={tiny_cache}",
        *SMALL,
        "eval.every=1",
        "eval.num_prompts=3",
        "eval.steps=[1]",
        "output.tensorboard=false",
    ]
    assert run_cli("--epochs", "1", *base).returncode == 0
    initial = run_dir / "eval" / "initial.npz"
    shutil.copy(initial, tmp_path / "initial.npz")
    initial.write_bytes(b"not a zip file")
    res = run_cli("--epochs", "2", *base)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"warning: {initial} is damaged (" in res.stdout and "Traceback" not in res.stderr
    shutil.copy(tmp_path / "initial.npz", initial)
    for prompts in ("5", "2"):  # more held-out prompts, then fewer
        res = run_cli("--epochs", "4" if prompts == "5" else "5", *base, f"eval.num_prompts={prompts}")
        assert res.returncode == 0, res.stderr[-3000:]
        assert "eval settings changed on resume" in res.stdout and "Traceback" not in res.stderr
