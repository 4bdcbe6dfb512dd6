"""The diffusion policy: loading a diffusers pipeline of a supported family (actors.families) with
LoRA, prompt encoding, the denoiser call, and LoRA weights in and out. Shared by the rollout workers
and the learner.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from actors.config import ModelConfig
from actors.families import (
    FAMILIES,
    ModelFamily,
    ModelLoadError,
    family_named,
    family_of,
    family_of_lora_state,
    family_of_pipeline_class,
)
from actors.families.base import DTYPES, add_lora, lora_adapter_metadata, quiet_libraries
from shapes import ASSETS as SHAPES_ASSETS

__all__ = [
    "DTYPES",
    "ModelLoadError",
    "add_lora",
    "denoiser",
    "encode_prompts",
    "load_lora_state",
    "load_pipeline",
    "lora_state",
    "lora_adapter_metadata",
    "model_family",
    "quiet_libraries",
    "resolve_model_path",
    "save_lora_diffusers",
    "save_lora_state_diffusers",
    "unet_output",
]


SHAPES_MODEL = SHAPES_ASSETS / "shapes-sd"  # pretrained by python -m scripts.shapes_pretrain
SHAPES_TURBO = SHAPES_ASSETS / "shapes-turbo"  # distilled from it by python -m scripts.shapes_distill


def resolve_model_path(model: ModelConfig) -> str:
    if model.pretrained == "tiny":
        from actors.tiny_model import ensure_tiny_pipeline

        return str(ensure_tiny_pipeline(model.tiny_cache_dir))
    if model.pretrained == "shapes":
        return str(SHAPES_MODEL)
    if model.pretrained == "shapes-turbo":
        return str(SHAPES_TURBO)
    path = Path(os.path.expanduser(model.pretrained))
    looks_local = model.pretrained.startswith((".", "/", "~")) or path.exists()
    if looks_local and not (path / "model_index.json").is_file():
        raise ModelLoadError(
            f"model.pretrained: '{model.pretrained}' is not a diffusers pipeline directory (no model_index.json)"
        )
    if looks_local:
        _check_pipeline_dir(path, model)
    return str(path) if looks_local else model.pretrained


def _read_index(path: Path, name: str) -> dict:
    try:
        index = json.loads((path / "model_index.json").read_text())
    except (OSError, ValueError):
        raise ModelLoadError(f"model.pretrained: '{name}/model_index.json' is not valid JSON") from None
    if not isinstance(index, dict):
        raise ModelLoadError(f"model.pretrained: '{name}/model_index.json' is not a JSON object")
    return index


def _check_pipeline_dir(path: Path, model: ModelConfig) -> None:
    """A local directory must hold a readable model_index.json and its family's components."""
    name = model.pretrained
    family = _family_from_index(_read_index(path, name), model)
    missing = [c for c in family.components if not (path / c).is_dir()]
    if missing:
        raise ModelLoadError(
            f"model.pretrained: '{name}' is not a {family.pipeline_class} directory (no {', '.join(missing)} folder)"
        )


def _family_from_index(index: dict, model: ModelConfig) -> ModelFamily:
    if model.family != "auto":
        return family_named(model.family)
    return family_of_pipeline_class(index.get("_class_name"), model.pretrained)


def model_family(model: ModelConfig, source: str | None = None) -> ModelFamily:
    """model.family, or the family of the model's model_index.json `_class_name` (`source`: the resolved path or id)."""
    if model.family != "auto":
        return family_named(model.family)
    source = source or resolve_model_path(model)
    if Path(source, "model_index.json").is_file():
        return _family_from_index(_read_index(Path(source), model.pretrained), model)
    from diffusers import DiffusionPipeline

    try:
        index = DiffusionPipeline.load_config(source, revision=model.revision, local_files_only=model.local_files_only)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelLoadError(f"model.pretrained: cannot load '{model.pretrained}': {first}") from err
    return _family_from_index(dict(index), model)


def load_pipeline(model: ModelConfig, device: str | torch.device = "cpu", with_lora: bool = True, seed: int = 0):
    """The family's pipeline from_pretrained, with its policy scheduler (DDIM from the model's scheduler
    config, or the flow scheduler), frozen weights and (optionally) peft LoRA adapters on the denoiser's
    attention projections."""
    quiet_libraries()
    source = resolve_model_path(model)
    return model_family(model, source).load(source, model, torch.device(device), with_lora, seed)


def denoiser(pipe) -> torch.nn.Module:
    """The module a pipeline's LoRA lives on and that is trained: the UNet, or SD3's transformer."""
    return family_of(pipe).denoiser(pipe)


def lora_state(denoiser_module) -> dict[str, torch.Tensor]:
    """The trainable LoRA tensors (peft names), detached on CPU: what a weight broadcast carries."""
    from peft.utils import get_peft_model_state_dict

    return {k: v.detach().to("cpu", copy=True) for k, v in get_peft_model_state_dict(denoiser_module).items()}


def load_lora_state(denoiser_module, state: dict[str, torch.Tensor]) -> None:
    from peft.utils import set_peft_model_state_dict

    result = set_peft_model_state_dict(denoiser_module, state)
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise ValueError(f"LoRA state has keys the denoiser does not: {unexpected[:3]}")


def save_lora_diffusers(denoiser_module, directory: str | Path, family: ModelFamily | None = None) -> Path:
    """Save the LoRA in the diffusers format (pytorch_lora_weights.safetensors), loadable with the
    family's plain ``<Pipeline>.load_lora_weights(directory)``."""
    config = denoiser_module.peft_config["default"]
    adapter = lora_adapter_metadata(config.r, config.lora_alpha, config.target_modules)
    return save_lora_state_diffusers(lora_state(denoiser_module), directory, adapter, family)


def save_lora_state_diffusers(
    state: dict[str, torch.Tensor], directory: str | Path, adapter: dict, family: ModelFamily | None = None
) -> Path:
    """The same, from a peft LoRA state dict (what lora_state returns) and its adapter's metadata
    (lora_adapter_metadata: rank, alpha, target modules): no denoiser needed. Without a family the
    file format is read off the state's key names (SD and SDXL UNets share one)."""
    (family or family_of_lora_state(state)).save_lora_state(state, directory, adapter)
    return Path(directory) / "pytorch_lora_weights.safetensors"


@torch.no_grad()
def encode_prompts(pipe, prompts: list[str]):
    """prompts (N) -> the conditioning of the pipeline's denoiser: text embeddings (N, L, D) for SD,
    a NamedTuple of (N, ...) tensors for SDXL and SD3."""
    return family_of(pipe).encode_prompts(pipe, prompts)


def unet_output(
    unet,
    latents: torch.Tensor,
    timesteps: torch.Tensor,
    embeds: torch.Tensor,
    guidance_scale: float = 1.0,
    negative_embeds: torch.Tensor | None = None,
) -> torch.Tensor:
    """A Stable Diffusion UNet's prediction (N, C, h, w) for latents (N, C, h, w) at timesteps (N,)
    with embeds (N, L, D); classifier-free guidance when guidance_scale > 1 (negative_embeds required)."""
    return FAMILIES["sd"].denoise(unet, latents, timesteps, embeds, guidance_scale, negative_embeds)
