"""Tiny SDXL, SD3, FLUX, FLUX.2-klein and SANA-Sprint pipelines for offline tests: the real architectures
(two CLIP encoders and a text-time UNet; an MMDiT transformer on a 16-channel VAE with a shift factor,
without T5; a FLUX transformer on packed latents with CLIP and a small T5 and its own tokenizer; a FLUX.2
transformer with a Qwen3 text encoder and the FLUX.2 VAE; a linear-attention SANA transformer with a
Gemma-2 text encoder and a DC-AE), built from configs with random weights and a fixed seed, saved with
``save_pretrained`` and loaded back through the family's ``from_pretrained`` path like a real model.

Shapes: SDXL latents (4, 16, 16), SD3 latents (16, 16, 16); images (32, 32, 3). FLUX takes its size
from model.resolution (FluxPipeline's default is 1024): at 32, latents (4, 16, 16).
FLUX.2-klein likewise: at 32, latents (16, 8, 8), its VAE's (4, 16, 16) 2 x 2-patchified.
SANA-Sprint: latents (4, 16, 16) (a DC-AE halving once) of (32, 32, 3) images, as its transformer's sample size says.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from actors.families.tiny_tokenizers import instruction_tokenizer, qwen_tokenizer, t5_char_tokenizer
from actors.tiny_model import build_once, char_clip_config, char_clip_tokenizer

_SEED = 4321


# ------------------------------------------------------------------------ the shared parts
def _clip(tokenizer, with_projection: bool = False):
    """A 32-wide char-level CLIP text encoder; `with_projection`: CLIPTextModelWithProjection."""
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(char_clip_config(tokenizer, 32))


def _vae(latent_channels: int, cls=None, **extra):
    """A two-block VAE of 32 x 32 images, halving once: an AutoencoderKL, or `cls` of the same arguments."""
    from diffusers import AutoencoderKL

    return (cls or AutoencoderKL)(
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 32),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=8,
        sample_size=32,
        **extra,
    )


def published_scheduler(family: str):
    """The scheduler the published model of `family` ships with (SDXL-Turbo, SD3.5-Large-Turbo,
    FLUX.1-schnell, FLUX.2-klein, SANA-Sprint): the tiny builds here and the real-size ones
    (benchmarks/real_size.py) both use it."""
    import diffusers

    flow = diffusers.FlowMatchEulerDiscreteScheduler
    if family == "sdxl":  # Euler ancestral, trailing spacing
        return diffusers.EulerAncestralDiscreteScheduler(
            num_train_timesteps=1000,
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            prediction_type="epsilon",
            timestep_spacing="trailing",
            steps_offset=1,
        )
    if family == "sd3":
        return flow(num_train_timesteps=1000, shift=3.0)
    if family == "flux":  # schnell: a fixed shift of 1
        return flow(num_train_timesteps=1000, shift=1.0)
    if family == "flux2_klein":  # the pipeline passes mu, so shift and base/max_shift go unused
        return flow(
            num_train_timesteps=1000,
            shift=3.0,
            use_dynamic_shifting=True,
            time_shift_type="exponential",
            base_shift=0.5,
            max_shift=1.15,
            base_image_seq_len=256,
            max_image_seq_len=4096,
        )
    if family == "sana_sprint":  # TrigFlow, sigma_data 0.5
        return diffusers.SCMScheduler()
    raise ValueError(f"no published scheduler for family '{family}'")


# ------------------------------------------------------------------------ the families
# Each function returns its family's pipeline, with torch seeded before it is called: the order in which
# it constructs the models fixes their weights.
def _sdxl(work: Path):
    """A StableDiffusionXLPipeline with SDXL-Turbo's scheduler config (Euler ancestral, trailing spacing)."""
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel

    tokenizer = char_clip_tokenizer(work / "tok", 16)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        transformer_layers_per_block=(1, 2),
        norm_num_groups=16,
        cross_attention_dim=64,  # both encoders' hidden states, concatenated: 32 + 32
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + 32,  # six time ids x 8 + the pooled embedding
    )
    scheduler = published_scheduler("sdxl")
    return StableDiffusionXLPipeline(
        vae=_vae(4, scaling_factor=0.13025, force_upcast=True),
        text_encoder=_clip(tokenizer),
        text_encoder_2=_clip(tokenizer, with_projection=True),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=scheduler,
    )


