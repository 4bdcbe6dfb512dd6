"""The local-head path users debug with: `ray start --head` on loopback, `ray job submit` of a short
run, wait for SUCCEEDED, check the run's outputs, its console, and the Ray metrics it exported on the
node's Prometheus endpoint, and `ray stop` (also when the test fails)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from learner.run.outputs import read_metrics
from tests.conftest import REPO, run_args


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
    gcs, dash, metrics, agent = _free_port(), _free_port(), _free_port(), _free_port()
    temp_dir = Path("/tmp") / f"ray-test-{os.getpid()}-{gcs}"  # short: unix socket paths are limited
    start = [
        *_ray_cli(),
        "start",
        "--head",
        "--node-ip-address=127.0.0.1",
        f"--port={gcs}",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dash}",
        # the job API needs the head's dashboard agent; its default port (52365) is taken by any other
        # Ray cluster on the machine (another test run's), and then job submission never finds an agent
        f"--dashboard-agent-listen-port={agent}",
        "--num-cpus=2",
        "--num-gpus=0",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
        f"--metrics-export-port={metrics}",
    ]
    res = subprocess.run(start, env=env, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    try:
        yield f"http://127.0.0.1:{dash}", env, f"http://127.0.0.1:{metrics}/metrics"
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


# What the job's console may show: Ray's connect lines, and the job's own lines
CONSOLE_LINES = re.compile(
    r"^(\S+ \S+\s+INFO worker\.py:\d+ -- (Connecting to existing Ray cluster|Connected to Ray cluster)"
    r"|(SDPO|DDPO): |workers: |epoch \d+/\d+ |held-out eval |time: \d+:\d+ in all: |done: )"
)


RAY_JOB_CLI = re.compile(r"^(\S+ \S+\s+(INFO|SUCC) (cli|sdk|job_manager)\.py:\d+ -- |Running entrypoint for job )")


def _job_console(submit_output: str) -> list[str]:
    """The job's own console in `ray job submit`'s output: what follows 'Tailing logs', less the
    job CLI's and job manager's own lines (colour codes removed)."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in submit_output.splitlines()]
    start = next(i for i, line in enumerate(lines) if "Tailing logs until the job exits" in line) + 1
    return [line for line in lines[start:] if line.strip() and not RAY_JOB_CLI.match(line)]


def _scrape(url: str, names: list[str], run: str, timeout_s: float = 60) -> dict[str, float]:
    """name -> value of the series `name{...,run="<run>",...}` on a Prometheus endpoint, waiting for
    all of them (Ray exports every few seconds)."""
    deadline = time.monotonic() + timeout_s
    while True:
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        found = {}
        for line in text.splitlines():
            m = re.match(r"^(\w+)\{(.*)\} (\S+)$", line)
            if m and m.group(1) in names and f'run="{run}"' in m.group(2):
                found[
                    m.group(1)
                    + ("" if "phase=" not in m.group(2) else "/" + re.search(r'phase="(\w+)"', m.group(2)).group(1))
                ] = float(m.group(3))
        if all(any(k.split("/")[0] == n for k in found) for n in names) or time.monotonic() > deadline:
            return found
        time.sleep(2)


def test_ray_job_submit_runs_to_success(local_head, tiny_cache, tmp_path):
    address, env, metrics_url = local_head
    run_dir = tmp_path / "job-run"
    runtime_env = {"env_vars": {"RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}}
    submit = [
        *_ray_cli(),
        "job",
        "submit",
        "--address",
        address,
        "--working-dir",
        str(REPO),
        "--runtime-env-json",
        json.dumps(runtime_env),
        "--",
        sys.executable,
        "-m",
        "learner.main",
        "--config",
        "tiny",
        *run_args(run_dir, tiny_cache, 2),
        "rollout.pairs_per_epoch=4",
        "rollout.chunk_size=2",
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
    listed = subprocess.run(
        [*_ray_cli(), "job", "list", "--address", address], env=env, capture_output=True, text=True, timeout=60
    )
    assert "SUCCEEDED" in listed.stdout

    console = _job_console(res.stdout)
    assert any(line.startswith("epoch 2/2 ") for line in console), console
    assert [line for line in console if not CONSOLE_LINES.match(line)] == []  # nothing but the job's lines

    # The job's Ray metrics on the node's Prometheus endpoint (counters and histograms outlive the job)
    names = [
        "ray_sdpo_pairs_sampled_total",
        "ray_sdpo_reward_queries_total",
        "ray_sdpo_epochs_total",
        "ray_sdpo_phase_seconds_count",
    ]
    got = _scrape(metrics_url, names, run_dir.name)
    assert got["ray_sdpo_pairs_sampled_total"] == 8  # 2 epochs x 4 pairs
    assert got["ray_sdpo_reward_queries_total"] == 48  # 6 images per pair
    assert got["ray_sdpo_epochs_total"] == 2
    assert got["ray_sdpo_phase_seconds_count/epoch"] == 2 and got["ray_sdpo_phase_seconds_count/update"] == 2
