"""What every flow-matching family shares: the model's own FlowMatchEulerDiscreteScheduler with a
fixed shift, the flow SDE step of actors.flow_sde as the policy (SamplingConfig.eta is its noise
level a), the flow ODE's Euler step for evaluation, and LoRA files in peft's key names under
``transformer`` (what diffusers' flow LoRA training scripts write)."""

from __future__ import annotations

from actors.families.base import ModelFamily, ModelLoadError, PolicyStep
from actors.flow_sde import flow_levels, flow_ode_step, flow_sde_step_with_logprob


class FlowFamily(ModelFamily):
    denoiser_name = "transformer"
    lora_layers_arg = "transformer_lora_layers"

    def configure_scheduler(self, pipe) -> None:
        """Keep the model's own flow scheduler (its shift sets the levels); a resolution-dependent
        (dynamic) shift is not supported."""
        cfg = pipe.scheduler.config
        if type(pipe.scheduler).__name__ != "FlowMatchEulerDiscreteScheduler" or cfg.get("use_dynamic_shifting"):
            raise ModelLoadError(
                f"model.pretrained: the {self.name} family needs a FlowMatchEulerDiscreteScheduler with a fixed "
                "shift, got "
                f"{type(pipe.scheduler).__name__}{' with dynamic shifting' if cfg.get('use_dynamic_shifting') else ''}"
            )

    def latent_multiple(self, pipe) -> int:
        return self.denoiser(pipe).config.patch_size

    def step_with_logprob(
        self, scheduler, model_output, sample, step_index, timesteps, eta, next_sample=None, noise=None
    ):
        levels = flow_levels(timesteps, scheduler.config.num_train_timesteps)  # (T + 1,)
        step = flow_sde_step_with_logprob(
            model_output, sample, step_index, levels, eta, next_sample=next_sample, noise=noise
        )
        return PolicyStep(step.next_sample, step.log_prob, step.pred_original_sample)

    def step(self, scheduler, model_output, sample, step_index, timesteps):
        out = flow_ode_step(
            model_output, sample, step_index, flow_levels(timesteps, scheduler.config.num_train_timesteps)
        )
        return out.next_sample, out.pred_original_sample
