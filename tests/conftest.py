"""What both test tiers (tests/unit, tests/e2e) share: the embedded tiny pipeline (built once per test
session, offline), the environment every Ray process of a test needs, and small helpers. run_cli and
cli_env start processes, so only tests/e2e can use them (tests/unit/conftest.py refuses processes)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started in the background by a non-interactive shell: the
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C tests (and the drivers they start) need it back

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> str:
    """A cache directory holding the tiny pipeline (model.tiny_cache_dir)."""
    from actors.tiny_model import ensure_tiny_pipeline

    cache = tmp_path_factory.mktemp("tiny-cache")
    ensure_tiny_pipeline(cache)
    return str(cache)


@pytest.fixture(scope="session")
def tiny_dir(tiny_cache) -> str:
    """The saved tiny pipeline directory (loadable with StableDiffusionPipeline.from_pretrained)."""
    from actors.tiny_model import ensure_tiny_pipeline

    return str(ensure_tiny_pipeline(tiny_cache))


@pytest.fixture(scope="session")
def tiny_sdxl_dir(tiny_cache) -> str:
    """A saved tiny StableDiffusionXLPipeline directory (actors.families.tiny)."""
    from actors.families.tiny import ensure_tiny_family

    return str(ensure_tiny_family("sdxl", tiny_cache))


@pytest.fixture(scope="session")
def tiny_sd3_dir(tiny_cache) -> str:
    """A saved tiny StableDiffusion3Pipeline directory without T5 (actors.families.tiny)."""
    from actors.families.tiny import ensure_tiny_family

    return str(ensure_tiny_family("sd3", tiny_cache))


@pytest.fixture(scope="session")
def tiny_flux_dir(tiny_cache) -> str:
    """A saved tiny FluxPipeline directory of the FLUX.1-schnell class (actors.families.tiny); load it with
    model.resolution set (FluxPipeline's default size is 1024)."""
    from actors.families.tiny import ensure_tiny_family

    return str(ensure_tiny_family("flux", tiny_cache))


@pytest.fixture(scope="session")
def tiny_flux2_klein_dir(tiny_cache) -> str:
    """A saved tiny Flux2KleinPipeline directory of the FLUX.2-klein-4B class (actors.families.tiny); load it with
    model.resolution set (the pipeline's default size is 1024)."""
    from actors.families.tiny import ensure_tiny_family

    return str(ensure_tiny_family("flux2_klein", tiny_cache))


@pytest.fixture(scope="session")
def tiny_sana_sprint_dir(tiny_cache) -> str:
    """A saved tiny SanaSprintPipeline directory (actors.families.tiny): 32 x 32 images by default."""
    from actors.families.tiny import ensure_tiny_family

    return str(ensure_tiny_family("sana_sprint", tiny_cache))


def cli_env() -> dict[str, str]:
    """This environment for a CLI subprocess, less RAY_ADDRESS: a driver a test starts makes its own
    local cluster unless the test names one."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_cli(*args: str, cwd: str | Path = REPO, timeout: float = 600):
    """The CLI on the 'tiny' plumbing preset (random tiny model, JPEG reward) unless args name a --config."""
    import subprocess

    config = [] if "--config" in args else ["--config", "tiny"]
    return subprocess.run(
        [sys.executable, "-m", "learner.main", *config, *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_args(run_dir, tiny_cache: str, epochs: int, *overrides: str) -> list[str]:
    """The CLI arguments of an `epochs`-long run in `run_dir` on the tiny model cached in `tiny_cache`."""
    return ["--epochs", str(epochs), "--run-dir", str(run_dir), f"model.tiny_cache_dir={tiny_cache}", *overrides]


def update_request(trajectories, advantages, version: int | None = None):
    """The UpdateRequest of a one-shard update of `trajectories` (all their pairs) with `advantages` (B, P, T)."""
    from learner.worker.batch import ShardAdvantages, UpdateRequest

    version = trajectories.policy_version if version is None else version
    shard = ShardAdvantages(0, trajectories.pair_index, advantages)
    return UpdateRequest(version, trajectories.epoch, 1, trajectories.num_pairs, [shard])


def final_rewards(rewards, prompts, num_steps: int):
    """SparseRewards holding only final rewards (B, P) of B prompts (what DDPO's advantages read), T steps."""
    import numpy as np
    import torch

    from learner.algo.advantages import SparseRewards

    rewards = np.asarray(rewards, dtype=np.float64)
    B, P = rewards.shape
    return SparseRewards(
        rewards[:, :, None],
        torch.zeros(B, P, 1, dtype=torch.long),
        torch.zeros(B, P, 1, num_steps),
        list(prompts),
        np.zeros(B, dtype=int),
    )
