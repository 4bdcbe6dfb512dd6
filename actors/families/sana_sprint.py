"""SANA-Sprint (``SanaSprintPipeline``): a TrigFlow consistency model (sCM) distilled from SANA, 1-4
steps, a linear-attention transformer on the 32-channel DC-AE latents, conditioned on Gemma-2 hidden
states and an embedded guidance scale; sampled by sCM's multistep re-noising (actors.scm) as the
policy. Each step follows diffusers 0.42 (pipelines/sana/pipeline_sana_sprint.py, models/transformers/
sana_transformer.py, schedulers/scheduling_scm.py):

- prompts: ``SanaSprintPipeline.encode_prompt`` with ``__call__``'s defaults: the complex human
  instruction prefixed, 300 tokens kept ([bos] + the last 299), no caption cleaning.
- timesteps: ``SanaSprintPipeline.__call__`` step 4: ``SCMScheduler.set_timesteps`` with
  max_timesteps 1.57080 and, for 2 steps, the intermediate time 1.3; for k != 2 (which the pipeline
  refuses with its defaults) ``set_timesteps``' own linspace(1.57080, 0, k + 1). The loop runs over
  all but the final 0 (``timesteps[:-1]``), as the pipeline's step 7 does.
- initial noise: the pipeline's ``prepare_latents`` times sigma_data, divided by sigma_data again
  before the transformer: here z ~ N(0, I) itself (latents are the pipeline's / sigma_data, see
  actors.scm), which is what ``actors.sampling.initial_noise`` draws (SCMScheduler.init_noise_sigma = 1).
- the denoiser call: ``__call__`` step 7: the TrigFlow time t becomes the flow time
  t_scm = sin t / (cos t + sin t), the input is scaled by sqrt(t_scm^2 + (1 - t_scm)^2), the
  transformer gets t_scm as its timestep (unscaled: SanaSprintPipeline does not apply
  transformer.config.timestep_scale, which only SanaPipeline multiplies in), the embedded guidance and
  the prompt's attention mask, and its flow velocity becomes the TrigFlow prediction F by the
  pipeline's formula (sigma_data cancels, see actors.scm).
- the step: ``SCMScheduler.step`` (x0 = cos t x - sin t F, fresh noise to the next time) as
  actors.scm's eta family: eta = 1 is SCM's own re-noising, eta = 0 the evaluation's deterministic
  step. The scheduler's last step goes to time 0 (x_T = x0, no variance); as DDIM's final alpha below
  1 does for SD, the policy's goes to a final time 0.004 instead, so that it too has a log-probability,
  and its x0_{T-1}, what SDPO scores and the evaluation returns, is the pipeline's output.
- guidance: SANA-Sprint embeds it (``guidance_embeds``); the pipeline passes guidance_scale x
  ``transformer.config.guidance_embeds_scale`` to the transformer. Here the scale is the class
  attribute ``embedded_guidance_scale`` (4.5, the pipeline's default) and travels in the
  conditioning; ``sampling.guidance_scale`` stays what it is for every family, classifier-free
  guidance on top, which SANA-Sprint does not use (keep it at 1).
- decoding: the pipeline decodes (denoised / sigma_data) / vae.config.scaling_factor with the DC-AE;
  since the latents here are already / sigma_data, ``ModelFamily.decode`` (latents / scaling_factor,
  and no shift: the DC-AE has none) is that decoding unchanged.
- LoRA files: ``SanaLoraLoaderMixin.save_lora_weights(transformer_lora_layers=...)``, the same
  ``transformer.``-prefixed peft keys as SD3's and FLUX's (so a checkpoint's inferred format loads too).
"""

from __future__ import annotations

import inspect
from typing import ClassVar, NamedTuple

import torch

from actors.families.base import ModelFamily, ModelLoadError, PolicyStep
from actors.scm import scm_levels, scm_step, scm_step_with_logprob


class SanaConditioning(NamedTuple):
    embeds: (
        torch.Tensor
    )  # (N, L, D): Gemma-2 last hidden states, L = max_sequence_length ([bos] + the last L - 1 tokens)
    mask: torch.Tensor  # (N, L): the tokens' attention mask (1 = token, 0 = padding)
    guidance: torch.Tensor  # (N,): the embedded guidance, embedded_guidance_scale x guidance_embeds_scale


