"""Stable Diffusion 3 / 3.5 (``StableDiffusion3Pipeline``): a flow-matching MMDiT transformer
conditioned on two CLIP encoders (and T5 when present; without it the pipeline feeds zeros in its
place), sampled through the flow SDE (actors.families.flow)."""

from __future__ import annotations

from typing import NamedTuple

import torch

from actors.families.flow import FlowFamily


class SD3Conditioning(NamedTuple):
    embeds: torch.Tensor  # (N, L_clip + L_t5, D): CLIP hidden states (padded to T5's width) then T5's
    pooled: torch.Tensor  # (N, P): both CLIP encoders' pooled embeddings, concatenated


class StableDiffusion3(FlowFamily):
    name = "sd3"
    pipeline_class = "StableDiffusion3Pipeline"
    components = ("transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler")
    max_sequence_length = 256  # T5 tokens (the pipeline's default), zeros when there is no T5

    @torch.no_grad()
    def encode_prompts(self, pipe, prompts: list[str]) -> SD3Conditioning:
        """prompts (N) -> SD3Conditioning, through the pipeline's own encode_prompt (no guidance branch)."""
        embeds, _, pooled, _ = pipe.encode_prompt(
            prompt=prompts,
            prompt_2=None,
            prompt_3=None,
            device=pipe.text_encoder.device,
            do_classifier_free_guidance=False,
            max_sequence_length=self.max_sequence_length,
        )
        return SD3Conditioning(embeds, pooled)

    def predict(self, denoiser, latents, timesteps, cond: SD3Conditioning):
        dtype = denoiser.dtype
        return denoiser(
            hidden_states=latents.to(dtype),
            timestep=timesteps,
            encoder_hidden_states=cond.embeds.to(dtype),
            pooled_projections=cond.pooled.to(dtype),
        ).sample
