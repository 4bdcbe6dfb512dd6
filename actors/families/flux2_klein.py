"""FLUX.2 [klein] (``Flux2KleinPipeline``; FLUX.2-klein-4B: 4-step distilled, sampled without
guidance): a flow-matching transformer on 2 x 2-patchified, batch-norm-standardized latents,
conditioned on a Qwen3 text encoder's hidden states, sampled through the flow SDE
(actors.families.flow). Each step follows diffusers 0.42; files under ``diffusers/``, the pipeline's
``pipelines/flux2/pipeline_flux2_klein.py`` (``Flux2KleinPipeline.__call__`` unless a function is named):

1. Prompts: the pipeline's own ``encode_prompt`` (``_get_qwen3_prompt_embeds``): each prompt in the
   tokenizer's chat template (one user turn, the generation prompt, thinking off), padded to
   ``max_sequence_length`` = 512 tokens, and the hidden states of the text encoder's layers
   (9, 18, 27) stacked per token: (N, 512, 3 D_qwen).
2. Latents: the pipeline draws its noise directly in the transformer's space, (N, 4 C_vae, H/16, W/16)
   (``prepare_latents``): the VAE latent patchified 2 x 2 into channels and standardized by the VAE's
   batch-norm statistics (as ``_encode_vae_image`` maps an image there). That is this family's
   latent (N, C, h, w) everywhere; the flow step is elementwise, so only the denoiser call packs it
   into (N, h w, C) tokens (``_pack_latents``) with 4-axis position ids (t, row, column, l) =
   (0, i, j, 0) (``_prepare_latent_ids``) and the text's (0, 0, 0, l) (``_prepare_text_ids``), the
   rotary axes of ``models/transformers/transformer_flux2.py`` (``Flux2PosEmbed``), and unpacks the
   velocity (what ``_unpack_latents_with_ids`` does for these row-major ids).
3. Timesteps: sigmas linspace(1, 1/T, T) through the scheduler's dynamic (exponential) shift with
   ``mu = compute_empirical_mu(h w, T)`` (``__call__`` step 6, ``retrieve_timesteps``;
   ``schedulers/scheduling_flow_match_euler_discrete.py``, ``set_timesteps``: time_shift(mu, 1, sigma),
   timesteps = 1000 sigma). mu depends on the image's token count, fixed at a fixed resolution:
   ``configure_scheduler`` records h w on the scheduler (``scheduler.image_seq_len``) for the
   configured latent size, and ``set_timesteps`` passes the pipeline's mu for each T. The policy's
   levels are t / 1000 (actors.flow_sde), the evaluation step the scheduler's Euler step.
4. The denoiser call (``__call__`` step 7): timestep / 1000 (``Flux2Transformer2DModel.forward``
   scales it back by 1000 for its embedding) and ``guidance=None``: klein has no guidance embedding.
   The distilled model (model_index ``is_distilled``) is sampled without CFG (the pipeline ignores
   guidance_scale); sampling.guidance_scale > 1 applies CFG against the empty prompt with the
   pipeline's formula, as for the undistilled klein base models.
5. Decoding (after ``__call__``'s loop): the batch-norm standardization undone with the VAE's running
   statistics (``models/autoencoders/autoencoder_kl_flux2.py``, ``AutoencoderKLFlux2.bn``), unpatchified
   (``_unpatchify_latents``), then ``vae.decode``: no scaling or shift factor, unlike FLUX.1.
6. LoRA files: ``Flux2LoraLoaderMixin.save_lora_weights(transformer_lora_layers=...)``
   (``loaders/lora_pipeline.py``), peft's names under ``transformer.``, which its ``load_lora_weights``
   reads as they are (the format SD3's and FLUX.1's writers produce, so a checkpoint's inferred format
   loads too).
"""

from __future__ import annotations

import numpy as np
import torch

from actors.families.base import ModelLoadError
from actors.families.flow import FlowFamily


def pack_latents(latents: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) -> (N, h w, C): one token per latent position, row-major (``_pack_latents``)."""
    N, C, h, w = latents.shape
    return latents.reshape(N, C, h * w).permute(0, 2, 1)


def unpack_latents(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(N, h w, C) -> (N, C, h, w): the inverse of pack_latents."""
    N, _, C = tokens.shape
    return tokens.permute(0, 2, 1).reshape(N, C, h, w)


