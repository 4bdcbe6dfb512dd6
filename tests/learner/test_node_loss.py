"""The loss of a whole node: a multi-node Ray cluster on this machine (Ray's cluster_utils: a head and
a worker raylet, each its own node), the rollout actors placed on the worker node, that node killed
mid-run and a replacement node added (what KubeRay does for a lost pod). The run finishes with every
epoch's pairs, and its metrics equal an undisturbed run's."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from learner.run.outputs import read_metrics
from tests.conftest import REPO, cli_env, run_cli

pytestmark = pytest.mark.e2e

SMALL = ["rollout.pairs_per_epoch=4", "rollout.chunk_size=2", "sampling.num_steps=4", "eval.enabled=false", "output.tensorboard=false"]
EXACT = ("pairs", "pairs_dropped", "reward_queries", "reward_1step_mean", "reward_final_mean", "loss", "grad_norm")
# the head holds the learner (0.5) and the reward server (0.25); the rollout actors (2 x 0.5) fit only on a worker node
HEAD_CPUS, WORKER_CPUS = 0.75, 1.0


def test_a_lost_worker_node_is_replaced_and_the_run_finishes_exactly(tiny_cache, tmp_path):
    from ray.cluster_utils import Cluster

    args = ["--epochs", "3", f"model.tiny_cache_dir={tiny_cache}", *SMALL, "rollout.restart_timeout_s=300"]
    reference = run_cli("--run-dir", str(tmp_path / "reference"), *args, "ray.enabled=false")
    assert reference.returncode == 0, reference.stderr[-3000:]

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": HEAD_CPUS, "include_dashboard": False})
    try:
        worker = cluster.add_node(num_cpus=WORKER_CPUS)
        cluster.wait_for_nodes()
        log = tmp_path / "driver.log"
        driver = subprocess.Popen(
            [sys.executable, "-m", "learner.main", "--run-dir", str(tmp_path / "run"), *args, f"ray.address={cluster.address}"],
            cwd=REPO, env=cli_env(), stdout=log.open("w"), stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 300
        while "epoch 1/3" not in log.read_text():  # the rollout actors have sampled on the worker node
            assert driver.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        cluster.remove_node(worker)  # the whole node: its raylet and every actor on it
        cluster.add_node(num_cpus=WORKER_CPUS)  # the replacement pod joins
        assert driver.wait(timeout=600) == 0, log.read_text()[-3000:]
    finally:
        cluster.shutdown()
    text = log.read_text()
    assert "rollout actor 0" in text and "rollout actor 1" in text  # both actors were lost, and it was handled
    got, want = read_metrics(tmp_path / "run"), read_metrics(tmp_path / "reference")
    assert [m["epoch"] for m in got] == [0, 1, 2]
    for a, b in zip(got, want):
        for key in EXACT:
            assert a[key] == b[key], (a["epoch"], key, a[key], b[key])
    assert Path(tmp_path / "run" / "lora" / "pytorch_lora_weights.safetensors").exists()
