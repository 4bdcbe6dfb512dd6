"""Tiny SDXL, SD3 and FLUX pipelines for offline tests: the real architectures (two CLIP encoders and
a text-time UNet; an MMDiT transformer on a 16-channel VAE with a shift factor, without T5; a FLUX
transformer on packed latents with CLIP and a small T5 and its own tokenizer), built
from configs with random weights and a fixed seed, saved with ``save_pretrained`` and loaded back
through the family's ``from_pretrained`` path like a real model.

Shapes: SDXL latents (4, 16, 16), SD3 latents (16, 16, 16); images (32, 32, 3). FLUX takes its size
from model.resolution (FluxPipeline's default is 1024): at 32, latents (4, 16, 16).
FLUX.2-klein likewise (a Qwen3 text encoder, the FLUX.2 VAE): at 32, latents (16, 8, 8), its VAE's (4, 16, 16)
2 x 2-patchified.
SANA-Sprint: latents (4, 16, 16) (a DC-AE halving once) of (32, 32, 3) images, as its transformer's sample size says.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from actors.tiny_model import _write_char_tokenizer, build_once

TINY_VERSIONS = {  # cache keys: bump when a build changes
    "sdxl": "tiny-sdxl-v1",
    "sd3": "tiny-sd3-v1",
    "flux": "tiny-flux-v1",
    "flux2_klein": "tiny-flux2-klein-v1",
    "sana_sprint": "tiny-sana-sprint-v1",
}
_SEED = 4321


def _tokenizer(directory: Path):
    from transformers import CLIPTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    _write_char_tokenizer(directory)
    return CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"), model_max_length=16)


def _clip_config(tokenizer, hidden: int = 32, projection: int = 32):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=16,
        projection_dim=projection,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _vae(latent_channels: int, **extra):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 32),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=latent_channels,
        norm_num_groups=8,
        sample_size=32,
        **extra,
    )


def build_tiny_sdxl(directory: Path, work: Path) -> None:
    """A StableDiffusionXLPipeline with SDXL-Turbo's scheduler config (Euler ancestral, trailing spacing)."""
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = _tokenizer(work / "tok")
    torch.manual_seed(_SEED)
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
    scheduler = EulerAncestralDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        timestep_spacing="trailing",
        steps_offset=1,
    )
    pipe = StableDiffusionXLPipeline(
        vae=_vae(4, scaling_factor=0.13025, force_upcast=True),
        text_encoder=CLIPTextModel(_clip_config(tokenizer)),
        text_encoder_2=CLIPTextModelWithProjection(_clip_config(tokenizer)),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=scheduler,
    )
    pipe.save_pretrained(directory, safe_serialization=True)


def build_tiny_sd3(directory: Path, work: Path) -> None:
    """A StableDiffusion3Pipeline without T5 (text_encoder_3 = None), SD3.5's flow scheduler (shift 3)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    tokenizer = _tokenizer(work / "tok")
    torch.manual_seed(_SEED)
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
    pipe = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0),
        vae=_vae(16, scaling_factor=1.5305, shift_factor=0.0609, use_quant_conv=False, use_post_quant_conv=False),
        text_encoder=CLIPTextModelWithProjection(_clip_config(tokenizer)),
        tokenizer=tokenizer,
        text_encoder_2=CLIPTextModelWithProjection(_clip_config(tokenizer)),
        tokenizer_2=tokenizer,
        text_encoder_3=None,
        tokenizer_3=None,
    )
    pipe.save_pretrained(directory, safe_serialization=True)


def _t5_char_tokenizer():
    """A character-level T5 vocabulary (the pad, end and unknown tokens first, as T5 numbers them):
    T5's own sentencepiece model cannot be downloaded offline."""
    from transformers import T5TokenizerFast

    t5_vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -1.0)] + [
        (chr(c), -1.0) for c in range(33, 127)
    ]
    return T5TokenizerFast(vocab=t5_vocab, extra_ids=0)


def build_tiny_flux(directory: Path, work: Path) -> None:
    """A FluxPipeline of the FLUX.1-schnell class: no guidance embedding, a fixed shift of 1."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel, T5Config, T5EncoderModel

    tokenizer = _tokenizer(work / "tok")
    t5_tokenizer = _t5_char_tokenizer()
    torch.manual_seed(_SEED)
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
    pipe = FluxPipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0),
        vae=_vae(4, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False),
        text_encoder=CLIPTextModel(_clip_config(tokenizer)),
        tokenizer=tokenizer,
        text_encoder_2=t5,
        tokenizer_2=t5_tokenizer,
    )
    pipe.save_pretrained(directory, safe_serialization=True)


# a Qwen3-style chat template for what Flux2KleinPipeline renders: one user turn, the generation prompt, thinking off
_QWEN3_CHAT_TEMPLATE = (
    "{%- for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{ '<think>\\n\\n</think>\\n\\n' }}{%- endif %}{%- endif %}"
)


def _qwen_tokenizer():
    """A byte-level Qwen2 tokenizer without merges (each of the 256 byte symbols one token), Qwen's
    special tokens and the chat template above: Qwen's own tokenizer cannot be downloaded offline."""
    from tokenizers import AddedToken
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import Qwen2TokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
    vocab = {c: i for i, c in enumerate(sorted(ByteLevel.alphabet()))}
    vocab |= {t: len(vocab) + i for i, t in enumerate(specials)}
    tokenizer = Qwen2TokenizerFast(vocab=vocab, merges=[], chat_template=_QWEN3_CHAT_TEMPLATE, model_max_length=512)
    tokenizer.add_tokens(
        [AddedToken(t, special=True, normalized=False) for t in specials[1:]]
    )  # one token each, as in Qwen's
    return tokenizer


