"""The hybrid layout end to end: two policy workers on real local Ray (each samples its shard of the
pairs and trains on it with the same UNet, gloo all-reduce between them; "GPUs" simulated by
fractional CPUs) against the in-process run of the same config (one process computing both shards'
update), through the real CLI with the real tiny pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from learner.run.outputs import read_metrics
from tests.conftest import run_cli

pytestmark = pytest.mark.e2e

HYBRID = [
    "layout=hybrid", "rollout.num_actors=0", "learner.num_workers=2", "learner.num_cpus=0.5",
    "rollout.pairs_per_epoch=4", "rollout.chunk_size=2", "sampling.num_steps=4", "eval.steps=[1,2]", "eval.num_prompts=2",
]


@pytest.fixture(scope="module")
def runs(tiny_cache, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("hybrid")
    on_ray = run_cli("--epochs", "2", "--run-dir", str(root / "ray"), f"model.tiny_cache_dir={tiny_cache}", "ray.num_cpus=2", *HYBRID)
    assert on_ray.returncode == 0, on_ray.stdout[-3000:] + on_ray.stderr[-3000:]
    assert "on 2 hybrid policy workers" in on_ray.stdout and "rank 1 of 2)" in on_ray.stdout
    local = run_cli("--epochs", "2", "--run-dir", str(root / "local"), f"model.tiny_cache_dir={tiny_cache}", "ray.enabled=false", *HYBRID)
    assert local.returncode == 0, local.stdout[-3000:] + local.stderr[-3000:]
    return root / "ray", root / "local"


def test_hybrid_on_ray_matches_the_in_process_run(runs):
    ray_metrics, local_metrics = (read_metrics(r) for r in runs)
    assert [m["epoch"] for m in ray_metrics] == [0, 1] and [m["weights_version"] for m in ray_metrics] == [0, 1]
    first_ray, first_local = ray_metrics[0], local_metrics[0]
    for key in ("reward_1step_mean", "reward_final_mean"):  # the same initial policy samples the same pairs
        assert first_ray[key] == first_local[key], key
    for a, b in zip(ray_metrics, local_metrics, strict=True):
        # the update: each rank's shard with all-reduce, or both shards in one process (float order only)
        for key in ("loss", "approx_kl", "grad_norm"):
            assert a[key] == pytest.approx(b[key], rel=1e-3, abs=1e-9), key
        assert a["pairs"] == b["pairs"] == 4 and a["reward_queries"] == 24
    # summed over the ranks (2 pairs x T=4 / micro 2 = 4 passes each), as one process counts both shards: 8
    assert ray_metrics[0]["backward_passes"] == local_metrics[0]["backward_passes"] == 8
    for key in ("eval_reward_1step_mean", "eval_reward_2step_mean"):  # evaluated on the policy workers
        assert np.isfinite(ray_metrics[1][key]) and ray_metrics[1][key] == pytest.approx(local_metrics[1][key], rel=1e-2)


def test_busy_time_is_reported(runs):
    for m in read_metrics(runs[0]):
        assert m["busy_rollout_s"] > 0 and m["busy_learner_s"] > 0
        assert 0 < m["gpu_busy_fraction"] <= 1.0
        # two policy workers work in parallel in both phases: more busy device-time than wall time
        assert m["busy_rollout_s"] + m["busy_learner_s"] > 1.0 * m["time_rollout_s"]
