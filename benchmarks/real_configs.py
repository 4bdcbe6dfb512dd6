"""The published architectures of every model family, as diffusers and transformers constructor kwargs,
for benchmarks/real_size.py to build with random weights. `scale` < 1 shrinks widths and depths
(Shrink) for CPU tests; the classes and config keys stay the real ones.

Where the configs come from (the hub's config.json files cannot be downloaded here; the values are
written out from the published configs and checked against the published parameter counts, see
PUBLISHED_DENOISER_PARAMS and tests/unit/benchmarks/test_real_size.py):
  sd           stabilityai/sd-turbo (= SD 2.1-base): UNet unet/config.json, OpenCLIP ViT-H text encoder as
               diffusers converts it (23 layers: SD 2 uses the penultimate layer), the SD VAE; DDIM with
               the SD-Turbo betas and trailing spacing (the family builds DDIM from any scheduler config).
  sdxl         stabilityai/sdxl-turbo (= SDXL 1.0 base): UNet with transformer depths (1, 2, 10) and the
               text-time embedding, CLIP ViT-L + OpenCLIP ViT-bigG text encoders, the SDXL VAE (force_upcast),
               Euler ancestral with trailing spacing.
  sd3          stabilityai/stable-diffusion-3.5-large(-turbo): MMDiT 38 layers x 38 heads x 64, RMS q/k norm,
               pos_embed_max_size 192; CLIP-L, CLIP-G (both with projection) and T5-XXL (v1.1 encoder; `t5=False`
               ships without it, as the family supports); the 16-channel SD3 VAE; flow-matching shift 3.
  flux         black-forest-labs/FLUX.1-schnell: 19 double + 38 single blocks, 24 heads x 128, no guidance
               embedding; CLIP-L (pooled) and T5-XXL; the 16-channel FLUX VAE; flow-matching shift 1.
  flux2_klein  black-forest-labs/FLUX.2-klein-4B: 5 double + 20 single blocks, 24 heads x 128, MLP ratio 3,
               context 3 x 2560 (Qwen3-4B hidden states of layers 9, 18, 27); Qwen3-4B; the FLUX.2 VAE
               (32 channels, 2 x 2 patches, batch-norm); the dynamically (exponentially) shifted flow scheduler.
  sana_sprint  Efficient-Large-Model/Sana_Sprint_1.6B_1024px_diffusers: 20 layers x 70 heads x 32, cross
               attention 20 x 112, RMS q/k norm, guidance embedding; Gemma-2-2B; the DC-AE f32c32 (SANA 1.0);
               SCMScheduler (TrigFlow, sigma_data 0.5).
Tokenizers: the real ones cannot be had offline; each family gets the character-level stand-in its
tiny build uses (actors/tiny_model.py, actors/families/tiny.py), with the real vocabulary size in the
text encoder at scale 1 (the unused rows cost the real memory).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FAMILIES = ("sd", "sdxl", "sd3", "flux", "flux2_klein", "sana_sprint")

# The denoiser's published parameter count, and where it is published.
PUBLISHED_DENOISER_PARAMS = {
    "sd": (
        865.9e6,
        "SD 2.1 UNet: 865,910,724 parameters (diffusers' UNet2DConditionModel of stabilityai/stable-diffusion-2-1)",
    ),
    "sdxl": (2.6e9, "SDXL UNet: 2.6B (Podell et al. 2023, SDXL paper, Table 1: 2.6B UNet parameters)"),
    "sd3": (8.1e9, "SD3.5 Large: 8.1B (Stability AI's model card and release post)"),
    "flux": (11.9e9, "FLUX.1 [schnell] transformer: 12B in the model card; 11.9B in diffusers' FluxTransformer2DModel"),
    "flux2_klein": (4.0e9, "FLUX.2 [klein] 4B: 4B (Black Forest Labs' model card and release post)"),
    "sana_sprint": (1.6e9, "SANA-Sprint 1.6B: 1.6B (Chen et al. 2025, SANA-Sprint; the SANA 1.6B transformer)"),
}


@dataclass(frozen=True)
class Shrink:
    """Scales one published config: at scale 1 every value is the published one."""

    scale: float = 1.0

    def width(self, n: int, multiple: int = 32) -> int:
        """A width (channels, hidden size): n x scale, a multiple of `multiple` (at least one)."""
        return n if self.scale == 1 else max(multiple, round(n * self.scale / multiple) * multiple)

    def count(self, n: int, minimum: int = 1) -> int:
        """A depth or head count: n x scale, at least `minimum`."""
        return n if self.scale == 1 else max(minimum, round(n * self.scale))

    def vocab(self, real: int, tokenizer) -> int:
        """The real vocabulary at scale 1 (its memory counts); the stand-in tokenizer's below."""
        return real if self.scale == 1 else len(tokenizer)


