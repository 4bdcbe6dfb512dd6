"""The HPSv3 network on transformers' Qwen2-VL (the HPSv3 reward's weights): the base model's config,
the module (Qwen2-VL vision tower + Qwen2 decoder + HPSv3's reward head), its forward as HPSv3 runs it,
and the checkpoint's keys mapped one by one. A key left over or missing, or a shape that does not fit,
is an error naming it. No hpsv3, trl or peft package at run time; torch and transformers are imported
in the functions.

The original (the ``hpsv3`` 1.0.0 package): ``hpsv3/model/qwen2vl_trainer.py`` ``Qwen2VLRewardModelBT``,
a ``Qwen2VLForConditionalGeneration`` of transformers 4.45.2 with ``rm_head``; ``hpsv3/train.py``
``create_model_and_processor`` (``<|Reward|>`` added to the tokenizer, ``resize_token_embeddings`` to
the new tokenizer length, the backbone in bfloat16, ``rm_head`` in float32); ``hpsv3/config/HPSv3_7B.yaml``
(``rm_head_type: ranknet`` without ``rm_head_kwargs``, ``output_dim: 2``, ``reward_token: special``);
``hpsv3/inference.py`` ``HPSv3RewardInferencer`` (loads ``HPSv3.safetensors`` from the hub repo
MizzenAI/HPSv3 with ``load_state_dict(strict=True)``). Its checkpoint keys are that 4.45.2 layout:
``visual.*`` (vision tower), ``model.*`` (the Qwen2 decoder), ``lm_head.weight`` (never used for the
score), ``rm_head.{0,3,5}.*``. Adapted from that code, rewritten on transformers' Qwen2-VL modules;
nothing is copied.

Shapes: N items, L tokens (right-padded), D the decoder width (3584), P patch rows of all images,
Q = P / 4 image tokens (2 x 2 patches merged), V the vocabulary with ``<|Reward|>`` (151658).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from rewards.checkpoint_file import check_keys, check_shapes, no_init_weights, read_state_dict

if TYPE_CHECKING:
    import torch

# rm_head "ranknet" without rm_head_kwargs: Linear(D, 1024), ReLU, Dropout(0.05), Linear(1024, 16), ReLU, Linear(16, 2),
# its Linear layers at nn.Sequential positions 0, 3, 5
HEAD_WIDTHS = (1024, 16, 2)
IGNORED = ("lm_head.weight",)  # the language-model head: the score never reads it


# ---------------------------------------------------------------- config


def base_config(base: str, vocab_size: int) -> Any:
    """The Qwen2VLConfig of the base model (hub id or directory; its config.json only: no weights are
    read from it), with the decoder's vocabulary set to `vocab_size` (HPSv3 resized the embedding to the
    tokenizer's length after adding <|Reward|>) and SDPA attention, as HPSv3 runs without flash-attn."""
    from transformers import Qwen2VLConfig

    config = Qwen2VLConfig.from_pretrained(base)
    getattr(config, "text_config", config).vocab_size = vocab_size
    config._attn_implementation = "sdpa"
    return config


# ---------------------------------------------------------------- the module


def hpsv3_model(config: Any) -> "torch.nn.Module":
    """An empty HPSv3 network for `config` (weights uninitialized): `visual` (the Qwen2-VL vision tower
    with its 2 x 2 patch merger), `language_model` (the Qwen2 decoder, final RMSNorm included) and
    `head` (HPSv3's reward head; its output is (mu, sigma))."""
    from torch import nn
    from transformers.models.qwen2_vl import modeling_qwen2_vl as qwen

    text_config = getattr(config, "text_config", config)
    text_cls = (
        getattr(qwen, "Qwen2VLTextModel", None) or qwen.Qwen2VLModel
    )  # transformers < 4.52: Qwen2VLModel is the decoder
    model = nn.Module()
    with no_init_weights():
        model.visual = qwen.Qwen2VisionTransformerPretrainedModel._from_config(config.vision_config)
        model.language_model = text_cls._from_config(text_config)
    widths = (text_config.hidden_size, *HEAD_WIDTHS)
    model.head = nn.Sequential(
        nn.Linear(widths[0], widths[1]),
        nn.ReLU(),
        nn.Dropout(0.05),
        nn.Linear(widths[1], widths[2]),
        nn.ReLU(),
        nn.Linear(widths[2], widths[3]),
    )
    model.image_token_id = config.image_token_id
    return model


