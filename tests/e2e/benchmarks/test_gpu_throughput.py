"""benchmarks/gpu_throughput.py off the GPU: without one it stops at once with one line; --cpu-smoke runs
its per-family code (the real-size build at 1/64, the in-process hybrid PolicyWorker with the preset's
settings, the timed rounds and the --fits ladder) on CPU. Its GPU figures are recorded in docs/benchmarks.md."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO, cli_env


def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "benchmarks.gpu_throughput", *args]
    return subprocess.run(cmd, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=timeout)


def test_without_a_gpu_it_exits_2_with_one_line():
    res = run("--family", "flux", "--fits")
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip().splitlines() == [
        "error: benchmarks/gpu_throughput.py needs a CUDA GPU; none is visible to torch (--cpu-smoke runs it on CPU)"
    ]


def test_cpu_smoke_runs_a_hybrid_worker_with_the_preset_and_every_change_of_the_fit_ladder():
    """sd3 (sd35_large_turbo_aesthetic: bf16 LoRA rank 32, micro-batch 1) at 1/64 size and 128 px: a round of rollout
    and
    update, then the ladder: chunk 2 -> 1, gradient checkpointing, and T5 off; on CPU there is no GPU memory (0)."""
    res = run("--cpu-smoke", "--family", "sd3", "--fits", "--train-steps", "1")
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.loads(res.stdout.strip().splitlines()[-1])
    sd3 = result["families"]["sd3"]
    assert sd3["preset"] == "sd35_large_turbo_aesthetic" and sd3["lora_rank"] == 32 and sd3["micro_batch"] == 1
    assert sd3["pairs"] == 2 and sd3["steps"] == 3 and sd3["train_steps"] == 1 and sd3["rollout_pairs_per_s"] > 0
    assert sd3["update_pairs_per_s"] > 0 and "text_encoder_3" in sd3["params"]
    settings = {
        (s["chunk_size"], s["micro_batch_size"], s["gradient_checkpointing"], s["t5"]) for s in sd3["fits"]["settings"]
    }
    assert {
        (2, 1, False, True),
        (1, 1, False, True),
        (2, 1, True, True),
        (1, 1, False, False),
        (1, 1, True, False),
    } <= settings
    assert set(sd3["fits"]["advice"]) == {"80GB", "141GB"}
    assert "| sd3 | sd35_large_turbo_aesthetic | 128 |" in res.stderr  # the table
