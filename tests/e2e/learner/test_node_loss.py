"""The loss of a whole node: a multi-node Ray cluster on this machine (Ray's cluster_utils: a head and
a worker raylet, each its own node), the job's actors on the worker node (PACK places all its
bundles on the one node that holds them), that node killed mid-run and a replacement node added
(what KubeRay does for a lost pod). The run either finishes on its own (actors rescheduled) or stops
with one `error:` line naming the lost actor, and the same command resumes it; either way the
metrics equal an undisturbed run's."""

from __future__ import annotations

import subprocess
import sys
import time

from learner.run.outputs import read_metrics
from tests.conftest import REPO, cli_env, run_args, run_cli
from tests.helpers import SMALL_TINY_RUN

EXACT = ("pairs", "pairs_dropped", "reward_queries", "reward_1step_mean", "reward_final_mean", "loss", "grad_norm")


def test_a_lost_worker_node_costs_nothing(tiny_cache, tmp_path):
    from ray.cluster_utils import Cluster

    args = [
        *run_args(tmp_path / "run", tiny_cache, 3),
        *SMALL_TINY_RUN,
        "rollout.restart_timeout_s=120",
    ]
    reference = run_cli(
        *run_args(tmp_path / "reference", tiny_cache, 3),
        *SMALL_TINY_RUN,
        "ray.enabled=false",
    )
    assert reference.returncode == 0, reference.stderr[-3000:]

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        worker = cluster.add_node(num_cpus=2)  # holds all 1.75 CPUs of bundles: PACK puts every actor here
        cluster.wait_for_nodes()
        on_cluster = [*args, f"ray.address={cluster.address}"]
        log = tmp_path / "driver.log"
        driver = subprocess.Popen(
            [sys.executable, "-m", "learner.main", *on_cluster],
            cwd=REPO,
            env=cli_env(),
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 300
        while "epoch 1/3" not in log.read_text():
            assert driver.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        cluster.remove_node(worker)  # the whole node: its raylet and every actor on it
        cluster.add_node(num_cpus=2)  # the replacement pod joins
        code = driver.wait(timeout=600)
        text = log.read_text()
        if code != 0:  # stopped: one line naming the lost actor, then the same command resumes
            errors = [line for line in text.splitlines() if line.startswith("error: ")]
            assert code == 1 and len(errors) == 1 and " died" in errors[0], text[-3000:]
            checkpointed = "resume from" in errors[0]  # else the node went while the first checkpoint was being written
            assert checkpointed or "no checkpoint was written yet" in errors[0], errors[0]
            again = run_cli(*on_cluster, timeout=600)
            assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
            assert ("resuming after epoch" in again.stdout) == checkpointed, again.stdout[-2000:]
    finally:
        cluster.shutdown()
    got, want = read_metrics(tmp_path / "run"), read_metrics(tmp_path / "reference")
    assert [m["epoch"] for m in got] == [0, 1, 2]
    for a, b in zip(got, want):
        for key in EXACT:
            assert a[key] == b[key], (a["epoch"], key, a[key], b[key])
    assert (tmp_path / "run" / "lora" / "pytorch_lora_weights.safetensors").exists()