def _sd3(work: Path):
    """A StableDiffusion3Pipeline without T5 (text_encoder_3 = None), SD3.5's flow scheduler (shift 3)."""
    from diffusers import SD3Transformer2DModel, StableDiffusion3Pipeline

    tokenizer = char_clip_tokenizer(work / "tok", 16)
    transformer = SD3Transformer2DModel(
        sample_size=16,
        patch_size=2,
        in_channels=16,
        out_channels=16,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_projection_dim=32,
        joint_attention_dim=64,  # the CLIP hidden states, concatenated (32 + 32), are padded to this width
        pooled_projection_dim=64,  # both encoders' pooled projections, concatenated
        pos_embed_max_size=16,
    )
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=published_scheduler("sd3"),
        vae=_vae(16, scaling_factor=1.5305, shift_factor=0.0609, use_quant_conv=False, use_post_quant_conv=False),
        text_encoder=_clip(tokenizer, with_projection=True),
        tokenizer=tokenizer,
        text_encoder_2=_clip(tokenizer, with_projection=True),
        tokenizer_2=tokenizer,
        text_encoder_3=None,
        tokenizer_3=None,
    )


def _flux(work: Path):
    """A FluxPipeline of the FLUX.1-schnell class: no guidance embedding, a fixed shift of 1."""
    from diffusers import FluxPipeline, FluxTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    tokenizer = char_clip_tokenizer(work / "tok", 16)
    t5_tokenizer = t5_char_tokenizer()
    t5 = T5EncoderModel(
        T5Config(
            vocab_size=len(t5_tokenizer),
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            pad_token_id=0,
            eos_token_id=1,
        )
    )
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,  # the T5 width
        pooled_projection_dim=32,  # the CLIP width
        guidance_embeds=False,
        axes_dims_rope=(4, 4, 8),  # rotary dims per position id axis: sum = head dim
    )
    return FluxPipeline(
        transformer=transformer,
        scheduler=published_scheduler("flux"),
        vae=_vae(4, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False),
        text_encoder=_clip(tokenizer),
        tokenizer=tokenizer,
        text_encoder_2=t5,
        tokenizer_2=t5_tokenizer,
    )


def _flux2_klein(work: Path):
    """A Flux2KleinPipeline of the FLUX.2-klein-4B class: step-distilled (is_distilled), no guidance
    embedding, FLUX.2's dynamically (exponentially) shifted flow scheduler; a Qwen3 text encoder deep
    enough for the pipeline's hidden-state layers (9, 18, 27) with qwen_tokenizer; the FLUX.2 VAE
    with batch-norm statistics away from (0, 1), so that decoding's un-normalization shows."""
    from diffusers import AutoencoderKLFlux2, Flux2KleinPipeline, Flux2Transformer2DModel
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = qwen_tokenizer()
    text_encoder = Qwen3ForCausalLM(
        Qwen3Config(
            vocab_size=len(tokenizer),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=28,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=8,
            max_position_embeddings=512,
            tie_word_embeddings=True,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        )
    )
    transformer = Flux2Transformer2DModel(
        patch_size=1,
        in_channels=16,  # the VAE's 4 latent channels, 2 x 2-patchified
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=48,  # three Qwen3 layers' hidden states, stacked: 3 x 16
        axes_dims_rope=(4, 4, 4, 4),  # rotary dims per (t, h, w, l) axis: sum = head dim
        guidance_embeds=False,
    )
    vae = _vae(4, AutoencoderKLFlux2)
    with torch.no_grad():  # the statistics of the patchified latents (4 x 4 channels)
        vae.bn.running_mean.copy_(0.1 * torch.randn(16))
        vae.bn.running_var.copy_(0.5 + torch.rand(16))
    scheduler = published_scheduler("flux2_klein")
    return Flux2KleinPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        is_distilled=True,
    )