# ---------------------------------------------------------------------------------- text encoders
def _clip(
    s: Shrink, vocab: int, tokenizer, hidden: int, inter: int, layers: int, heads: int, act: str, projection: int
) -> dict:
    return dict(
        vocab_size=vocab,
        hidden_size=s.width(hidden),
        intermediate_size=s.width(inter),
        num_hidden_layers=s.count(layers),
        num_attention_heads=s.count(heads),
        hidden_act=act,
        projection_dim=s.width(projection),
        max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def clip_vit_h_sd2(s: Shrink, tok) -> dict:
    """OpenCLIP ViT-H/14's text tower as SD 2 ships it: 23 of 24 layers."""
    return _clip(s, s.vocab(49408, tok), tok, 1024, 4096, 23, 16, "gelu", 512)


def clip_vit_l(s: Shrink, tok) -> dict:
    """openai/clip-vit-large-patch14's text tower (SDXL text_encoder, SD3 text_encoder, FLUX text_encoder)."""
    return _clip(s, s.vocab(49408, tok), tok, 768, 3072, 12, 12, "quick_gelu", 768)


def clip_vit_bigg(s: Shrink, tok) -> dict:
    """OpenCLIP ViT-bigG/14's text tower (SDXL and SD3 text_encoder_2)."""
    return _clip(s, s.vocab(49408, tok), tok, 1280, 5120, 32, 20, "gelu", 1280)


def t5_xxl(s: Shrink, tok) -> dict:
    """google/t5-v1_1-xxl's encoder (SD3 text_encoder_3, FLUX text_encoder_2)."""
    return dict(
        vocab_size=s.vocab(32128, tok),
        d_model=s.width(4096),
        d_kv=s.width(64, 8),
        d_ff=s.width(10240),
        num_layers=s.count(24),
        num_heads=s.count(64),
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu",
        layer_norm_epsilon=1e-6,
        tie_word_embeddings=False,
        pad_token_id=0,
        eos_token_id=1,
    )


def _kv_heads(heads: int, real_heads: int, real_kv: int) -> int:
    kv = max(1, heads // (real_heads // real_kv))
    while heads % kv:
        kv -= 1
    return kv


def qwen3_4b(s: Shrink, tok) -> dict:
    """Qwen/Qwen3-4B (FLUX.2-klein-4B's text encoder); at least 28 layers: the pipeline reads layers 9, 18, 27."""
    heads = s.count(32)
    return dict(
        vocab_size=s.vocab(151936, tok),
        hidden_size=s.width(2560),
        intermediate_size=s.width(9728),
        num_hidden_layers=s.count(36, 28),
        num_attention_heads=heads,
        num_key_value_heads=_kv_heads(heads, 32, 8),
        head_dim=s.width(128, 8),
        max_position_embeddings=40960,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
    )


def gemma2_2b(s: Shrink, tok) -> dict:
    """google/gemma-2-2b-it (SANA-Sprint's text encoder)."""
    heads, head_dim = s.count(8), s.width(256, 8)
    return dict(
        vocab_size=s.vocab(256000, tok),
        hidden_size=s.width(2304),
        intermediate_size=s.width(9216),
        num_hidden_layers=s.count(26),
        num_attention_heads=heads,
        num_key_value_heads=_kv_heads(heads, 8, 4),
        head_dim=head_dim,
        max_position_embeddings=8192,
        query_pre_attn_scalar=head_dim,
        sliding_window=4096,
        final_logit_softcapping=30.0,
        attn_logit_softcapping=50.0,
        hidden_activation="gelu_pytorch_tanh",
        rms_norm_eps=1e-6,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )


# ---------------------------------------------------------------------------------- VAEs
def _kl_vae(s: Shrink, **extra) -> dict:
    """The SD-family AutoencoderKL (SD, SDXL, SD3, FLUX share its layout)."""
    return dict(
        in_channels=3,
        out_channels=3,
        block_out_channels=tuple(s.width(c) for c in (128, 256, 512, 512)),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=s.count(2),
        norm_num_groups=32,
        **extra,
    )


def flux2_vae(s: Shrink) -> dict:
    """black-forest-labs/FLUX.2 VAE (AutoencoderKLFlux2; diffusers' defaults are its config)."""
    return dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=tuple(s.width(c) for c in (128, 256, 512, 512)),
        layers_per_block=s.count(2),
        latent_channels=32,
        norm_num_groups=32,
        sample_size=1024,
        patch_size=(2, 2),
    )


def dc_ae_f32c32(s: Shrink) -> dict:
    """mit-han-lab/dc-ae-f32c32-sana-1.0-diffusers (SANA's deep-compression autoencoder, 32x, 32 channels)."""
    blocks = ("ResBlock",) * 3 + ("EfficientViTBlock",) * 3
    widths = tuple(s.width(c) for c in (128, 256, 512, 512, 1024, 1024))
    multiscales = ((), (), (), (5,), (5,), (5,))
    return dict(
        in_channels=3,
        latent_channels=32,
        attention_head_dim=32,
        encoder_block_types=blocks,
        decoder_block_types=blocks,
        encoder_block_out_channels=widths,
        decoder_block_out_channels=widths,
        encoder_layers_per_block=tuple(s.count(n) for n in (2, 2, 2, 3, 3, 3)),
        decoder_layers_per_block=tuple(s.count(n) for n in (3, 3, 3, 3, 3, 3)),
        encoder_qkv_multiscales=multiscales,
        decoder_qkv_multiscales=multiscales,
        upsample_block_type="interpolate",
        downsample_block_type="Conv",
        decoder_norm_types="rms_norm",
        decoder_act_fns="silu",
        scaling_factor=0.41407,
    )


# ---------------------------------------------------------------------------------- denoisers
def sd2_unet(s: Shrink, text_width: int) -> dict:
    return dict(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        block_out_channels=tuple(s.width(c) for c in (320, 640, 1280, 1280)),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        layers_per_block=s.count(2),
        attention_head_dim=tuple(s.count(h) for h in (5, 10, 20, 20)),  # heads per block (SD 2's naming)
        cross_attention_dim=text_width,
        use_linear_projection=True,
        norm_num_groups=32,
    )


def sdxl_unet(s: Shrink, text_width: int, pooled_width: int) -> dict:
    time_dim = s.width(256, 8)
    return dict(
        sample_size=128,
        in_channels=4,
        out_channels=4,
        block_out_channels=tuple(s.width(c) for c in (320, 640, 1280)),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        layers_per_block=s.count(2),
        attention_head_dim=tuple(s.count(h) for h in (5, 10, 20)),
        transformer_layers_per_block=tuple(s.count(n) for n in (1, 2, 10)),
        cross_attention_dim=text_width,  # both encoders' penultimate hidden states, concatenated: 768 + 1280
        use_linear_projection=True,
        norm_num_groups=32,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_dim,
        addition_embed_type_num_heads=64,
        projection_class_embeddings_input_dim=6 * time_dim + pooled_width,  # 6 x 256 + 1280 = 2816
    )


def sd35_large_transformer(s: Shrink, context_width: int, pooled_width: int) -> dict:
    heads = s.count(38)
    return dict(
        sample_size=128,
        patch_size=2,
        in_channels=16,
        out_channels=16,
        num_layers=s.count(38),
        attention_head_dim=64,
        num_attention_heads=heads,
        caption_projection_dim=heads * 64,
        joint_attention_dim=context_width,
        pooled_projection_dim=pooled_width,
        pos_embed_max_size=s.count(192, 16),
        qk_norm="rms_norm",
        dual_attention_layers=(),
    )


def flux1_transformer(s: Shrink, context_width: int, pooled_width: int) -> dict:
    return dict(
        patch_size=1,
        in_channels=64,
        num_layers=s.count(19),
        num_single_layers=s.count(38),
        attention_head_dim=128,
        num_attention_heads=s.count(24),
        joint_attention_dim=context_width,
        pooled_projection_dim=pooled_width,
        guidance_embeds=False,
        axes_dims_rope=(16, 56, 56),
    )


def flux2_klein_transformer(s: Shrink, context_width: int) -> dict:
    return dict(
        patch_size=1,
        in_channels=128,
        num_layers=s.count(5),
        num_single_layers=s.count(20),
        attention_head_dim=128,
        num_attention_heads=s.count(24),
        joint_attention_dim=context_width,
        timestep_guidance_channels=256,
        mlp_ratio=3.0,
        axes_dims_rope=(32, 32, 32, 32),
        rope_theta=2000,
        eps=1e-6,
        guidance_embeds=False,
    )


def sana_1600m_transformer(s: Shrink, caption_width: int) -> dict:
    heads = s.count(70)
    return dict(
        in_channels=32,
        out_channels=32,
        num_attention_heads=heads,
        attention_head_dim=32,
        num_layers=s.count(20),
        num_cross_attention_heads=s.count(20),
        cross_attention_head_dim=112,
        cross_attention_dim=heads * 32,
        caption_channels=caption_width,
        mlp_ratio=2.5,
        sample_size=32,
        patch_size=1,
        norm_elementwise_affine=False,
        norm_eps=1e-6,
        qk_norm="rms_norm_across_heads",
        guidance_embeds=True,
        guidance_embeds_scale=0.1,
    )


# ---------------------------------------------------------------------------------- the families
def tokenizers(family: str, work: Path, t5: bool = True) -> dict:
    """The stand-in tokenizers of `family`, by pipeline component name."""
    from actors.families.tiny_tokenizers import instruction_tokenizer, qwen_tokenizer, t5_char_tokenizer
    from actors.tiny_model import char_clip_tokenizer

    if family in ("sd", "sdxl", "sd3", "flux"):
        clip = char_clip_tokenizer(work, 77)
        out = {"tokenizer": clip}
        if family in ("sdxl", "sd3"):
            out["tokenizer_2"] = clip
        if family == "flux":
            out["tokenizer_2"] = t5_char_tokenizer()
        if family == "sd3":
            out["tokenizer_3"] = t5_char_tokenizer() if t5 else None
        return out
    if family == "flux2_klein":
        return {"tokenizer": qwen_tokenizer()}
    if family == "sana_sprint":
        return {"tokenizer": instruction_tokenizer()}
    raise ValueError(f"unknown family '{family}'; known: {', '.join(FAMILIES)}")


def configs(family: str, scale: float = 1.0, tok: dict | None = None, t5: bool = True) -> dict[str, tuple[str, dict]]:
    """component name -> (class name, constructor kwargs) of every model in the family's pipeline.
    Text encoder configs need the tokenizers (`tokenizers()`); without them only the denoiser's and VAE's."""
    s = Shrink(scale)
    out: dict[str, tuple[str, dict]] = {}
    if family == "sd":
        text = clip_vit_h_sd2(s, tok["tokenizer"]) if tok else None
        out["unet"] = ("UNet2DConditionModel", sd2_unet(s, s.width(1024)))
        out["vae"] = ("AutoencoderKL", _kl_vae(s, latent_channels=4, sample_size=512, scaling_factor=0.18215))
        if tok:
            out["text_encoder"] = ("CLIPTextModel", text)
    elif family == "sdxl":
        out["unet"] = ("UNet2DConditionModel", sdxl_unet(s, s.width(768) + s.width(1280), s.width(1280)))
        out["vae"] = (
            "AutoencoderKL",
            _kl_vae(s, latent_channels=4, sample_size=1024, scaling_factor=0.13025, force_upcast=True),
        )
        if tok:
            out["text_encoder"] = ("CLIPTextModel", clip_vit_l(s, tok["tokenizer"]))
            out["text_encoder_2"] = ("CLIPTextModelWithProjection", clip_vit_bigg(s, tok["tokenizer_2"]))
    elif family == "sd3":
        out["transformer"] = (
            "SD3Transformer2DModel",
            sd35_large_transformer(s, s.width(4096), s.width(768) + s.width(1280)),
        )
        out["vae"] = (
            "AutoencoderKL",
            _kl_vae(
                s,
                latent_channels=16,
                sample_size=1024,
                scaling_factor=1.5305,
                shift_factor=0.0609,
                use_quant_conv=False,
                use_post_quant_conv=False,
            ),
        )
        if tok:
            out["text_encoder"] = ("CLIPTextModelWithProjection", clip_vit_l(s, tok["tokenizer"]))
            out["text_encoder_2"] = ("CLIPTextModelWithProjection", clip_vit_bigg(s, tok["tokenizer_2"]))
            if t5:
                out["text_encoder_3"] = ("T5EncoderModel", t5_xxl(s, tok["tokenizer_3"]))
    elif family == "flux":
        out["transformer"] = ("FluxTransformer2DModel", flux1_transformer(s, s.width(4096), s.width(768)))
        out["vae"] = (
            "AutoencoderKL",
            _kl_vae(
                s,
                latent_channels=16,
                sample_size=1024,
                scaling_factor=0.3611,
                shift_factor=0.1159,
                use_quant_conv=False,
                use_post_quant_conv=False,
            ),
        )
        if tok:
            out["text_encoder"] = ("CLIPTextModel", clip_vit_l(s, tok["tokenizer"]))
            out["text_encoder_2"] = ("T5EncoderModel", t5_xxl(s, tok["tokenizer_2"]))
    elif family == "flux2_klein":
        out["transformer"] = ("Flux2Transformer2DModel", flux2_klein_transformer(s, 3 * s.width(2560)))
        out["vae"] = ("AutoencoderKLFlux2", flux2_vae(s))
        if tok:
            out["text_encoder"] = ("Qwen3ForCausalLM", qwen3_4b(s, tok["tokenizer"]))
    elif family == "sana_sprint":
        out["transformer"] = ("SanaTransformer2DModel", sana_1600m_transformer(s, s.width(2304)))
        out["vae"] = ("AutoencoderDC", dc_ae_f32c32(s))
        if tok:
            out["text_encoder"] = ("Gemma2Model", gemma2_2b(s, tok["tokenizer"]))
    else:
        raise ValueError(f"unknown family '{family}'; known: {', '.join(FAMILIES)}")
    return out
