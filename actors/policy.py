"""The diffusion policy: loading a diffusers pipeline with LoRA, prompt encoding, the UNet call,
and LoRA weights in and out. Shared by the rollout workers and the learner.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from actors.config import ModelConfig
from actors.errors import UsageError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class ModelLoadError(UsageError):
    """The configured model path or id is not a loadable diffusers StableDiffusionPipeline."""


def resolve_model_path(model: ModelConfig) -> str:
    if model.pretrained == "tiny":
        from actors.tiny_model import ensure_tiny_pipeline

        return str(ensure_tiny_pipeline(model.tiny_cache_dir))
    path = Path(os.path.expanduser(model.pretrained))
    looks_local = model.pretrained.startswith((".", "/", "~")) or path.exists()
    if looks_local and not (path / "model_index.json").is_file():
        raise ModelLoadError(
            f"model.pretrained: '{model.pretrained}' is not a diffusers pipeline directory (no model_index.json)"
        )
    if looks_local:
        _check_pipeline_dir(path, model.pretrained)
    return str(path) if looks_local else model.pretrained


def _check_pipeline_dir(path: Path, name: str) -> None:
    """A local directory must hold a readable model_index.json and the Stable Diffusion components."""
    import json

    try:
        index = json.loads((path / "model_index.json").read_text())
    except (OSError, ValueError):
        raise ModelLoadError(f"model.pretrained: '{name}/model_index.json' is not valid JSON") from None
    if not isinstance(index, dict):
        raise ModelLoadError(f"model.pretrained: '{name}/model_index.json' is not a JSON object")
    missing = [c for c in ("unet", "vae", "text_encoder", "tokenizer", "scheduler") if not (path / c).is_dir()]
    if missing:
        raise ModelLoadError(
            f"model.pretrained: '{name}' is not a Stable Diffusion pipeline directory (no {', '.join(missing)} folder)"
        )


def quiet_libraries() -> None:
    """No per-component progress bars or advisory warnings from diffusers/transformers in worker logs."""
    import transformers

    transformers.utils.logging.set_verbosity_error()  # before diffusers imports the CLIP processors
    transformers.utils.logging.disable_progress_bar()
    import diffusers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()


def load_pipeline(model: ModelConfig, device: str | torch.device = "cpu", with_lora: bool = True, seed: int = 0):
    """StableDiffusionPipeline.from_pretrained + a DDIM scheduler from the model's scheduler config,
    frozen VAE and text encoder, and (optionally) peft LoRA adapters on the UNet attention projections."""
    quiet_libraries()
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    device = torch.device(device)
    dtype = DTYPES[model.dtype] if device.type == "cuda" else torch.float32
    source = resolve_model_path(model)
    try:
        pipe = StableDiffusionPipeline.from_pretrained(
            source,
            revision=model.revision,
            dtype=dtype,
            safety_checker=None,
            requires_safety_checker=False,
            local_files_only=model.local_files_only or model.pretrained == "tiny",
        )
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelLoadError(f"model.pretrained: cannot load '{model.pretrained}': {first}") from err
    # set_alpha_to_one=False: with a final alpha of 1 the last step has sigma = 0 and no log-probability.
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, set_alpha_to_one=False)
    pipe.set_progress_bar_config(disable=True)
    for module in (pipe.vae, pipe.text_encoder, pipe.unet):
        module.requires_grad_(False)
    pipe.to(device)
    if with_lora:
        add_lora(pipe.unet, model, seed)
    if model.compile:  # the forward, not the module: callers (and accelerate's wrappers) keep the nn.Module
        pipe.unet.forward = torch.compile(pipe.unet.forward, dynamic=False)
    return pipe


def add_lora(unet, model: ModelConfig, seed: int = 0) -> None:
    """peft LoRA adapters, initialized from `seed` alone (not from whatever the global RNG holds)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        _add_adapter(unet, model)
    for p in unet.parameters():  # LoRA parameters train in float32, whatever the base dtype
        if p.requires_grad:
            p.data = p.data.float()


def _add_adapter(unet, model: ModelConfig) -> None:
    from peft import LoraConfig

    unet.add_adapter(
        LoraConfig(
            r=model.lora_rank,
            lora_alpha=model.lora_alpha,
            init_lora_weights="gaussian",
            target_modules=list(model.lora_target_modules),
        )
    )


def lora_state(unet) -> dict[str, torch.Tensor]:
    """The trainable LoRA tensors (peft names), detached on CPU: what a weight broadcast carries."""
    from peft.utils import get_peft_model_state_dict

    return {k: v.detach().to("cpu", copy=True) for k, v in get_peft_model_state_dict(unet).items()}


def load_lora_state(unet, state: dict[str, torch.Tensor]) -> None:
    from peft.utils import set_peft_model_state_dict

    result = set_peft_model_state_dict(unet, state)
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise ValueError(f"LoRA state has keys the UNet does not: {unexpected[:3]}")


def save_lora_diffusers(unet, directory: str | Path) -> Path:
    """Save the LoRA in the diffusers format (pytorch_lora_weights.safetensors), loadable with
    plain ``StableDiffusionPipeline.load_lora_weights(directory)``."""
    return save_lora_state_diffusers(lora_state(unet), directory)


def save_lora_state_diffusers(state: dict[str, torch.Tensor], directory: str | Path) -> Path:
    """The same, from a peft LoRA state dict (what lora_state returns): no UNet needed."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers

    layers = convert_state_dict_to_diffusers(dict(state))
    StableDiffusionPipeline.save_lora_weights(str(directory), unet_lora_layers=layers, safe_serialization=True)
    return Path(directory) / "pytorch_lora_weights.safetensors"


@torch.no_grad()
def encode_prompts(pipe, prompts: list[str]) -> torch.Tensor:
    """prompts (N) -> text embeddings (N, L, D) from the frozen text encoder."""
    tokens = pipe.tokenizer(
        prompts, padding="max_length", max_length=pipe.tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids.to(pipe.text_encoder.device)
    return pipe.text_encoder(tokens)[0]


def unet_output(
    unet,
    latents: torch.Tensor,
    timesteps: torch.Tensor,
    embeds: torch.Tensor,
    guidance_scale: float = 1.0,
    negative_embeds: torch.Tensor | None = None,
) -> torch.Tensor:
    """UNet prediction (N, C, h, w) for latents (N, C, h, w) at timesteps (N,) with embeds (N, L, D);
    classifier-free guidance when guidance_scale > 1 (negative_embeds (N, L, D) required)."""
    dtype = unet.dtype
    if guidance_scale <= 1.0:
        return unet(latents.to(dtype), timesteps, embeds.to(dtype)).sample
    both = torch.cat([latents, latents]).to(dtype)  # (2N, C, h, w): unconditional, conditional
    out = unet(both, torch.cat([timesteps, timesteps]), torch.cat([negative_embeds, embeds]).to(dtype)).sample
    uncond, cond = out.chunk(2)
    return uncond + guidance_scale * (cond - uncond)