def _sana_sprint(work: Path):
    """A SanaSprintPipeline as SANA-Sprint's: a linear-attention transformer with RMS q/k norms and the
    guidance embedding, a DC-AE (here halving once, SANA's f32c32 scaling factor), a Gemma-2 text
    encoder with instruction_tokenizer, the SCMScheduler (TrigFlow, sigma_data 0.5)."""
    from diffusers import AutoencoderDC, SanaSprintPipeline, SanaTransformer2DModel
    from transformers import Gemma2Config, Gemma2Model

    tokenizer = instruction_tokenizer()
    text_encoder = Gemma2Model(
        Gemma2Config(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            head_dim=16,
            max_position_embeddings=1024,
            pad_token_id=0,
            eos_token_id=1,
            bos_token_id=2,
        )
    )
    transformer = SanaTransformer2DModel(
        in_channels=4,
        out_channels=4,
        num_layers=2,
        num_attention_heads=2,
        attention_head_dim=8,
        num_cross_attention_heads=2,
        cross_attention_head_dim=8,
        cross_attention_dim=16,  # both attentions 2 x 8 = 16 wide
        caption_channels=32,  # the Gemma-2 width
        sample_size=16,
        patch_size=1,
        qk_norm="rms_norm_across_heads",
        guidance_embeds=True,
        guidance_embeds_scale=0.1,
    )
    vae = AutoencoderDC(
        in_channels=3,
        latent_channels=4,
        attention_head_dim=2,
        encoder_block_types=("ResBlock", "EfficientViTBlock"),
        decoder_block_types=("ResBlock", "EfficientViTBlock"),
        encoder_block_out_channels=(8, 8),
        decoder_block_out_channels=(8, 8),
        encoder_qkv_multiscales=((), (5,)),
        decoder_qkv_multiscales=((), (5,)),
        encoder_layers_per_block=(1, 1),
        decoder_layers_per_block=(1, 1),
        downsample_block_type="conv",
        upsample_block_type="interpolate",
        decoder_norm_types="rms_norm",
        decoder_act_fns="silu",
        scaling_factor=0.41407,
    )
    return SanaSprintPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=published_scheduler("sana_sprint"),
    )


TINY_FAMILIES = {  # family -> (cache key: bump when its build changes, the function building its pipeline)
    "sdxl": ("tiny-sdxl-v1", _sdxl),
    "sd3": ("tiny-sd3-v1", _sd3),
    "flux": ("tiny-flux-v1", _flux),
    "flux2_klein": ("tiny-flux2-klein-v1", _flux2_klein),
    "sana_sprint": ("tiny-sana-sprint-v1", _sana_sprint),
}


def build_tiny_family(family: str, directory: Path, work: Path) -> None:
    """Save `family`'s tiny pipeline to `directory`, torch seeded first (`work`: a scratch directory)."""
    torch.manual_seed(_SEED)
    TINY_FAMILIES[family][1](work).save_pretrained(directory, safe_serialization=True)


def ensure_tiny_family(family: str, cache_dir: str | Path) -> Path:
    """The directory of the saved tiny pipeline of `family` (a key of TINY_FAMILIES), built once (atomically)
    if absent."""
    target = Path(os.path.expanduser(str(cache_dir))) / TINY_FAMILIES[family][0]

    def build(directory: Path) -> None:
        with tempfile.TemporaryDirectory(prefix=".work-", dir=directory.parent) as work:  # the builders' scratch files
            build_tiny_family(family, directory, Path(work))

    return build_once(target, build)