def latent_ids(h: int, w: int, device) -> torch.Tensor:
    """(h w, 4) position ids (t, row, column, l) = (0, i, j, 0) of the packed latent tokens
    (``_prepare_latent_ids``)."""
    return torch.cartesian_prod(torch.arange(1), torch.arange(h), torch.arange(w), torch.arange(1)).to(device)


def text_ids(length: int, device) -> torch.Tensor:
    """(L, 4) position ids (0, 0, 0, l) of the text tokens (``_prepare_text_ids``)."""
    return torch.cartesian_prod(torch.arange(1), torch.arange(1), torch.arange(1), torch.arange(length)).to(device)


def unpatchify(latents: torch.Tensor) -> torch.Tensor:
    """(N, 4C, h, w) -> (N, C, 2h, 2w): each channel quadruple back to its 2 x 2 patch (``_unpatchify_latents``)."""
    N, C4, h, w = latents.shape
    x = latents.reshape(N, C4 // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)  # (N, C, h, 2, w, 2)
    return x.reshape(N, C4 // 4, 2 * h, 2 * w)


class Flux2Klein(FlowFamily):
    name = "flux2_klein"
    pipeline_class = "Flux2KleinPipeline"
    components = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
    max_sequence_length = 512  # Qwen3 tokens of the chat-templated prompt (the pipeline's default)

    def configure_scheduler(self, pipe) -> None:
        """Keep the model's flow scheduler, dynamic shift included, and record the image's token count
        h w that its shift mu depends on (called after model.resolution has set the latent size)."""
        if type(pipe.scheduler).__name__ != "FlowMatchEulerDiscreteScheduler":
            raise ModelLoadError(
                f"model.pretrained: the {self.name} family needs a FlowMatchEulerDiscreteScheduler, got "
                f"{type(pipe.scheduler).__name__}"
            )
        _, h, w = self.latent_shape(pipe)
        pipe.scheduler.image_seq_len = h * w

    def latent_multiple(self, pipe) -> int:
        return 2  # 2 x 2 patches of the VAE latent

    def latent_shape(self, pipe) -> tuple[int, int, int]:
        size = pipe.default_sample_size  # the VAE latent's side (128, 1024 px) unless model.resolution sets it
        return (self.denoiser(pipe).config.in_channels, size // 2, size // 2)

    def set_timesteps(self, scheduler, num_steps: int) -> torch.Tensor:
        from diffusers.pipelines.flux2.pipeline_flux2_klein import compute_empirical_mu

        if not hasattr(scheduler, "image_seq_len"):
            raise RuntimeError(
                f"the {self.name} scheduler has no image_seq_len: load the pipeline through ModelFamily.load"
            )
        mu = compute_empirical_mu(image_seq_len=scheduler.image_seq_len, num_steps=num_steps)
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / num_steps, num_steps), device="cpu", mu=mu)
        return scheduler.timesteps.clone()

    @torch.no_grad()
    def encode_prompts(self, pipe, prompts: list[str]) -> torch.Tensor:
        """prompts (N) -> Qwen3 hidden states (N, L, 3 D_qwen), through the pipeline's own encode_prompt."""
        embeds, _ = pipe.encode_prompt(
            prompt=prompts, device=pipe.text_encoder.device, max_sequence_length=self.max_sequence_length
        )
        return embeds

    def predict(self, denoiser, latents, timesteps, cond: torch.Tensor):
        dtype, (h, w) = denoiser.dtype, latents.shape[-2:]
        out = denoiser(
            hidden_states=pack_latents(latents.to(dtype)),
            timestep=timesteps.to(dtype) / 1000,
            guidance=None,
            encoder_hidden_states=cond.to(dtype),
            txt_ids=text_ids(cond.shape[1], latents.device),
            img_ids=latent_ids(h, w, latents.device),
        ).sample  # (N, h w, C)
        return unpack_latents(out, h, w)

    def vae_latents(self, pipe, latents: torch.Tensor) -> torch.Tensor:
        """The policy's latents (n, 4C, h, w) as the VAE's (n, C, 2h, 2w), in the VAE's dtype: the
        batch-norm standardization undone, then unpatchified."""
        vae = pipe.vae
        z = latents.to(vae.device, vae.dtype)
        mean = vae.bn.running_mean.view(1, -1, 1, 1).to(z)
        std = torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1) + vae.config.batch_norm_eps).to(z)
        return unpatchify(z * std + mean)

    def decode(self, pipe, latents: torch.Tensor) -> torch.Tensor:
        return pipe.vae.decode(self.vae_latents(pipe, latents)).sample
