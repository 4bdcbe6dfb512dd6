"""HPSv2 / HPSv2.1 through `python -m rewards` in a subprocess: listed, scoring with the tiny local
checkpoint (tests/fixtures/hpsv2_tiny/), and a missing checkpoint offline as one line. (Equivalence
with the original hpsv2 package, in-process: tests/unit/rewards/test_hpsv2.py.)"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from rewards import hpsv2 as H
from rewards.registry import build_reward
from tests.conftest import REPO
from tests.fixtures.equivalence import equivalence_fixture

FIX = equivalence_fixture("hpsv2")
REF, CKPT, CONFIG, TOKENIZER = FIX.ref, FIX.checkpoint, FIX.file("model_config.json"), FIX.file("tokenizer")
fixture_images = FIX.images


@pytest.fixture(scope="module")
def scorer() -> H.HPSv2Scorer:
    return build_reward("hpsv2", checkpoint=CKPT, config=CONFIG, processor=TOKENIZER)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "rewards", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def test_cli_lists_both_versions():
    out = run_cli("list")
    assert out.returncode == 0, out.stderr
    lines = dict(line.split("\t", 1) for line in out.stdout.splitlines())
    assert "HPS_v2_compressed.pt" in lines["hpsv2"] and "HPS_v2.1_compressed.pt" in lines["hpsv2.1"]


def test_cli_scores_with_a_local_checkpoint(tmp_path, scorer):
    paths = []
    for i, img in enumerate(fixture_images()[:2]):
        paths.append(tmp_path / f"img{i}.png")
        Image.fromarray(img).save(paths[-1])
    out = run_cli(
        "score",
        "--reward",
        "hpsv2",
        "--model",
        str(CKPT),
        "--option",
        f"config={CONFIG}",  # --model: the checkpoint
        "--processor",
        TOKENIZER,
        "--prompt",
        REF["prompts"][0],
        *map(str, paths),
    )
    assert out.returncode == 0, out.stderr
    got = [float(line.split("\t")[1]) for line in out.stdout.splitlines()]
    expected = [scorer(img[None], REF["prompts"][:1])[0] for img in fixture_images()[:2]]
    np.testing.assert_allclose(got, expected, atol=2e-6)  # printed with 6 decimals
    np.testing.assert_allclose(got[0], REF["scores"][0], atol=2e-6)


def test_cli_without_checkpoint_offline_is_one_line_error(tmp_path):
    png = tmp_path / "a.png"
    Image.fromarray(fixture_images()[1]).save(png)
    out = run_cli("score", "--reward", "hpsv2.1", "--option", f"config={CONFIG}", "--processor", TOKENIZER, str(png))
    assert out.returncode == 2 and out.stdout == "" and "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert "HPS_v2.1_compressed.pt" in lines[0] and "checkpoint=PATH" in lines[0]
