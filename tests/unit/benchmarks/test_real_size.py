"""benchmarks/real_size.py: every family's real architecture, built from its published config with
random weights. At scale 1/64 each builds, saves, loads back through the project's loader (family
read from model_index.json) and samples a pair; at scale 1 its denoiser's parameter count, taken on
the meta device (nothing allocated), is the published one."""

from __future__ import annotations

import pytest
import torch

from benchmarks import real_configs, real_size
from benchmarks.real_configs import FAMILIES, PUBLISHED_DENOISER_PARAMS

TINY = 1 / 64


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_build_saves_loads_and_samples_a_pair(family, tmp_path):
    from actors.config import ModelConfig
    from actors.policy import load_pipeline, model_family
    from actors.sampling import sample_pairs

    path = real_size.build_saved(family, tmp_path / family, TINY)
    model = ModelConfig(pretrained=str(path), resolution=64, local_files_only=True)
    assert model_family(model).name == family
    pipe = load_pipeline(model)
    pairs = sample_pairs(pipe, ["a photo of a cat"], [torch.Generator().manual_seed(0)], num_steps=2, eta=0.7)
    assert pairs.latents.shape[:3] == (1, 2, 3) and pairs.log_probs.shape == (1, 2, 2)
    assert torch.isfinite(pairs.latents).all() and torch.isfinite(pairs.log_probs).all()
    assert not torch.equal(pairs.latents[0, 0, -1], pairs.latents[0, 1, -1])  # the pair's two trajectories differ


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_config_has_the_real_classes_and_keys(family, tmp_path):
    """The same code path: every component of the same class with the same config keys; only values shrink."""
    tok = real_configs.tokenizers(family, tmp_path)
    real, tiny = real_configs.configs(family, 1.0, tok), real_configs.configs(family, TINY, tok)
    assert real.keys() == tiny.keys()
    for name in real:
        assert real[name][0] == tiny[name][0] and real[name][1].keys() == tiny[name][1].keys(), name


@pytest.mark.parametrize("family", FAMILIES)
def test_real_size_denoiser_parameters_are_the_published_count(family):
    """Published: SD 2.1 UNet 865.9M, SDXL UNet 2.6B, SD3.5-Large 8.1B, FLUX.1 11.9B, FLUX.2-klein 4B,
    SANA-Sprint 1.6B (sources in PUBLISHED_DENOISER_PARAMS); within 4 % (FLUX.2-klein's "4B" is 3.88B)."""
    counts = real_size.param_counts(family)
    published, _ = PUBLISHED_DENOISER_PARAMS[family]
    assert counts[real_size.denoiser_name(family)] == pytest.approx(published, rel=0.04)


def test_exact_unet_counts():
    """The two UNets whose exact counts diffusers' models of the published checkpoints give."""
    assert real_size.param_counts("sd")["unet"] == 865_910_724
    assert real_size.param_counts("sdxl")["unet"] == 2_567_463_684


def test_sd3_without_t5_has_no_third_encoder():
    assert "text_encoder_3" in real_size.param_counts("sd3") and "text_encoder_3" not in real_size.param_counts(
        "sd3", t5=False
    )
