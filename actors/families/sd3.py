"""Stable Diffusion 3 / 3.5 (``StableDiffusion3Pipeline``): a flow-matching MMDiT transformer
conditioned on two CLIP encoders (and T5 when present; without it the pipeline feeds zeros in its
place), sampled through the flow SDE of actors.flow_sde as the policy and the flow ODE's Euler step
for evaluation. SamplingConfig.eta is the SDE noise level a."""

from __future__ import annotations

from typing import NamedTuple

import torch

from actors.families.base import ModelFamily, ModelLoadError, PolicyStep
from actors.flow_sde import flow_levels, flow_ode_step, flow_sde_step_with_logprob


class SD3Conditioning(NamedTuple):
    embeds: torch.Tensor  # (N, L_clip + L_t5, D): CLIP hidden states (padded to T5's width) then T5's
    pooled: torch.Tensor  # (N, P): both CLIP encoders' pooled embeddings, concatenated


class StableDiffusion3(ModelFamily):
    name = "sd3"
    pipeline_class = "StableDiffusion3Pipeline"
    components = ("transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler")
    denoiser_name = "transformer"
    lora_layers_arg = "transformer_lora_layers"
    max_sequence_length = 256  # T5 tokens (the pipeline's default), zeros when there is no T5

    def configure_scheduler(self, pipe) -> None:
        """Keep the model's own flow scheduler (its shift sets the levels); a resolution-dependent
        (dynamic) shift is not supported."""
        cfg = pipe.scheduler.config
        if type(pipe.scheduler).__name__ != "FlowMatchEulerDiscreteScheduler" or cfg.get("use_dynamic_shifting"):
            raise ModelLoadError(
                f"model.pretrained: the sd3 family needs a FlowMatchEulerDiscreteScheduler with a fixed shift, got "
                f"{type(pipe.scheduler).__name__}{' with dynamic shifting' if cfg.get('use_dynamic_shifting') else ''}"
            )

    def latent_multiple(self, pipe) -> int:
        return self.denoiser(pipe).config.patch_size

    @torch.no_grad()
    def encode_prompts(self, pipe, prompts: list[str]) -> SD3Conditioning:
        """prompts (N) -> SD3Conditioning, through the pipeline's own encode_prompt (no guidance branch)."""
        embeds, _, pooled, _ = pipe.encode_prompt(
            prompt=prompts, prompt_2=None, prompt_3=None, device=pipe.text_encoder.device,
            do_classifier_free_guidance=False, max_sequence_length=self.max_sequence_length,
        )
        return SD3Conditioning(embeds, pooled)

    def predict(self, denoiser, latents, timesteps, cond: SD3Conditioning):
        dtype = denoiser.dtype
        return denoiser(
            hidden_states=latents.to(dtype), timestep=timesteps, encoder_hidden_states=cond.embeds.to(dtype),
            pooled_projections=cond.pooled.to(dtype),
        ).sample

    def step_with_logprob(self, scheduler, model_output, sample, step_index, timesteps, eta, next_sample=None, noise=None):
        levels = flow_levels(timesteps, scheduler.config.num_train_timesteps)  # (T + 1,)
        step = flow_sde_step_with_logprob(model_output, sample, step_index, levels, eta, next_sample=next_sample, noise=noise)
        return PolicyStep(step.next_sample, step.log_prob, step.pred_original_sample)

    def step(self, scheduler, model_output, sample, step_index, timesteps):
        out = flow_ode_step(model_output, sample, step_index, flow_levels(timesteps, scheduler.config.num_train_timesteps))
        return out.next_sample, out.pred_original_sample

    def save_lora_state(self, state, directory) -> None:
        """SD3's LoRA files keep peft's key names (what diffusers' SD3 LoRA training writes)."""
        from diffusers import StableDiffusion3Pipeline

        StableDiffusion3Pipeline.save_lora_weights(str(directory), transformer_lora_layers=dict(state), safe_serialization=True)