def build_tiny_flux2_klein(directory: Path, work: Path) -> None:
    """A Flux2KleinPipeline of the FLUX.2-klein-4B class: step-distilled (is_distilled), no guidance
    embedding, FLUX.2's dynamically (exponentially) shifted flow scheduler; a Qwen3 text encoder deep
    enough for the pipeline's hidden-state layers (9, 18, 27) with the tokenizer above; the FLUX.2 VAE
    with batch-norm statistics away from (0, 1), so that decoding's un-normalization shows."""
    from diffusers import (
        AutoencoderKLFlux2,
        FlowMatchEulerDiscreteScheduler,
        Flux2KleinPipeline,
        Flux2Transformer2DModel,
    )
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = _qwen_tokenizer()
    torch.manual_seed(_SEED)
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
        axes_dims_rope=(4, 4, 4, 4),
        guidance_embeds=False,  # rotary dims per (t, h, w, l) axis: sum = head dim
    )
    vae = AutoencoderKLFlux2(
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 32),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=32,
    )
    with torch.no_grad():  # the statistics of the patchified latents (4 x 4 channels)
        vae.bn.running_mean.copy_(0.1 * torch.randn(16))
        vae.bn.running_var.copy_(0.5 + torch.rand(16))
    scheduler = FlowMatchEulerDiscreteScheduler(  # FLUX.2-klein's: the pipeline passes mu, so shift and base/max_shift go unused
        num_train_timesteps=1000,
        shift=3.0,
        use_dynamic_shifting=True,
        time_shift_type="exponential",
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )
    pipe = Flux2KleinPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        is_distilled=True,
    )
    pipe.save_pretrained(directory, safe_serialization=True)


def _instruction_tokenizer():
    """A WordPiece tokenizer (the tokenizers library's) in place of Gemma's, which cannot be downloaded
    offline: <bos> first as Gemma's; every word of SanaSprintPipeline's default complex human
    instruction one token (so the prefixed instruction stays about 200 tokens, as with Gemma's), any
    other word spelled in characters."""
    import inspect

    from diffusers import SanaSprintPipeline
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    instruction = "\n".join(
        inspect.signature(SanaSprintPipeline.__call__).parameters["complex_human_instruction"].default
    )
    split = pre_tokenizers.BertPreTokenizer()  # on whitespace and punctuation
    chars = [chr(c) for c in range(33, 127)]
    words = sorted({w for w, _ in split.pre_tokenize_str(instruction)} - set(chars))
    specials = ["<pad>", "<eos>", "<bos>", "<unk>"]  # Gemma's ids 0-3
    vocab = {t: i for i, t in enumerate(specials + chars + ["##" + c for c in chars] + words)}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = split
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    tokenizer.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )


def build_tiny_sana_sprint(directory: Path, work: Path) -> None:
    """A SanaSprintPipeline as SANA-Sprint's: a linear-attention transformer with RMS q/k norms and the
    guidance embedding, a DC-AE (here halving once, SANA's f32c32 scaling factor), a Gemma-2 text
    encoder with the tokenizer above, the SCMScheduler (TrigFlow, sigma_data 0.5)."""
    from diffusers import AutoencoderDC, SanaSprintPipeline, SanaTransformer2DModel, SCMScheduler
    from transformers import Gemma2Config, Gemma2Model

    tokenizer = _instruction_tokenizer()
    torch.manual_seed(_SEED)
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
    pipe = SanaSprintPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=SCMScheduler()
    )
    pipe.save_pretrained(directory, safe_serialization=True)


BUILDERS = {
    "sdxl": build_tiny_sdxl,
    "sd3": build_tiny_sd3,
    "flux": build_tiny_flux,
    "flux2_klein": build_tiny_flux2_klein,
    "sana_sprint": build_tiny_sana_sprint,
}


def ensure_tiny_family(family: str, cache_dir: str | Path) -> Path:
    """The directory of the saved tiny pipeline of `family` (a key of BUILDERS), built once (atomically) if absent."""
    target = Path(os.path.expanduser(str(cache_dir))) / TINY_VERSIONS[family]

    def build(directory: Path) -> None:
        with tempfile.TemporaryDirectory(prefix=".work-", dir=directory.parent) as work:  # the builders' scratch files
            BUILDERS[family](directory, Path(work))

    return build_once(target, build)
