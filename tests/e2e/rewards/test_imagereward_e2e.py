"""ImageReward through `python -m rewards list` in a subprocess. (Equivalence with the original
ImageReward package, in-process: tests/unit/rewards/test_imagereward.py.)"""

from __future__ import annotations

import os
import subprocess
import sys

from rewards.registry import reward_spec
from tests.conftest import REPO


def test_cli_lists_imagereward_as_available():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-m", "rewards", "list"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    lines = dict(line.split("\t", 1) for line in out.stdout.splitlines())
    assert lines["imagereward"] == reward_spec("imagereward").needs
    assert "ImageReward.pt" in lines["imagereward"] and "unavailable" not in lines["imagereward"]
