"""The local-head path users debug with: `ray start --head` on loopback, `ray job submit` of a short
run, wait for SUCCEEDED, check the run's outputs, and `ray stop` (also when the test fails)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from learner.run.outputs import read_metrics
from tests.conftest import REPO

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_cli() -> list[str]:
    exe = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    assert exe, "the ray CLI (ray[default]) is not installed"
    return [exe]


@pytest.fixture
def local_head(tmp_path):
    """A real Ray head with its own ports and temp dir, stopped afterwards. The dashboard (job API)
    listens on 127.0.0.1; Ray itself replaces a loopback node address with the machine's own
    interface address, so all of its traffic stays on this machine."""
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    gcs, dash = _free_port(), _free_port()
    temp_dir = Path("/tmp") / f"ray-test-{os.getpid()}-{gcs}"  # short: unix socket paths are limited
    start = [
        *_ray_cli(), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={gcs}",
        "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
        "--num-cpus=2", "--num-gpus=0", f"--temp-dir={temp_dir}", "--disable-usage-stats",
    ]
    res = subprocess.run(start, env=env, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    try:
        yield f"http://127.0.0.1:{dash}", env
    finally:
        # `ray stop` would stop every Ray node of this user on the machine (other tests' clusters
        # too); stop only the processes of this head, which all carry its own temp dir.
        for sig in ("-TERM", "-KILL"):
            subprocess.run(["pkill", sig, "-f", str(temp_dir)], capture_output=True)
            time.sleep(2)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _submit(cmd: list[str], env: dict, deadline_s: float = 300) -> subprocess.CompletedProcess:
    """`ray job submit`, retried while the head's job agent is still starting."""
    start = time.monotonic()
    while True:
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if "No available agent" not in res.stdout + res.stderr or time.monotonic() - start > deadline_s:
            return res
        time.sleep(3)


def test_ray_job_submit_runs_to_success(local_head, tiny_cache, tmp_path):
    address, env = local_head
    run_dir = tmp_path / "job-run"
    runtime_env = {"env_vars": {"RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}}
    submit = [
        *_ray_cli(), "job", "submit", "--address", address, "--working-dir", str(REPO),
        "--runtime-env-json", json.dumps(runtime_env), "--",
        "python", "-m", "learner.main", "--epochs", "2", "--run-dir", str(run_dir),
        f"model.tiny_cache_dir={tiny_cache}", "rollout.pairs_per_epoch=4", "rollout.chunk_size=2",
        "sampling.num_steps=3",
    ]
    res = _submit(submit, env)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert "succeeded" in out.lower(), out[-4000:]
    metrics = read_metrics(run_dir)
    assert [m["epoch"] for m in metrics] == [0, 1]
    assert all(m["reward_queries"] == 6 * m["pairs"] for m in metrics)
    assert (run_dir / "lora" / "pytorch_lora_weights.safetensors").exists()
    listed = subprocess.run([*_ray_cli(), "job", "list", "--address", address], env=env, capture_output=True, text=True, timeout=60)
    assert "SUCCEEDED" in listed.stdout
