"""Config sections consumed by the rollout side (model, sampler, rollout actors, prompts)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from plumbing.config import Section


class ModelConfig(Section):
    pretrained: str = Field(
        "tiny",
        description="Hub id or local directory of a diffusers pipeline of a supported family "
        "(StableDiffusionPipeline, StableDiffusionXLPipeline, StableDiffusion3Pipeline, FluxPipeline, "
        "Flux2KleinPipeline, SanaSprintPipeline); 'tiny' builds (once, offline) and loads the embedded tiny "
        "SD-architecture pipeline (random weights); 'shapes' loads the committed tiny text-to-image model pretrained "
        "on the shapes task (shapes/assets/shapes-sd); 'shapes-turbo' its few-step student, distilled from it as "
        "SD-Turbo is from SD (scripts/shapes_distill.py).",
    )
    family: Literal["auto", "sd", "sdxl", "sd3", "flux", "flux2_klein", "sana_sprint"] = Field(
        "auto", description="Model family; 'auto' reads it from the model's model_index.json `_class_name`."
    )
    resolution: int | None = Field(
        None,
        ge=8,
        le=4096,
        description="Image side in pixels (e.g. 512 for SDXL-Turbo, whose UNet config says 1024); None = the "
        "denoiser's native size.",
    )
    revision: str | None = Field(None, description="Hub revision of `pretrained` (ignored for local dirs).")
    tiny_cache_dir: str = Field(
        "~/.cache/sdpo-ray/tiny-sd",
        description="Where the embedded tiny pipeline is saved with save_pretrained and loaded back from.",
    )
    dtype: Literal["float32", "float16", "bfloat16"] = Field(
        "float32", description="Dtype of the frozen weights on GPU (always float32 on CPU)."
    )
    lora_rank: int = Field(4, ge=1, le=4096, description="LoRA rank of the denoiser's (UNet or transformer) adapters.")
    lora_alpha: float = Field(4.0, gt=0, description="LoRA alpha (scale = alpha / rank).")
    lora_target_modules: tuple[str, ...] = Field(
        ("to_q", "to_k", "to_v", "to_out.0"),
        description="Denoiser modules that get LoRA adapters (peft target_modules): the attention projections by "
        "default; a UNet's resnet convolutions are `conv1`, `conv2`.",
    )
    local_files_only: bool = Field(
        False, description="Never touch the network when loading `pretrained` (set HF_HUB_OFFLINE=1 too)."
    )
    compile: bool = Field(
        False,
        description="torch.compile the denoiser's forward (dynamic=False) in every worker. On an H200 at SD-Turbo "
        "size: 1.25x rollout and, with train.micro_batch_size=8, 4.2x update throughput, after a one-time compile of "
        "about 2 minutes per worker (benchmarks/results/gpu_optim_H200*.json). Meant for GPU runs.",
    )
    gradient_checkpointing: bool = Field(
        False,
        description="Recompute the denoiser's block activations in the backward pass (diffusers' "
        "enable_gradient_checkpointing) instead of keeping them: less update memory, more compute; sampling is "
        "unaffected. For a preset that does not fit its GPU (python -m benchmarks.gpu_throughput --fits says which "
        "do).",
    )


class SamplingConfig(Section):
    num_steps: int = Field(50, ge=2, le=1000, description="T: denoising steps per trajectory.")
    eta: float = Field(
        1.0,
        gt=0,
        le=1.0,
        description="DDIM eta (SD, SDXL), the flow SDE's noise level a (SD3, FLUX), or for SANA-Sprint the fresh "
        "noise's share of sCM's re-noising (std eta sin s; 1 = SCMScheduler's own); > 0 makes the sampler a "
        "stochastic policy.",
    )
    guidance_scale: float = Field(1.0, ge=1.0, description="Classifier-free guidance scale (1 = no CFG).")
    num_anchors: int = Field(
        1,
        ge=0,
        le=1000,
        description="Anchor states between the first and last step (paper: 1; 0 queries the first and last step only).",
    )
    reward_queries: Literal["auto", "anchors", "final"] = Field(
        "auto",
        description="Which states the reward model scores. 'anchors' (SDPO): the decoded predicted clean states x0 of "
        "the first step, the anchors and the last step; 'final' (DDPO as ddpo-pytorch): the decoded final latent x_T "
        "alone. 'auto': the algorithm's own.",
    )
    similarity_floor: float = Field(
        1e-3, gt=0, le=1, description="Cosine similarities are clamped to at least this before the dense fill."
    )


class PromptConfig(Section):
    source: str = Field(
        "simple_animals",
        description="Built-in prompt list ('simple_animals', 'complex_animals') or a path to a text file, one prompt "
        "per line.",
    )


class RolloutConfig(Section):
    num_actors: int = Field(
        2,
        ge=0,
        le=4096,
        description="Number of rollout actors (0 in the hybrid layout, where the policy workers sample).",
    )
    num_cpus: float = Field(0.5, gt=0, le=4096, description="CPUs reserved per rollout actor (fractions allowed).")
    num_gpus: float = Field(0.0, ge=0, le=4096, description="GPUs per rollout actor (fractions share a GPU).")
    pairs_per_epoch: int = Field(
        8, ge=1, le=1_000_000, description="B: trajectory pairs (prompts) sampled per epoch, over all actors."
    )
    chunk_size: int = Field(4, ge=1, le=4096, description="Pairs sampled together in one batched rollout call.")
    torch_threads: int = Field(1, ge=1, le=1024, description="torch intra-op threads inside each CPU rollout actor.")
    max_restarts: int = Field(
        3,
        ge=0,
        le=1_000_000,
        description="Times Ray restarts a crashed rollout actor; its unfinished pairs are sampled again.",
    )
    restart_timeout_s: float = Field(
        600.0,
        gt=0,
        le=604_800,
        description="Give up on a crashed rollout actor that is not back with the current weights within this time.",
    )

    @model_validator(mode="after")
    def _chunks_divide(self) -> "RolloutConfig":
        if self.pairs_per_epoch % self.chunk_size:
            raise ValueError(
                f"rollout.pairs_per_epoch ({self.pairs_per_epoch}) must be a multiple of "
                f"rollout.chunk_size ({self.chunk_size})"
            )
        return self
