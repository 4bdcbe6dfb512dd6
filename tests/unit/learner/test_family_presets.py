"""The SDXL-Turbo, SD3.5-Large-Turbo, FLUX.1-schnell, FLUX.2-klein and SANA-Sprint presets: valid, round-trip, and
their family
settings take effect on the tiny builds of the same architectures (the LoRA targets exist in the
transformers)."""

from __future__ import annotations

import yaml

from learner.config import Config, load_config, to_yaml


def test_presets_validate_and_round_trip():
    for name in (
        "sdxl_turbo_aesthetic",
        "sd35_large_turbo_aesthetic",
        "flux_schnell_aesthetic",
        "flux2_klein_aesthetic",
        "sana_sprint_aesthetic",
    ):
        cfg = load_config(name)
        assert Config.model_validate(yaml.safe_load(to_yaml(cfg))) == cfg


def test_sdxl_turbo_preset():
    cfg = load_config("sdxl_turbo_aesthetic")
    assert cfg.model.pretrained == "stabilityai/sdxl-turbo" and cfg.model.resolution == 512
    assert (cfg.sampling.num_steps, cfg.sampling.eta, cfg.sampling.guidance_scale) == (50, 1.0, 1.0)
    assert cfg.samples_per_optimizer_step == 64 and cfg.optimizer_steps_per_epoch == 100  # sd_turbo_aesthetic's numbers


def test_sd35_turbo_preset_lora_targets_exist_in_the_sd3_transformer(tiny_sd3_dir):
    from actors.policy import load_pipeline, lora_state

    cfg = load_config("sd35_large_turbo_aesthetic")
    assert cfg.model.pretrained == "stabilityai/stable-diffusion-3.5-large-turbo" and cfg.model.resolution == 1024
    assert (cfg.sampling.num_steps, cfg.sampling.eta, cfg.sampling.guidance_scale) == (10, 0.7, 1.0)
    model = cfg.model.model_copy(update={"pretrained": tiny_sd3_dir, "resolution": None, "dtype": "float32"})
    state = lora_state(load_pipeline(model).transformer)
    for target in cfg.model.lora_target_modules:  # both attention streams get adapters
        assert any(f".{target}.lora_A" in k for k in state), target


def test_flux_schnell_preset_lora_targets_exist_in_the_flux_transformer(tiny_flux_dir):
    from actors.policy import load_pipeline, lora_state

    cfg = load_config("flux_schnell_aesthetic")
    assert cfg.model.pretrained == "black-forest-labs/FLUX.1-schnell"
    assert (cfg.sampling.num_steps, cfg.sampling.eta, cfg.sampling.guidance_scale) == (8, 0.7, 1.0)
    model = cfg.model.model_copy(update={"pretrained": tiny_flux_dir, "resolution": 32, "dtype": "float32"})
    state = lora_state(load_pipeline(model).transformer)
    for target in cfg.model.lora_target_modules:
        assert any(f".{target}.lora_A" in k for k in state), target


def test_flux2_klein_preset_lora_targets_exist_in_the_flux2_transformer(tiny_flux2_klein_dir):
    from actors.policy import load_pipeline, lora_state

    cfg = load_config("flux2_klein_aesthetic")
    assert cfg.model.pretrained == "black-forest-labs/FLUX.2-klein-4B" and cfg.model.resolution == 1024
    assert (cfg.sampling.num_steps, cfg.sampling.eta, cfg.sampling.guidance_scale) == (8, 0.7, 1.0)
    model = cfg.model.model_copy(update={"pretrained": tiny_flux2_klein_dir, "resolution": 32, "dtype": "float32"})
    state = lora_state(load_pipeline(model).transformer)
    for target in cfg.model.lora_target_modules:
        assert any(f".{target}.lora_A" in k for k in state), target
    assert any(k.startswith("single_transformer_blocks.") for k in state)  # the single-stream blocks are adapted too


def test_sana_sprint_preset_lora_targets_exist_in_the_sana_transformer(tiny_sana_sprint_dir):
    from actors.policy import load_pipeline, lora_state

    cfg = load_config("sana_sprint_aesthetic")
    assert (
        cfg.model.pretrained == "Efficient-Large-Model/Sana_Sprint_1.6B_1024px_diffusers"
        and cfg.model.resolution == 1024
    )
    assert (cfg.sampling.num_steps, cfg.sampling.eta, cfg.sampling.guidance_scale, cfg.train.skip_last_step) == (
        8,
        1.0,
        1.0,
        True,
    )
    assert cfg.optimizer_steps_per_epoch == 64 * 7 // (
        4 * 2 * 4
    )  # 64 pairs x 7 trained steps over 32 items per step: 14
    model = cfg.model.model_copy(update={"pretrained": tiny_sana_sprint_dir, "resolution": None, "dtype": "float32"})
    state = lora_state(load_pipeline(model).transformer)
    for target in cfg.model.lora_target_modules:  # the self- (linear) and cross-attention both get adapters
        assert any(f".attn1.{target}.lora_A" in k for k in state) and any(
            f".attn2.{target}.lora_A" in k for k in state
        ), target
