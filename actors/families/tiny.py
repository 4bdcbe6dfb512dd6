"""Tiny SDXL, SD3 and FLUX pipelines for offline tests: the real architectures (two CLIP encoders and
a text-time UNet; an MMDiT transformer on a 16-channel VAE with a shift factor, without T5; a FLUX
transformer on packed latents with CLIP and a small T5 and its own tokenizer), built
from configs with random weights and a fixed seed, saved with ``save_pretrained`` and loaded back
through the family's ``from_pretrained`` path like a real model.

Shapes: SDXL latents (4, 16, 16), SD3 latents (16, 16, 16); images (32, 32, 3). FLUX takes its size
from model.resolution (FluxPipeline's default is 1024): at 32, latents (4, 16, 16).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from actors.tiny_model import _write_char_tokenizer, build_once

TINY_VERSIONS = {"sdxl": "tiny-sdxl-v1", "sd3": "tiny-sd3-v1", "flux": "tiny-flux-v1"}  # cache keys: bump when a build changes
_SEED = 4321


def _tokenizer(directory: Path):
    from transformers import CLIPTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    _write_char_tokenizer(directory)
    return CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"), model_max_length=16)


def _clip_config(tokenizer, hidden: int = 32, projection: int = 32):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=16, projection_dim=projection,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )


def _vae(latent_channels: int, **extra):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(16, 32), down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=latent_channels, norm_num_groups=8, sample_size=32, **extra,
    )


def build_tiny_sdxl(directory: Path, work: Path) -> None:
    """A StableDiffusionXLPipeline with SDXL-Turbo's scheduler config (Euler ancestral, trailing spacing)."""
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = _tokenizer(work / "tok")
    torch.manual_seed(_SEED)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, transformer_layers_per_block=(1, 2), norm_num_groups=16,
        cross_attention_dim=64,  # both encoders' hidden states, concatenated: 32 + 32
        addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + 32,  # six time ids x 8 + the pooled embedding
    )
    scheduler = EulerAncestralDiscreteScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        prediction_type="epsilon", timestep_spacing="trailing", steps_offset=1,
    )
    pipe = StableDiffusionXLPipeline(
        vae=_vae(4, scaling_factor=0.13025, force_upcast=True),
        text_encoder=CLIPTextModel(_clip_config(tokenizer)), text_encoder_2=CLIPTextModelWithProjection(_clip_config(tokenizer)),
        tokenizer=tokenizer, tokenizer_2=tokenizer, unet=unet, scheduler=scheduler,
    )
    pipe.save_pretrained(directory, safe_serialization=True)


def build_tiny_sd3(directory: Path, work: Path) -> None:
    """A StableDiffusion3Pipeline without T5 (text_encoder_3 = None), SD3.5's flow scheduler (shift 3)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    tokenizer = _tokenizer(work / "tok")
    torch.manual_seed(_SEED)
    transformer = SD3Transformer2DModel(
        sample_size=16, patch_size=2, in_channels=16, out_channels=16, num_layers=2, attention_head_dim=8,
        num_attention_heads=4, caption_projection_dim=32,
        joint_attention_dim=64,  # the CLIP hidden states, concatenated (32 + 32), are padded to this width
        pooled_projection_dim=64,  # both encoders' pooled projections, concatenated
        pos_embed_max_size=16,
    )
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0),
        vae=_vae(16, scaling_factor=1.5305, shift_factor=0.0609, use_quant_conv=False, use_post_quant_conv=False),
        text_encoder=CLIPTextModelWithProjection(_clip_config(tokenizer)), tokenizer=tokenizer,
        text_encoder_2=CLIPTextModelWithProjection(_clip_config(tokenizer)), tokenizer_2=tokenizer,
        text_encoder_3=None, tokenizer_3=None,
    )
    pipe.save_pretrained(directory, safe_serialization=True)


def build_tiny_flux(directory: Path, work: Path) -> None:
    """A FluxPipeline of the FLUX.1-schnell class: no guidance embedding, a fixed shift of 1."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel, T5Config, T5EncoderModel, T5TokenizerFast

    tokenizer = _tokenizer(work / "tok")
    # a character-level T5 vocabulary (the pad, end and unknown tokens first, as T5 numbers them)
    t5_vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -1.0)] + [(chr(c), -1.0) for c in range(33, 127)]
    t5_tokenizer = T5TokenizerFast(vocab=t5_vocab, extra_ids=0)
    torch.manual_seed(_SEED)
    t5 = T5EncoderModel(
        T5Config(vocab_size=len(t5_tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, pad_token_id=0, eos_token_id=1)
    )
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=32,  # the T5 width
        pooled_projection_dim=32,  # the CLIP width
        guidance_embeds=False, axes_dims_rope=(4, 4, 8),  # rotary dims per position id axis: sum = head dim
    )
    pipe = FluxPipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0),
        vae=_vae(4, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False),
        text_encoder=CLIPTextModel(_clip_config(tokenizer)), tokenizer=tokenizer,
        text_encoder_2=t5, tokenizer_2=t5_tokenizer,
    )
    pipe.save_pretrained(directory, safe_serialization=True)


BUILDERS = {"sdxl": build_tiny_sdxl, "sd3": build_tiny_sd3, "flux": build_tiny_flux}


def ensure_tiny_family(family: str, cache_dir: str | Path) -> Path:
    """The directory of the saved tiny pipeline of `family` ('sdxl', 'sd3' or 'flux'), built once (atomically) if absent."""
    target = Path(os.path.expanduser(str(cache_dir))) / TINY_VERSIONS[family]

    def build(directory: Path) -> None:
        with tempfile.TemporaryDirectory(prefix=".work-", dir=directory.parent) as work:  # the builders' scratch files
            BUILDERS[family](directory, Path(work))

    return build_once(target, build)
