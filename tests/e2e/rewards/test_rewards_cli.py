"""`python -m rewards` run for real in a subprocess: list, score, and one-line user errors (exit 2)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rewards.jpeg import jpeg_size_kb
from rewards.registry import build_reward, reward_names, reward_spec

REPO = Path(__file__).resolve().parents[3]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "rewards", *args], cwd=REPO, env=env, capture_output=True, text=True)


@pytest.fixture
def pngs(tmp_path) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i, (h, w) in enumerate([(32, 32), (40, 56)]):  # different sizes on purpose
        paths.append(tmp_path / f"img{i}.png")
        Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def _scores(stdout: str, paths: list[Path]) -> np.ndarray:
    lines = [line.split("\t") for line in stdout.splitlines()]
    assert [p for p, _ in lines] == [str(p) for p in paths]
    return np.array([float(s) for _, s in lines])


def test_list_prints_names_and_needs():
    out = run_cli("list")
    assert out.returncode == 0, out.stderr
    builtin = [n for n in reward_names() if not reward_spec(n).needs.endswith("(test reward)")]  # others' test rewards
    assert out.stdout.splitlines() == [f"{n}\t{reward_spec(n).needs}" for n in builtin]


def test_score_jpeg(pngs):
    out = run_cli("score", "--reward", "jpeg_compressibility", *map(str, pngs))
    assert out.returncode == 0, out.stderr
    expected = [-jpeg_size_kb(np.asarray(Image.open(p))[None])[0] for p in pngs]
    np.testing.assert_allclose(_scores(out.stdout, pngs), expected, atol=1e-6)


def test_score_aesthetic_with_local_model(pngs, tiny_clip_dir, aesthetic_head):
    out = run_cli(
        "score", "--reward", "aesthetic", "--model", str(tiny_clip_dir), "--head", str(aesthetic_head), *map(str, pngs)
    )
    assert out.returncode == 0, out.stderr
    fn = build_reward("aesthetic", model=str(tiny_clip_dir), head=str(aesthetic_head))
    expected = [fn(np.asarray(Image.open(p))[None], [""])[0] for p in pngs]
    np.testing.assert_allclose(_scores(out.stdout, pngs), expected, atol=2e-6)


def test_score_pickscore_with_prompt_and_option(pngs, tiny_clip_dir):
    d = str(tiny_clip_dir)
    out = run_cli(
        "score",
        "--reward",
        "pickscore",
        "--model",
        d,
        "--processor",
        d,
        "--option",
        "raw_cosine=true",
        "--prompt",
        "a cat",
        *map(str, pngs),
    )
    assert out.returncode == 0, out.stderr
    fn = build_reward("pickscore", model=d, processor=d, raw_cosine=True)
    expected = [fn(np.asarray(Image.open(p))[None], ["a cat"])[0] for p in pngs]
    np.testing.assert_allclose(_scores(out.stdout, pngs), expected, atol=2e-6)


def _bad_text_file(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not an image")
    return path


@pytest.mark.parametrize(
    "args, message",
    [
        (["score", "--reward", "aesthetics", "{png}"], "unknown reward 'aesthetics'; valid rewards: aesthetic, hpsv2"),
        (["score", "--reward", "jpeg_compressibility", "{png}", "{missing}"], "image file not found: {missing}"),
        (["score", "--reward", "jpeg_compressibility", "{bad}"], "cannot read image {bad}"),
        (["score", "--reward", "jpeg_compressibility", "--model", "m", "{png}"], "has no option(s) ['model']"),
        (
            ["score", "--reward", "imagereward", "--model", "{missing}", "{png}"],
            "ImageReward checkpoint file not found: {missing}",
        ),
        (
            ["score", "--reward", "aesthetic", "--model", "{missing}", "--head", "h.pth", "{png}"],
            "model directory not found: {missing}",
        ),
        (["score", "--reward", "jpeg_compressibility"], "required: IMAGE"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_user_errors_are_one_line_exit_2(args, message, pngs, tmp_path):
    paths = {"png": str(pngs[0]), "missing": str(tmp_path / "missing.png"), "bad": str(_bad_text_file(tmp_path))}
    out = run_cli(*[a.format(**paths) for a in args])
    assert out.returncode == 2
    assert out.stdout == ""
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert message.format(**paths) in lines[0]
