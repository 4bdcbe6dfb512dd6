"""FLUX.1-schnell class (``FluxPipeline``): a flow-matching transformer on 2 x 2-packed latents,
conditioned on T5 hidden states and a CLIP pooled embedding, sampled through the flow SDE
(actors.families.flow). Latents stay (N, C, h, w) everywhere else (the flow step is elementwise);
only the denoiser call packs them into (N, h/2 * w/2, 4C) tokens with their position ids and
unpacks the velocity, as FluxPipeline does. Timesteps follow FluxPipeline: levels
linspace(1, 1/T, T) through the scheduler's fixed shift. Models with a guidance embedding
(FLUX.1-dev: guidance-distilled, 50-step, dynamically shifted) are not few-step and not supported."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from actors.families.base import ModelLoadError
from actors.families.flow import FlowFamily


class FluxConditioning(NamedTuple):
    embeds: torch.Tensor  # (N, L, D): T5 hidden states
    pooled: torch.Tensor  # (N, P): the CLIP text encoder's pooled embedding


def pack_latents(latents: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) -> (N, h/2 * w/2, 4C): each 2 x 2 patch one token (FluxPipeline's packing)."""
    N, C, h, w = latents.shape
    x = latents.view(N, C, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)  # (N, h/2, w/2, C, 2, 2)
    return x.reshape(N, (h // 2) * (w // 2), C * 4)


def unpack_latents(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(N, h/2 * w/2, 4C) -> (N, C, h, w): the inverse of pack_latents."""
    N, _, D = tokens.shape
    x = tokens.view(N, h // 2, w // 2, D // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)  # (N, C, h/2, 2, w/2, 2)
    return x.reshape(N, D // 4, h, w)


def image_ids(h: int, w: int, device, dtype) -> torch.Tensor:
    """(h/2 * w/2, 3) position ids of the packed tokens: (0, row, column)."""
    ids = torch.zeros(h // 2, w // 2, 3)
    ids[..., 1] += torch.arange(h // 2)[:, None]
    ids[..., 2] += torch.arange(w // 2)[None, :]
    return ids.reshape(-1, 3).to(device, dtype)


class Flux(FlowFamily):
    name = "flux"
    pipeline_class = "FluxPipeline"
    components = ("transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler")
    max_sequence_length = 256  # T5 tokens (FLUX.1-schnell's limit)

    def configure_scheduler(self, pipe) -> None:
        super().configure_scheduler(pipe)
        if pipe.transformer.config.guidance_embeds:
            raise ModelLoadError(
                "model.pretrained: this FLUX model has a guidance embedding (FLUX.1-dev class); only models without "
                "one (FLUX.1-schnell class, few-step) are supported"
            )

    def latent_multiple(self, pipe) -> int:
        return 2  # 2 x 2 patches

    def latent_shape(self, pipe) -> tuple[int, int, int]:
        size = pipe.default_sample_size  # FluxPipeline's latent side (128, 1024 px) unless model.resolution sets it
        return (self.denoiser(pipe).config.in_channels // 4, size, size)

    def set_timesteps(self, scheduler, num_steps: int) -> torch.Tensor:
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / num_steps, num_steps), device="cpu")
        return scheduler.timesteps.clone()

    @torch.no_grad()
    def encode_prompts(self, pipe, prompts: list[str]) -> FluxConditioning:
        """prompts (N) -> FluxConditioning, through the pipeline's own encode_prompt."""
        embeds, pooled, _ = pipe.encode_prompt(
            prompt=prompts,
            prompt_2=None,
            device=pipe.text_encoder_2.device,
            max_sequence_length=self.max_sequence_length,
        )
        return FluxConditioning(embeds, pooled)

    def predict(self, denoiser, latents, timesteps, cond: FluxConditioning):
        dtype, (h, w) = denoiser.dtype, latents.shape[-2:]
        out = denoiser(
            hidden_states=pack_latents(latents.to(dtype)),
            timestep=timesteps.to(dtype) / 1000,
            guidance=None,
            pooled_projections=cond.pooled.to(dtype),
            encoder_hidden_states=cond.embeds.to(dtype),
            txt_ids=torch.zeros(cond.embeds.shape[1], 3, device=latents.device, dtype=dtype),
            img_ids=image_ids(h, w, latents.device, dtype),
        ).sample
        return unpack_latents(out, h, w)
