"""HPSv3 through `python -m rewards` in a subprocess: listed with what it needs, and a missing
checkpoint offline as one line. (Equivalence with the original HPSv3 package, in-process:
tests/unit/rewards/test_hpsv3.py.)"""

from __future__ import annotations

import os
import subprocess
import sys

from rewards.registry import reward_options, reward_spec
from tests.conftest import REPO
from tests.fixtures.equivalence import equivalence_fixture

FIX = equivalence_fixture("hpsv3")
BASE, fixture_images = FIX.file("base"), FIX.images


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "rewards", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def test_registered_with_its_options():
    assert reward_options("hpsv3") == ["checkpoint", "base", "dtype"]
    needs = reward_spec("hpsv3").needs
    assert "HPSv3.safetensors" in needs and "MizzenAI/HPSv3" in needs and "Qwen/Qwen2-VL-7B-Instruct" in needs
    out = run_cli("list")
    assert out.returncode == 0, out.stderr
    assert f"hpsv3\t{needs}" in out.stdout.splitlines()


def test_cli_without_checkpoint_offline_is_one_line_error(tmp_path):
    from PIL import Image

    png = tmp_path / "a.png"
    Image.fromarray(fixture_images()[2]).save(png)
    out = run_cli("score", "--reward", "hpsv3", "--option", f"base={BASE}", str(png))
    assert out.returncode == 2 and out.stdout == "" and "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert "HPSv3.safetensors" in lines[0] and "MizzenAI/HPSv3" in lines[0] and "checkpoint=PATH" in lines[0]
