"""SDXL and SDXL-Turbo (``StableDiffusionXLPipeline``): two CLIP text encoders whose penultimate
hidden states are concatenated, the second one's pooled embedding, and the size/crop time ids
(original size, crop top-left, target size), all fed to the UNet as its added conditioning. The
policy step is DDIM with trailing timestep spacing (as SDXL-Turbo's model card samples: its
scheduler config uses trailing spacing; 1-4 steps without guidance). With classifier-free guidance the
negative is the encoded empty prompt, as for the other families (SDXL's own pipeline uses zeros where
its config sets force_zeros_for_empty_prompt)."""

from __future__ import annotations

from typing import NamedTuple

import torch

from actors.families.sd import DDIMFamily


class XLConditioning(NamedTuple):
    embeds: torch.Tensor  # (N, L, D1 + D2): both encoders' penultimate hidden states, concatenated
    pooled: torch.Tensor  # (N, P): the second encoder's projected pooled embedding
    time_ids: torch.Tensor  # (N, 6): (orig_h, orig_w, crop_top, crop_left, target_h, target_w)


class StableDiffusionXL(DDIMFamily):
    name = "sdxl"
    pipeline_class = "StableDiffusionXLPipeline"
    components = ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler")
    # trailing spacing as SDXL-Turbo samples; no x0 clipping (DDIM's default, absent from Euler configs: latents leave
    # [-1, 1])
    scheduler_overrides = {"timestep_spacing": "trailing", "clip_sample": False}
    upcast_vae = True

    @torch.no_grad()
    def encode_prompts(self, pipe, prompts: list[str]) -> XLConditioning:
        """prompts (N) -> XLConditioning, through the pipeline's own encode_prompt (no guidance branch)."""
        embeds, _, pooled, _ = pipe.encode_prompt(
            prompts, device=pipe.text_encoder_2.device, num_images_per_prompt=1, do_classifier_free_guidance=False
        )
        _, h, w = self.latent_shape(pipe)
        H, W = h * pipe.vae_scale_factor, w * pipe.vae_scale_factor
        time_ids = torch.tensor([[H, W, 0, 0, H, W]], dtype=embeds.dtype, device=embeds.device).expand(len(prompts), 6)
        return XLConditioning(embeds, pooled, time_ids.contiguous())

    def predict(self, denoiser, latents, timesteps, cond: XLConditioning):
        dtype = denoiser.dtype
        added = {"text_embeds": cond.pooled.to(dtype), "time_ids": cond.time_ids.to(dtype)}
        return denoiser(latents.to(dtype), timesteps, cond.embeds.to(dtype), added_cond_kwargs=added).sample