def decoder_hidden_states(model: Any, input_ids, attention_mask, pixel_values, image_grid_thw) -> "torch.Tensor":
    """(N, L, D) float in the backbone's dtype: Qwen2VLRewardModelBT.forward up to its head.

    input_ids, attention_mask (N, L) right-padded; pixel_values (P, 3 * 2 * 14 * 14); image_grid_thw (N, 3).
    1. Token embeddings; the Q rows of <|image_pad|> replaced by the vision tower's merged patches.
    2. The decoder with position ids 0 .. L-1 in all three M-RoPE sections: HPSv3 calls the decoder
       without position ids, so transformers 4.45 fills in each token's index, and Qwen2-VL's 3-D
       (t, h, w) positions of the image tokens are never used. Padding is masked (causal + padding)."""
    import torch

    embeds = model.language_model.embed_tokens(input_ids)  # (N, L, D)
    vision = model.visual(pixel_values.to(model.visual.get_dtype()), grid_thw=image_grid_thw)
    image_embeds = getattr(
        vision, "pooler_output", vision
    )  # (Q, D): transformers 5 returns an output object, 4.x the tensor
    mask = (input_ids == model.image_token_id).unsqueeze(-1).expand_as(embeds)  # (N, L, D)
    embeds = embeds.masked_scatter(mask, image_embeds.to(embeds.device, embeds.dtype))
    positions = torch.arange(input_ids.shape[1], device=input_ids.device).expand(input_ids.shape[0], -1)  # (N, L)
    out = model.language_model(
        inputs_embeds=embeds, attention_mask=attention_mask, position_ids=positions, use_cache=False
    )
    return out.last_hidden_state


# ---------------------------------------------------------------- the checkpoint


def expected_keys(model: Any) -> list[str]:
    """Every HPSv3 checkpoint key the score reads, in the original (transformers 4.45) layout."""
    keys = []
    for key in model.state_dict():
        if key.startswith("visual."):
            keys.append(key)
        elif key.startswith("language_model."):
            keys.append("model." + key.removeprefix("language_model."))
        else:
            keys.append("rm_" + key)  # head.{0,3,5}.* <- rm_head.{0,3,5}.*
    return keys


def rename(key: str) -> str:
    """An original key -> ours. Also accepts transformers >= 4.52's layout of the same model
    (``model.visual.*``, ``model.language_model.*``), as a checkpoint re-saved there would have."""
    key = key.removeprefix("module.")
    for old, new in (
        ("model.visual.", "visual."),
        ("model.language_model.", "language_model."),
        ("model.", "language_model."),
        ("rm_head.", "head."),
    ):
        if key.startswith(old):
            return new + key.removeprefix(old)
    return key


def read_checkpoint(path: str) -> dict[str, "torch.Tensor"]:
    """A flat state dict from a .safetensors file, or from a torch.save'd file (flat, or under "model",
    what HPSv3's inference.py unwraps, or "state_dict")."""
    return read_state_dict(path, "HPSv3", entries=("model", "state_dict"))


def convert_state_dict(state: dict[str, "torch.Tensor"], model: Any) -> dict[str, "torch.Tensor"]:
    """Our model's state dict from an HPSv3 checkpoint's: keys renamed, lm_head dropped (its shape
    checked), every key and shape checked. Raises ValueError naming what does not fit."""
    own = model.state_dict()
    text = model.language_model.config
    out, unused = {}, []
    for key, tensor in state.items():
        if key.removeprefix("module.") in IGNORED:
            if tuple(tensor.shape) != (text.vocab_size, text.hidden_size):
                raise ValueError(
                    f"HPSv3 checkpoint: lm_head.weight {tuple(tensor.shape)} (expected "
                    f"{(text.vocab_size, text.hidden_size)})"
                )
            continue
        ours = rename(key)
        if ours in own:
            out[ours] = tensor
        else:
            unused.append(key)
    missing = [k for k, ours in zip(expected_keys(model), own) if ours not in out]
    check_keys(missing, unused, "HPSv3 checkpoint does not fit the Qwen2-VL base config")
    check_shapes(out, own, "HPSv3 checkpoint shapes do not fit the Qwen2-VL base config")
    return out


def load_hpsv3_model(checkpoint: str, config: Any, device: str = "cpu", dtype: "torch.dtype | None" = None) -> Any:
    """The HPSv3 network holding an HPSv3 checkpoint, frozen, in eval mode on `device`: the backbone in
    `dtype` (HPSv3 runs it in bfloat16), the head in float32 (as HPSv3 keeps it)."""
    import torch

    model = hpsv3_model(config)
    state = convert_state_dict(read_checkpoint(os.path.expanduser(checkpoint)), model)
    for key in list(state):  # cast one tensor at a time: the checkpoint is never held twice
        state[key] = state.pop(key).to(torch.float32 if key.startswith("head.") else (dtype or torch.float32))
    model.load_state_dict(state, strict=True, assign=True)  # the uninitialized tensors are replaced, not copied into
    return model.to(device).eval().requires_grad_(False)
