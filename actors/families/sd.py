"""Stable Diffusion 1.x/2.x and SD-Turbo (``StableDiffusionPipeline``): one CLIP text encoder, a
UNet predicting epsilon, v or the sample, and the DDIM step with eta > 0 as the policy (actors.ddim)."""

from __future__ import annotations

import torch

from actors.ddim import ddim_step, ddim_step_with_logprob
from actors.families.base import ModelFamily, PolicyStep


class DDIMFamily(ModelFamily):
    """UNet families sampled by DDIM: the scheduler is a DDIMScheduler built from the model's own
    scheduler config, with a final alpha below 1 so that the last step has a log-probability."""

    scheduler_overrides: dict = {}

    def configure_scheduler(self, pipe) -> None:
        from diffusers import DDIMScheduler

        # set_alpha_to_one=False: with a final alpha of 1 the last step has sigma = 0 and no log-probability.
        pipe.scheduler = DDIMScheduler.from_config(
            pipe.scheduler.config, set_alpha_to_one=False, **self.scheduler_overrides
        )

    def step_with_logprob(
        self, scheduler, model_output, sample, step_index, timesteps, eta, next_sample=None, noise=None
    ):
        step = ddim_step_with_logprob(
            model_output,
            sample,
            step_index,
            timesteps,
            scheduler.alphas_cumprod,
            float(scheduler.final_alpha_cumprod),
            eta,
            scheduler.config.prediction_type,
            next_sample=next_sample,
            noise=noise,
        )
        return PolicyStep(step.next_sample, step.log_prob, step.pred_original_sample)

    def step(self, scheduler, model_output, sample, step_index, timesteps):
        out = ddim_step(
            model_output,
            sample,
            step_index,
            timesteps,
            scheduler.alphas_cumprod,
            float(scheduler.final_alpha_cumprod),
            scheduler.config.prediction_type,
        )
        return out.next_sample, out.pred_original_sample


class StableDiffusion(DDIMFamily):
    name = "sd"
    pipeline_class = "StableDiffusionPipeline"
    components = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
    pretrained_kwargs = {"safety_checker": None, "requires_safety_checker": False}

    @torch.no_grad()
    def encode_prompts(self, pipe, prompts: list[str]) -> torch.Tensor:
        """prompts (N) -> text embeddings (N, L, D) from the frozen text encoder."""
        tokens = pipe.tokenizer(
            prompts,
            padding="max_length",
            max_length=pipe.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(pipe.text_encoder.device)
        return pipe.text_encoder(tokens)[0]

    def predict(self, denoiser, latents, timesteps, cond):
        dtype = denoiser.dtype
        return denoiser(latents.to(dtype), timesteps, cond.to(dtype)).sample