class SanaSprint(ModelFamily):
    name = "sana_sprint"
    pipeline_class = "SanaSprintPipeline"
    components = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
    denoiser_name = "transformer"
    lora_layers_arg = "transformer_lora_layers"
    embedded_guidance_scale: ClassVar[float] = 4.5  # SanaSprintPipeline.__call__'s guidance_scale default
    max_sequence_length: ClassVar[int] = 300  # the pipeline's default
    max_timestep: ClassVar[float] = 1.57080  # the pipeline's (and SCMScheduler.set_timesteps') max_timesteps default
    intermediate_timestep: ClassVar[float] = 1.3  # the pipeline's intermediate_timesteps default (2 steps only)

    def configure_scheduler(self, pipe) -> None:
        """Keep the model's own SCMScheduler; its transformer must embed the guidance, as the pipeline needs."""
        sched = pipe.scheduler
        if type(sched).__name__ != "SCMScheduler" or sched.config.prediction_type != "trigflow":
            raise ModelLoadError(
                f"model.pretrained: the {self.name} family needs an SCMScheduler with prediction_type 'trigflow', got "
                f"{type(sched).__name__} ({sched.config.get('prediction_type')})"
            )
        if not pipe.transformer.config.guidance_embeds:
            raise ModelLoadError(
                "model.pretrained: this SANA transformer has no guidance embedding; SanaSprintPipeline needs one"
            )

    def latent_multiple(self, pipe) -> int:
        return self.denoiser(pipe).config.patch_size

    # ------------------------------------------------------------------ the policy
    def set_timesteps(self, scheduler, num_steps: int) -> torch.Tensor:
        """SanaSprintPipeline's times for `num_steps` steps, without the scheduler's final 0: (T,)."""
        intermediate = self.intermediate_timestep if num_steps == 2 else None
        scheduler.set_timesteps(
            num_steps, device="cpu", max_timesteps=self.max_timestep, intermediate_timesteps=intermediate
        )
        return scheduler.timesteps[:-1].clone()

    @torch.no_grad()
    def encode_prompts(self, pipe, prompts: list[str]) -> SanaConditioning:
        """prompts (N) -> SanaConditioning, through the pipeline's own encode_prompt with __call__'s defaults."""
        instruction = inspect.signature(type(pipe).__call__).parameters["complex_human_instruction"].default
        embeds, mask = pipe.encode_prompt(
            prompts,
            device=pipe.text_encoder.device,
            clean_caption=False,
            max_sequence_length=self.max_sequence_length,
            complex_human_instruction=instruction,
        )
        # as __call__ builds it: a float32 scale cast to the embeddings' dtype, times the transformer's
        # guidance_embeds_scale
        guidance = torch.full((len(prompts),), self.embedded_guidance_scale, device=embeds.device, dtype=torch.float32)
        guidance = guidance.to(embeds.dtype) * pipe.transformer.config.guidance_embeds_scale
        return SanaConditioning(embeds, mask, guidance)

    def predict(self, denoiser, latents, timesteps, cond: SanaConditioning):
        """The TrigFlow prediction F (N, C, h, w), float32, of latents (N, C, h, w) at TrigFlow times (N,)."""
        t = timesteps.float()
        scm_t = torch.sin(t) / (torch.cos(t) + torch.sin(t))  # (N,): the flow time the transformer was trained on
        r = scm_t.view(-1, 1, 1, 1)
        norm = torch.sqrt(r**2 + (1 - r) ** 2)
        model_input = latents * norm  # latents are already the pipeline's latents / sigma_data
        out = denoiser(
            model_input.to(denoiser.dtype),
            encoder_hidden_states=cond.embeds.to(denoiser.dtype),
            encoder_attention_mask=cond.mask,
            guidance=cond.guidance,
            timestep=scm_t,
            return_dict=False,
        )[0]
        # the flow velocity to TrigFlow's F, as __call__ does (before its final * sigma_data, which cancels here)
        return (((1 - 2 * r) * model_input + (1 - 2 * r + 2 * r**2) * out) / norm).float()

    def step_with_logprob(
        self, scheduler, model_output, sample, step_index, timesteps, eta, next_sample=None, noise=None
    ):
        levels = scm_levels(timesteps, scheduler.config.sigma_data)  # (T + 1,)
        step = scm_step_with_logprob(
            model_output, sample, step_index, levels, eta, next_sample=next_sample, noise=noise
        )
        return PolicyStep(step.next_sample, step.log_prob, step.pred_original_sample)

    def step(self, scheduler, model_output, sample, step_index, timesteps):
        out = scm_step(model_output, sample, step_index, scm_levels(timesteps, scheduler.config.sigma_data))
        return out.next_sample, out.pred_original_sample
