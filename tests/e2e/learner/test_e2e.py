"""End to end through the real CLI on a real local Ray cluster with the real tiny diffusers pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from learner.run.outputs import read_metrics
from tests.conftest import run_args, run_cli

REQUIRED = (
    "epoch weights_version pairs reward_queries reward_1step_mean reward_final_mean loss clipfrac "
    "time_rollout_s time_reward_s time_update_s time_epoch_s"
).split()
SMALL = ["rollout.pairs_per_epoch=4", "rollout.chunk_size=2", "sampling.num_steps=4", "output.image_every=1"]


@pytest.fixture(scope="module")
def ray_run(tiny_cache, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("e2e") / "run"
    res = run_cli(
        *run_args(run_dir, tiny_cache, 2),
        "ray.num_cpus=2",
        "train.peak_tflops=1",
        *SMALL,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert f"outputs in {run_dir}" in res.stdout
    assert "epoch 2/2" in res.stdout  # progress is shown
    return run_dir


def test_metrics_versions_and_reward_queries(ray_run):
    metrics = read_metrics(ray_run)
    assert [m["epoch"] for m in metrics] == [0, 1]
    for m in metrics:
        assert set(REQUIRED) <= set(m), set(REQUIRED) - set(m)
        assert m["pairs"] == 4
        assert m["reward_queries"] == 6 * m["pairs"]  # first, anchor, last x 2 trajectories
        assert all(np.isfinite(m[k]) for k in REQUIRED)
        assert m["ratio_first_pass"] == pytest.approx(1.0, abs=1e-6)
    assert metrics[1]["weights_version"] == metrics[0]["weights_version"] + 1


def test_reward_hacking_monitors_are_on_by_default(ray_run):
    from learner.driver.config import MONITOR_STATS

    metrics = read_metrics(ray_run)
    for m in metrics:  # every epoch, over its final samples
        assert all(0 <= m[f"img_{s}"] < 10 for s in MONITOR_STATS) and m["hacking_alerts"] >= 0
    for k in (1, 2, 4, 8):  # at every evaluation, per step count
        assert all(np.isfinite(metrics[-1][f"eval_img_{s}_{k}step"]) for s in MONITOR_STATS if s != "diversity")
    assert (ray_run / "monitor_curves.png").stat().st_size > 0


def test_mfu_is_reported_where_the_peak_is_known(ray_run):
    """train.peak_tflops=1 stands in for a GPU's peak (a CPU's is not in the table: without it, no MFU)."""
    for m in read_metrics(ray_run):
        assert 0 < m["mfu_rollout"] < 1 and 0 < m["mfu_update"] < 1, m


def test_heldout_eval_on_ray_actors(ray_run):
    """The default evaluation (eval.every=5) runs after the last epoch on the Ray rollout actors."""
    first, last = read_metrics(ray_run)
    assert not any(k.startswith("eval_") for k in first)
    for k in (1, 2, 4, 8):
        assert np.isfinite(last[f"eval_reward_{k}step_mean"]) and np.isfinite(last[f"eval_reward_{k}step_std"])
    assert last["eval_policy_version"] == 2 and last["eval_rewards_missing"] == 0
    assert (ray_run / "eval" / "epoch_0001.png").exists() and (ray_run / "reward_curves.png").exists()


def test_run_dir_outputs(ray_run):
    import yaml

    from learner.config import Config

    cfg = Config.model_validate(yaml.safe_load((ray_run / "config.yaml").read_text()))
    assert cfg.epochs == 2 and cfg.rollout.pairs_per_epoch == 4
    assert list((ray_run / "tensorboard").glob("events.out.tfevents.*"))
    grids = sorted((ray_run / "samples").glob("epoch_*.png"))
    assert [g.name for g in grids] == ["epoch_0000.png", "epoch_0001.png"]
    assert (ray_run / "lora" / "pytorch_lora_weights.safetensors").stat().st_size > 0


def test_lora_loads_into_fresh_pipeline_and_changes_output(ray_run, tiny_dir):
    from diffusers import StableDiffusionPipeline

    def sample(pipe):
        gen = torch.Generator().manual_seed(0)
        return pipe("a cat", num_inference_steps=4, generator=gen, output_type="np").images

    pipe = StableDiffusionPipeline.from_pretrained(tiny_dir, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    before = sample(pipe)
    pipe.load_lora_weights(str(ray_run / "lora"))  # plain diffusers, no project code
    after = sample(pipe)
    assert before.shape == after.shape
    assert np.abs(after - before).max() > 1e-4


def test_same_seed_same_metrics_with_and_without_ray(ray_run, tiny_cache, tmp_path):
    """Pairs are seeded by (seed, epoch, pair index) and chunked identically, so the in-process run
    reproduces the Ray run exactly, whatever order the Ray rollout actors finished in."""
    res = run_cli(
        *run_args(tmp_path / "local", tiny_cache, 2),
        "ray.enabled=false",
        *SMALL,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    ray_metrics, local_metrics = read_metrics(ray_run), read_metrics(tmp_path / "local")
    for a, b in zip(ray_metrics, local_metrics, strict=True):
        for key in ("reward_1step_mean", "reward_final_mean", "loss", "clipfrac", "approx_kl", "grad_norm"):
            assert a[key] == b[key], (key, a[key], b[key])
        for key in (
            k for k in a if k.startswith(("eval_reward_", "img_", "eval_img_"))
        ):  # the held-out eval and monitors too
            assert a[key] == b[key], (key, a[key], b[key])


def test_default_job_raises_the_one_step_reward(tiny_cache, tmp_path):
    """The default job (tiny preset, every setting as shipped) learns: the 1-step reward of its last
    epoch is above that of its first. In-process: it gives the same metrics as on Ray (tested above)."""
    res = run_cli("--run-dir", str(tmp_path / "default"), f"model.tiny_cache_dir={tiny_cache}", "ray.enabled=false")
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = read_metrics(tmp_path / "default")
    assert len(metrics) == 16
    assert metrics[-1]["reward_1step_mean"] > metrics[0]["reward_1step_mean"]
    evals = [m["eval_reward_1step_mean"] for m in metrics if "eval_reward_1step_mean" in m]
    assert len(evals) >= 2 and evals[-1] > evals[0]  # held-out, deterministic 1-step samples too
