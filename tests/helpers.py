"""Small helpers that tests of both tiers share (tests/unit and tests/e2e each hold one half of the
modules named beside them). Fixtures shared by both tiers are in tests/conftest.py and tests/fixtures/."""

from __future__ import annotations

import importlib.util

from tests.conftest import REPO, run_args

# tests/*/cluster/test_gpu_ray*.py
GPU_RAY = REPO / "cluster" / "gpu_ray"


def pack_wheels_module():
    spec = importlib.util.spec_from_file_location("pack_wheels", GPU_RAY / "pack_wheels.py")  # a script, not a package
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# tests/e2e/learner/test_{adversarial,fault_e2e,node_loss}.py: a tiny-preset run short enough to interrupt
# and run again many times (4 pairs of 4 steps an epoch, no evaluation, no TensorBoard)
SMALL_TINY_RUN = [
    "--config",
    "tiny",
    "rollout.pairs_per_epoch=4",
    "rollout.chunk_size=2",
    "sampling.num_steps=4",
    "eval.enabled=false",
    "output.tensorboard=false",
]


def tiny_run_args(run_dir, tiny_cache: str, epochs: int, *extra: str) -> list[str]:
    """The CLI arguments of a SMALL_TINY_RUN of `epochs` in `run_dir`, then `extra` overrides."""
    return run_args(run_dir, tiny_cache, epochs, *SMALL_TINY_RUN, *extra)


# tests/*/rewards/test_registry*.py: every built-in reward, in registration order
BUILTIN_REWARDS = [
    "aesthetic",
    "hpsv2",
    "hpsv2.1",
    "hpsv3",
    "imagereward",
    "jpeg_compressibility",
    "jpeg_incompressibility",
    "pickscore",
    "shapes_classifier",
]


# tests/*/rewards/test_runtime_env*.py
def runtime_env_config(**runtime_env):
    from learner.config import build_config

    return build_config({}, [f"reward.runtime_env={runtime_env}"])


def process_name(p) -> str:
    """A psutil process's name, or '' once it has exited (a driver's short-lived children end while
    they are listed)."""
    import psutil

    try:
        return p.name()
    except psutil.NoSuchProcess:
        return ""


def ray_core_processes(pid: int) -> list:
    """The raylet and GCS server among the descendants of process `pid` (the local cluster a driver started)."""
    import psutil

    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [p for p in children if process_name(p) in ("raylet", "gcs_server")]
