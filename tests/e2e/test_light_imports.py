"""The pure core imports no Ray, diffusers or transformers (conventions: pure core, Ray at the edges)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO, cli_env

CORE = [
    "plumbing.errors",
    "plumbing.seeds",
    "plumbing.remote",
    "plumbing.ray_errors",
    "plumbing.config",
    "plumbing.console",
    "shapes.data",
    "shapes.fidelity",
    "shapes.reward",
    "rewards.learned_shapes",
    "actors.ddim",
    "actors.flow_sde",
    "actors.families",
    "actors.config",
    "actors.batch",
    "actors.similarity",
    "rewards.registry",
    "rewards.config",
    "learner.algo.advantages",
    "learner.algo.sdpo",
    "learner.algo.minibatches",
    "learner.algo.ddpo",
    "learner.algo.registry",
    "learner.worker.distributed",
    "learner.worker.batch",
    "learner.run.checkpoint",
    "learner.worker.config",
    "learner.run.config",
    "learner.driver.config",
    "learner.config",
]


def test_core_modules_import_no_heavy_libraries():
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in CORE)
        + "heavy = sorted({'ray', 'diffusers', 'transformers', 'accelerate', 'peft'} & set(sys.modules))\n"
        + "print(','.join(heavy))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "", f"the pure core pulled in: {res.stdout.strip()}"
