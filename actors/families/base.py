"""What a model family implements, and what every family shares: loading a diffusers pipeline with
frozen weights and peft LoRA on its denoiser, classifier-free guidance around one denoiser call,
VAE decoding, and the LoRA tensors in and out.

Conditioning: what a family's denoiser needs besides the latents and the timestep, with the batch
as the first axis of every tensor: a tensor (N, L, D) for SD, a NamedTuple of tensors for SDXL and
SD3. ``select_rows``/``repeat_rows``/``expand_rows``/``cat_rows`` treat both alike.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import torch

from actors.config import ModelConfig
from plumbing.console import quiet_libraries  # noqa: F401  (re-exported for actors.policy)
from plumbing.errors import UsageError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

Conditioning = Any  # torch.Tensor (N, ...) or a NamedTuple of such tensors


class ModelLoadError(UsageError):
    """The configured model path or id is not a loadable diffusers pipeline of a supported family."""


class PolicyStep(NamedTuple):
    next_sample: torch.Tensor  # x_{i+1}, (N, C, h, w)
    log_prob: torch.Tensor  # log pi(x_{i+1} | x_i), mean over (C, h, w), (N,)
    pred_original_sample: torch.Tensor  # x0_i, (N, C, h, w)


def _map(cond: Conditioning, fn) -> Conditioning:
    return fn(cond) if isinstance(cond, torch.Tensor) else type(cond)(*(fn(t) for t in cond))


def select_rows(cond: Conditioning, index: torch.Tensor) -> Conditioning:
    return _map(cond, lambda t: t[index])


def repeat_rows(cond: Conditioning, n: int) -> Conditioning:
    """Each row n times in a row: (N, ...) -> (nN, ...), pair-major."""
    return _map(cond, lambda t: t.repeat_interleave(n, dim=0))


def expand_rows(cond: Conditioning, n: int) -> Conditioning:
    """A one-row conditioning (1, ...) seen as n rows (n, ...), without a copy."""
    return _map(cond, lambda t: t.expand(n, *t.shape[1:]))


def cat_rows(first: Conditioning, second: Conditioning) -> Conditioning:
    if isinstance(first, torch.Tensor):
        return torch.cat([first, second])
    return type(first)(*(torch.cat([a, b]) for a, b in zip(first, second)))


class ModelFamily:
    """One diffusers pipeline class and its policy: subclasses set the class attributes and implement
    configure_scheduler, encode_prompts, predict, step_with_logprob and step."""

    name: ClassVar[str]  # the value of model.family
    pipeline_class: ClassVar[str]  # model_index.json `_class_name`
    components: ClassVar[tuple[str, ...]]  # folders a local pipeline directory must hold
    denoiser_name: ClassVar[str] = "unet"  # the pipeline attribute that gets LoRA and is trained
    lora_layers_arg: ClassVar[str] = "unet_lora_layers"  # the save_lora_weights argument that takes them
    pretrained_kwargs: ClassVar[dict] = {}
    upcast_vae: ClassVar[bool] = False  # decode in float32 when the VAE config asks (force_upcast), as SDXL does

    # ------------------------------------------------------------------ loading
    def load(self, source: str, model: ModelConfig, device: torch.device, with_lora: bool, seed: int):
        """from_pretrained, the family's policy scheduler, frozen weights, LoRA on the denoiser."""
        import diffusers

        dtype = DTYPES[model.dtype] if device.type == "cuda" else torch.float32
        local_only = model.local_files_only or model.pretrained == "tiny"
        try:
            index = diffusers.DiffusionPipeline.load_config(
                source, revision=model.revision, local_files_only=local_only
            )
            # components the model ships without (e.g. SD3 without T5: [null, null]) are passed as None, as diffusers
            # asks
            absent = {
                k: None for k, v in index.items() if isinstance(v, (list, tuple)) and len(v) == 2 and v[1] is None
            }
            pipe = getattr(diffusers, self.pipeline_class).from_pretrained(
                source,
                revision=model.revision,
                dtype=dtype,
                local_files_only=local_only,
                **(absent | self.pretrained_kwargs),
            )
        except (OSError, ValueError, TypeError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelLoadError(f"model.pretrained: cannot load '{model.pretrained}': {first}") from err
        return self.prepare(pipe, model, device, with_lora, seed)

    def prepare(self, pipe, model: ModelConfig, device: torch.device, with_lora: bool, seed: int):
        """What `load` does after from_pretrained: frozen weights on `device`, the resolution, the family's
        policy scheduler, gradient checkpointing, LoRA on the denoiser, compile. Also for a pipeline built in memory
        (benchmarks/real_size.py)."""
        dtype = DTYPES[model.dtype] if device.type == "cuda" else torch.float32
        pipe.set_progress_bar_config(disable=True)
        for module in pipe.components.values():
            if isinstance(module, torch.nn.Module):
                module.requires_grad_(False)
        pipe.to(device)
        if self.upcast_vae and getattr(pipe.vae.config, "force_upcast", False) and dtype == torch.float16:
            pipe.vae.to(torch.float32)  # as the SDXL pipeline decodes: its VAE overflows in float16
        if model.resolution is not None:
            scale = pipe.vae_scale_factor
            if model.resolution % (scale * self.latent_multiple(pipe)):
                raise ModelLoadError(
                    f"model.resolution: {model.resolution} is not a multiple of {scale * self.latent_multiple(pipe)} "
                    "for this model"
                )
            pipe.default_sample_size = model.resolution // scale  # the latent side (as SDXL/SD3 pipelines name it)
        self.configure_scheduler(
            pipe
        )  # after the resolution: a schedule may depend on the latent size (FLUX.2's shift)
        denoiser = self.denoiser(pipe)
        if model.gradient_checkpointing:  # in training mode with gradients only: sampling runs as before
            if not getattr(denoiser, "_supports_gradient_checkpointing", False):
                raise ModelLoadError(f"model.gradient_checkpointing: {type(denoiser).__name__} does not support it")
            denoiser.enable_gradient_checkpointing()
        if with_lora:
            add_lora(denoiser, model, seed)
        if model.compile:  # the forward, not the module: callers (and accelerate's wrappers) keep the nn.Module
            denoiser.forward = torch.compile(denoiser.forward, dynamic=False)
        return pipe

    def configure_scheduler(self, pipe) -> None:
        raise NotImplementedError

    def denoiser(self, pipe) -> torch.nn.Module:
        return getattr(pipe, self.denoiser_name)

    def latent_multiple(self, pipe) -> int:
        """The latent side must be a multiple of this (the transformer's patch size)."""
        return 1

    def latent_shape(self, pipe) -> tuple[int, int, int]:
        """(C, h, w): the configured resolution, else the denoiser's native sample size."""
        cfg = self.denoiser(pipe).config
        size = getattr(pipe, "default_sample_size", None) or cfg.sample_size
        return (cfg.in_channels, size, size)

    # ------------------------------------------------------------------ the policy
    def set_timesteps(self, scheduler, num_steps: int) -> torch.Tensor:
        """The scheduler's timesteps for `num_steps` steps, t_0 > ... > t_{T-1}: (T,)."""
        scheduler.set_timesteps(num_steps, device="cpu")
        return scheduler.timesteps.clone()

    def encode_prompts(self, pipe, prompts: list[str]) -> Conditioning:
        raise NotImplementedError

    def predict(self, denoiser, latents: torch.Tensor, timesteps: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """One denoiser call: latents (N, C, h, w) at timesteps (N,) -> prediction (N, C, h, w)."""
        raise NotImplementedError

    def denoise(
        self,
        denoiser,
        latents: torch.Tensor,
        timesteps: torch.Tensor,
        cond: Conditioning,
        guidance_scale: float = 1.0,
        negative: Conditioning | None = None,
    ) -> torch.Tensor:
        """The prediction (N, C, h, w); classifier-free guidance when guidance_scale > 1 (negative required)."""
        if guidance_scale <= 1.0:
            return self.predict(denoiser, latents, timesteps, cond)
        both = torch.cat([latents, latents])  # (2N, C, h, w): unconditional, conditional
        out = self.predict(denoiser, both, torch.cat([timesteps, timesteps]), cat_rows(negative, cond))
        uncond, c = out.chunk(2)
        return uncond + guidance_scale * (c - uncond)

    def step_with_logprob(
        self,
        scheduler,
        model_output,
        sample,
        step_index,
        timesteps,
        eta: float,
        next_sample: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
    ) -> PolicyStep:
        """The stochastic policy step at per-sample step indices (N,) into `timesteps` (T,)."""
        raise NotImplementedError

    def step(self, scheduler, model_output, sample, step_index, timesteps) -> tuple[torch.Tensor, torch.Tensor]:
        """The deterministic step of the held-out evaluation: (x_{i+1}, x0_i)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ decoding
    def decode(self, pipe, latents: torch.Tensor) -> torch.Tensor:
        """VAE-decode latents (n, C, h, w) to images (n, 3, H, W) in about [-1, 1], undoing the VAE's
        scaling and, where it has one, shift (as the SD, SDXL, SD3 and FLUX pipelines decode)."""
        vae = pipe.vae
        shift = getattr(vae.config, "shift_factor", None)
        z = latents.to(vae.device, vae.dtype) / vae.config.scaling_factor
        z = z if shift is None else z + shift
        return vae.decode(z).sample

    # ------------------------------------------------------------------ LoRA out
    def save_lora_state(self, state: dict[str, torch.Tensor], directory, adapter: dict) -> None:
        """Write a peft LoRA state of the denoiser as pytorch_lora_weights.safetensors, loadable with
        the pipeline class's own ``load_lora_weights(directory)``. The keys keep their peft names
        (``lora_A``/``lora_B``), which every family's loader reads: diffusers' older ``lora.down``
        names exist only for attention projections, so converting a state that also adapts
        convolutions gives a file of mixed names whose loader silently drops the attention adapters.
        `adapter` (lora_adapter_metadata) goes in the file's metadata: without it a loader takes alpha
        = rank, and a LoRA trained with another alpha would load at the wrong strength."""
        import diffusers

        metadata_arg = self.lora_layers_arg.replace("_lora_layers", "_lora_adapter_metadata")
        getattr(diffusers, self.pipeline_class).save_lora_weights(
            str(directory), **{self.lora_layers_arg: dict(state), metadata_arg: dict(adapter)}, safe_serialization=True
        )


def lora_adapter_metadata(rank: int, alpha: float, target_modules) -> dict:
    """The LoRA file's adapter metadata, as diffusers reads it back into a peft LoraConfig."""
    targets = target_modules if isinstance(target_modules, str) else sorted(target_modules)  # a regex, or module names
    return {"r": int(rank), "lora_alpha": float(alpha), "target_modules": targets}


def add_lora(denoiser, model: ModelConfig, seed: int = 0) -> None:
    """peft LoRA adapters on the denoiser, initialized from `seed` alone (not from the global RNG)."""
    from peft import LoraConfig

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        denoiser.add_adapter(
            LoraConfig(
                r=model.lora_rank,
                lora_alpha=model.lora_alpha,
                init_lora_weights="gaussian",
                target_modules=list(model.lora_target_modules),
            )
        )
    for p in denoiser.parameters():  # LoRA parameters train in float32, whatever the base dtype
        if p.requires_grad:
            p.data = p.data.float()
