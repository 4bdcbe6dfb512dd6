"""The embedded tiny SD-architecture pipeline: built offline from configs and a fixed seed,
saved with ``save_pretrained`` and loaded back through the same ``from_pretrained`` path as a real
model. Used by the default job and the tests; nothing touches the network.

Shapes: latents (4, 16, 16), images (64, 64, 3); a char-level CLIP tokenizer.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import torch

TINY_VERSION = "tiny-sd-v3"  # bump when the architecture below changes (cache key)
_TINY_SEED = 1234


def char_clip_tokenizer(directory: Path, max_length: int):
    """A character-level CLIP tokenizer of `max_length` tokens, its files written in `directory`: a BPE
    vocabulary with no merges, every printable ASCII char a token (CLIP's byte-to-unicode map leaves
    these unchanged; anything else becomes the unknown token)."""
    from transformers import CLIPTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    chars = [chr(c) for c in range(33, 127)]
    vocab = {c: i for i, c in enumerate(chars)}
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"), model_max_length=max_length)


def char_clip_config(tokenizer, width: int):
    """The config of a two-layer CLIP text encoder `width` wide for `tokenizer` (char_clip_tokenizer's):
    its vocabulary, special tokens and length."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=tokenizer.model_max_length,
        projection_dim=width,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def save_sd_pipeline(directory: str | Path, *, vae, text_encoder, tokenizer, unet, scheduler) -> None:
    """A StableDiffusionPipeline of these components (no safety checker) saved to `directory` (safetensors)."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(directory, safe_serialization=True)


@torch.no_grad()
def _make_decoder_transparent(vae) -> None:
    """Set the tiny VAE decoder to (about) upsample the latent to pixels. A randomly initialized
    decoder paints nearly the same texture for any latent (its GroupNorms standardize everything
    away), so no image reward could be learned through it. Here residual branches and attention
    outputs are zeroed and convolutions are identity taps, latent channel c is carried on feature
    channel 2c, and channel 2c+1 holds a constant 1 in the same norm group: the final GroupNorm then
    keeps the latent's level and contrast relative to that constant instead of erasing them."""
    from diffusers.models.resnet import ResnetBlock2D

    def identity_(conv: torch.nn.Conv2d) -> None:
        conv.weight.zero_()
        k = conv.kernel_size[0] // 2
        for c in range(min(conv.in_channels, conv.out_channels)):
            conv.weight[c, c, k, k] = 1.0
        if conv.bias is not None:
            conv.bias.zero_()

    dec = vae.decoder
    identity_(vae.post_quant_conv)
    dec.conv_in.weight.zero_()
    dec.conv_in.bias.zero_()
    k = dec.conv_in.kernel_size[0] // 2
    for c in range(dec.conv_in.in_channels):
        dec.conv_in.weight[2 * c, c, k, k] = 1.0  # latent channel c -> feature channel 2c
        dec.conv_in.bias[2 * c + 1] = 1.0  # its constant partner in the same norm group
    for module in dec.modules():
        if isinstance(module, ResnetBlock2D):
            module.conv2.weight.zero_()
            module.conv2.bias.zero_()
            if module.conv_shortcut is not None:
                identity_(module.conv_shortcut)
        elif module.__class__.__name__ == "Attention":
            module.to_out[0].weight.zero_()
            module.to_out[0].bias.zero_()
        elif module.__class__.__name__ == "Upsample2D" and module.conv is not None:
            identity_(module.conv)
    dec.conv_out.weight.zero_()
    dec.conv_out.bias.zero_()
    for rgb in range(3):
        dec.conv_out.weight[rgb, 2 * rgb, k, k] = 0.5  # RGB from latent channels 0, 1, 2


def build_tiny_pipeline(directory: str | Path) -> None:
    """Build the tiny pipeline from configs with a fixed seed and save it to `directory`."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel

    directory = Path(directory)
    tok_dir = directory / "_tokenizer_src"
    tokenizer = char_clip_tokenizer(tok_dir, 32)
    torch.manual_seed(_TINY_SEED)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=16,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        latent_channels=4,
        norm_num_groups=8,  # 2 channels per group in the last decoder block (see _make_decoder_transparent)
        sample_size=64,
        scaling_factor=1.0,
    )
    _make_decoder_transparent(vae)
    text_encoder = CLIPTextModel(char_clip_config(tokenizer, 32))
    scheduler = DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        prediction_type="v_prediction",
        timestep_spacing="trailing",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    save_sd_pipeline(directory, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler)
    shutil.rmtree(tok_dir)


def ensure_tiny_pipeline(cache_dir: str | Path) -> Path:
    """Return the directory of the saved tiny pipeline, building it once (atomically) if absent."""
    return build_once(Path(os.path.expanduser(str(cache_dir))) / TINY_VERSION, build_tiny_pipeline)


def build_once(target: Path, build: Callable[[Path], None]) -> Path:
    """`target`, a saved pipeline directory: `build(directory)` writes it into a temporary directory
    beside `target` that is then renamed into place (atomic), unless `target` already exists."""
    if (target / "model_index.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        build(tmp)
        os.rename(tmp, target)  # atomic; if another process won the race, use its copy
    except OSError:
        if not (target / "model_index.json").exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
