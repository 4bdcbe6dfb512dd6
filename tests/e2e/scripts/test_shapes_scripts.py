"""The offline training scripts of the shapes task (scripts.shapes_pretrain, scripts.shapes_distill,
scripts.shapes_reward_train) are deterministic: a shortened run, twice, writes the same weight bytes."""

from __future__ import annotations

import json
import math

import pytest

from actors.policy import SHAPES_MODEL


def _weights(directory) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*.safetensors"))}


@pytest.mark.parametrize(
    "module, args",
    [
        (
            "scripts.shapes_pretrain",
            ["--vae-steps", "2", "--unet-steps", "3", "--batch", "4", "--check-per-prompt", "0"],
        ),
        (
            "scripts.shapes_pretrain",
            ["--vae-steps", "2", "--unet-steps", "3", "--batch", "4", "--check-per-prompt", "1", "--zero-snr"],
        ),
        ("scripts.shapes_reward_train", ["--steps", "3", "--batch", "8"]),
        (
            "scripts.shapes_distill",
            [
                "--pairs-per-prompt",
                "1",
                "--teacher-steps",
                "2",
                "--steps",
                "3",
                "--batch",
                "4",
                "--check-per-prompt",
                "0",
            ],
        ),
    ],
)
def test_training_scripts_are_deterministic_byte_for_byte(tmp_path, module, args):
    """A shortened run of each training script, twice: the same weight bytes (the full runs rebuilt
    the committed weights exactly, docs/shapes.md)."""
    import subprocess
    import sys

    from tests.conftest import REPO, cli_env

    for name in ("a", "b"):
        res = subprocess.run(
            [sys.executable, "-m", module, "--out", str(tmp_path / name), *args],
            cwd=REPO,
            env=cli_env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert a and a == b
    if module == "scripts.shapes_distill":  # only the UNet is trained: the rest is the teacher's, byte for byte
        assert {k: v for k, v in a.items() if not k.startswith("unet/")} == {
            k: v for k, v in _weights(SHAPES_MODEL).items() if not k.startswith("unet/")
        }
        assert (
            a["unet/diffusion_pytorch_model.safetensors"]
            != _weights(SHAPES_MODEL)["unet/diffusion_pytorch_model.safetensors"]
        )
    if "--zero-snr" in args:  # v-prediction on a zero-terminal-SNR schedule, sampled through from_pretrained
        from diffusers import DDIMScheduler

        sched = DDIMScheduler.from_pretrained(str(tmp_path / "a"), subfolder="scheduler")
        assert sched.config.prediction_type == "v_prediction" and float(sched.alphas_cumprod[-1]) == 0.0
        check = json.loads((tmp_path / "a" / "training_check.json").read_text())
        assert all(math.isfinite(check[f"fidelity_{k}"]) for k in (1, 2, 4, 8, 50))
