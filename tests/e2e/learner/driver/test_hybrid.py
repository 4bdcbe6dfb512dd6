"""The hybrid layout end to end: two policy workers on real local Ray (each samples its shard of the
pairs and trains on it with the same UNet, gloo all-reduce between them; "GPUs" simulated by
fractional CPUs) against the in-process run of the same config (one process computing both shards'
update), through the real CLI with the real tiny pipeline. Policy workers killed with SIGKILL at
points the test picks (learner/worker/fault_injection.py) are recovered in place: the run equals the
uninterrupted one; with no restarts allowed the run ends with exit 1 and one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from learner.run.checkpoint import checkpoint_dir, list_checkpoints, problem
from learner.run.outputs import read_metrics
from tests.conftest import run_args, run_cli

HYBRID = [
    "layout=hybrid",
    "rollout.num_actors=0",
    "learner.num_workers=2",
    "learner.num_cpus=0.5",
    "rollout.pairs_per_epoch=4",
    "rollout.chunk_size=2",
    "sampling.num_steps=4",
    "eval.steps=[1,2]",
    "eval.num_prompts=2",
]


@pytest.fixture(scope="module")
def runs(tiny_cache, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("hybrid")
    on_ray = run_cli(*run_args(root / "ray", tiny_cache, 2), "ray.num_cpus=2", *HYBRID)
    assert on_ray.returncode == 0, on_ray.stdout[-3000:] + on_ray.stderr[-3000:]
    assert "on 2 hybrid policy workers" in on_ray.stdout and "rank 1 of 2)" in on_ray.stdout
    local = run_cli(
        *run_args(root / "local", tiny_cache, 2),
        "ray.enabled=false",
        *HYBRID,
    )
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
        assert np.isfinite(ray_metrics[1][key]) and ray_metrics[1][key] == pytest.approx(
            local_metrics[1][key], rel=1e-2
        )


def test_busy_time_is_reported(runs):
    for m in read_metrics(runs[0]):
        assert m["busy_rollout_s"] > 0 and m["busy_learner_s"] > 0
        assert 0 < m["gpu_busy_fraction"] <= 1.0
        # two policy workers work in parallel in both phases: more busy device-time than wall time
        assert m["busy_rollout_s"] + m["busy_learner_s"] > 1.0 * m["time_rollout_s"]


def _run_with_kills(tiny_cache: str, run_dir: Path, kills: str, monkeypatch, *extra: str):
    monkeypatch.setenv("SDPO_KILL_AT", kills)
    monkeypatch.setenv("SDPO_KILL_MARKER", str(run_dir.parent))
    return run_cli(
        *run_args(run_dir, tiny_cache, 2),
        "ray.num_cpus=2",
        *HYBRID,
        *extra,
    )


def test_killed_policy_workers_are_recovered_in_place_and_the_run_equals_an_uninterrupted_one(
    runs, tiny_cache, tmp_path, monkeypatch
):
    """Three kills: rank 1 as it starts sampling epoch 0, rank 0 (the group's host) at the start of epoch
    1's update, rank 1 while the last checkpoint is taken. Each time Ray restarts the worker, the group
    is formed again, the new rank takes a survivor's state, and the epoch (or checkpoint) runs again."""
    run_dir = tmp_path / "run"
    res = _run_with_kills(tiny_cache, run_dir, "rollout:0:1,update:1:0,state:2:1", monkeypatch)
    text = res.stdout + res.stderr
    assert res.returncode == 0, text[-3000:]
    assert sorted(p.name for p in tmp_path.glob("killed-*")) == [
        "killed-rollout-0-1",
        "killed-state-2-1",
        "killed-update-1-0",
    ]
    recovered = [line for line in text.splitlines() if "forming the learner group again" in line]
    assert len(recovered) == 3, text[-3000:]
    assert (
        "rank 1 of 2) was lost and restarted as pid" in recovered[0]
        and "epoch 0 runs again from policy version 0" in recovered[0]
    )
    assert "rank 0 of 2) was lost" in recovered[1] and "epoch 1 runs again from policy version 1" in recovered[1]
    assert "the checkpoint after epoch 1 runs again from policy version 2" in recovered[2]
    got, want = read_metrics(run_dir), read_metrics(runs[0])
    assert [m["epoch"] for m in got] == [0, 1]  # each epoch logged once
    for a, b in zip(
        got, want, strict=True
    ):  # the same samples, rewards and update as the uninterrupted run, bit for bit
        for key in (
            "pairs",
            "reward_queries",
            "reward_1step_mean",
            "reward_final_mean",
            "loss",
            "approx_kl",
            "grad_norm",
            "weights_version",
        ):
            assert a[key] == b[key], (a["epoch"], key)
    assert got[1]["eval_reward_2step_mean"] == want[1]["eval_reward_2step_mean"]
    lora, reference = (load_file(str(d / "lora" / "pytorch_lora_weights.safetensors")) for d in (run_dir, runs[0]))
    assert lora.keys() == reference.keys() and all(lora[k].equal(reference[k]) for k in lora)
    assert all(problem(p) is None for p in list_checkpoints(checkpoint_dir(run_dir)))


def test_a_killed_policy_worker_without_restarts_ends_the_run_with_one_line(tiny_cache, tmp_path, monkeypatch):
    res = _run_with_kills(tiny_cache, tmp_path / "run", "update:0:1", monkeypatch, "learner.max_restarts=0")
    assert res.returncode == 1, (res.stdout + res.stderr)[-3000:]
    errors = [line for line in (res.stdout + res.stderr).splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: PolicyWorker(pid=") and "rank 1 of 2) died" in errors[0], (
        errors
    )
    assert "rerunning the same command starts the run again" in errors[0] and "Traceback" not in res.stdout + res.stderr
