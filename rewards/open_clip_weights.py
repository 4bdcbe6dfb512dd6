"""Open_clip CLIP checkpoints into a transformers CLIPModel (the HPSv2 rewards' weights): the
architecture as a CLIPConfig, an explicit open_clip -> transformers key mapping (the fused q/k/v split
in three, matrices stored as x @ W transposed), and loading a checkpoint file through
torch.load(weights_only=True) or safetensors. A key left over or missing, or a shape that does not fit,
is an error naming it. No open_clip at run time; torch and transformers are imported in the functions.

Adapted from tgxs002/HPSv2's vendored open_clip (model.py, transformer.py), rewritten for
transformers' CLIPModel; nothing is copied.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from rewards import clip_features
from rewards.checkpoint_file import check_keys, check_shapes, no_init_weights, read_json_config, read_state_dict

if TYPE_CHECKING:
    import torch

# open_clip's model config of ViT-H-14 (open_clip/model_configs/ViT-H-14.json), the HPSv2 architecture.
VIT_H_14 = {
    "embed_dim": 1024,
    "vision_cfg": {"image_size": 224, "layers": 32, "width": 1280, "head_width": 80, "patch_size": 14},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 1024, "heads": 16, "layers": 24},
}

# open_clip key -> transformers CLIPModel key. "{i}" is a block index; "in_proj" is the fused q/k/v of
# nn.MultiheadAttention, split into three; "(T)" marks a matrix stored as x @ W (transposed for nn.Linear).
_BLOCK = {
    "ln_1": "layer_norm1",
    "attn.out_proj": "self_attn.out_proj",
    "ln_2": "layer_norm2",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
}
OPEN_CLIP_TO_TRANSFORMERS = {
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.ln_pre": "vision_model.pre_layrnorm",
    "visual.transformer.resblocks.{i}": "vision_model.encoder.layers.{i}",
    "visual.ln_post": "vision_model.post_layernorm",
    "visual.proj": "visual_projection.weight (T)",
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "transformer.resblocks.{i}": "text_model.encoder.layers.{i}",
    "ln_final": "text_model.final_layer_norm",
    "text_projection": "text_projection.weight (T)",
    "logit_scale": "logit_scale",
}
_LAYER_NORMS = {"visual.ln_pre", "visual.ln_post", "ln_final"}  # entries with a .weight and a .bias


# ---------------------------------------------------------------- architecture


def clip_config_from_open_clip(model_cfg: dict) -> Any:
    """An open_clip model config (``{"embed_dim", "vision_cfg", "text_cfg"}``, the format of
    open_clip's model_configs/*.json; missing entries take open_clip's CLIPVisionCfg / CLIPTextCfg
    defaults) -> the transformers CLIPConfig of the same architecture. Features a CLIPModel has no
    counterpart for (layer scale, patch norm, pooling variants, HF or timm towers) are an error."""
    from transformers import CLIPConfig

    model_cfg = dict(model_cfg.get("model_cfg", model_cfg))  # also accept a hub open_clip_config.json
    vision, text = dict(model_cfg.pop("vision_cfg", {})), dict(model_cfg.pop("text_cfg", {}))
    embed_dim = model_cfg.pop("embed_dim")
    act = "quick_gelu" if model_cfg.pop("quick_gelu", False) else "gelu"  # nn.GELU is the exact (erf) GELU
    known = {
        "vision_cfg": {
            "image_size",
            "layers",
            "width",
            "head_width",
            "mlp_ratio",
            "patch_size",
            "patch_dropout",
            "output_tokens",
        },
        "text_cfg": {"context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio", "output_tokens"},
    }
    unsupported = [f"{k}={v!r}" for k, v in model_cfg.items() if v not in (None, False, 0, {})]
    for tower, cfg in (("vision_cfg", vision), ("text_cfg", text)):
        unsupported += [
            f"{tower}.{k}={v!r}" for k, v in cfg.items() if k not in known[tower] and v not in (None, False, 0)
        ]
    if unsupported:
        raise ValueError(f"open_clip model features a transformers CLIPModel cannot express: {', '.join(unsupported)}")
    v_layers, image_size = vision.get("layers", 12), vision.get("image_size", 224)
    if not isinstance(v_layers, int) or not isinstance(image_size, int):
        raise ValueError(
            "only a square ViT image tower converts to a CLIPModel (got a ResNet or a non-square image size)"
        )
    v_width, t_width = vision.get("width", 768), text.get("width", 512)
    vocab = text.get("vocab_size", 49408)
    return CLIPConfig(
        vision_config=dict(
            hidden_size=v_width,
            intermediate_size=int(v_width * vision.get("mlp_ratio", 4.0)),
            num_hidden_layers=v_layers,
            num_attention_heads=v_width // vision.get("head_width", 64),
            image_size=image_size,
            patch_size=vision.get("patch_size", 16),
            hidden_act=act,
            layer_norm_eps=1e-5,
        ),
        text_config=dict(
            hidden_size=t_width,
            intermediate_size=int(t_width * text.get("mlp_ratio", 4.0)),
            num_hidden_layers=text.get("layers", 12),
            num_attention_heads=text.get("heads", 8),
            vocab_size=vocab,
            max_position_embeddings=text.get("context_length", 77),
            hidden_act=act,
            layer_norm_eps=1e-5,
            # CLIP's BPE puts <|startoftext|>, <|endoftext|> last; we pool at argmax(ids) like open_clip anyway.
            bos_token_id=vocab - 2,
            eos_token_id=vocab - 1,
            pad_token_id=vocab - 1,
        ),
        projection_dim=embed_dim,
    )


def load_clip_config(config: str | None) -> Any:
    """None -> ViT-H/14; else a directory or .json file holding either a transformers CLIPConfig or
    an open_clip model config (told apart by its "vision_cfg" key)."""
    from transformers import CLIPConfig

    if config is None:
        return clip_config_from_open_clip(VIT_H_14)
    data = read_json_config(
        config,
        "config.json",
        f"HPSv2 config not found: {config} (pass a config.json, an open_clip model config, or a directory)",
    )
    if "vision_cfg" in data or "model_cfg" in data:
        return clip_config_from_open_clip(data)
    return CLIPConfig.from_dict(data)


def expected_open_clip_keys(config: Any) -> list[str]:
    """Every key an open_clip CLIP state dict of this architecture holds (no more, no fewer)."""
    keys = []
    for src in OPEN_CLIP_TO_TRANSFORMERS:
        if "{i}" in src:
            tower = config.vision_config if src.startswith("visual.") else config.text_config
            block = [f"{m}.{p}" for m in _BLOCK for p in ("weight", "bias")] + [
                "attn.in_proj_weight",
                "attn.in_proj_bias",
            ]
            keys += [f"{src.format(i=i)}.{b}" for i in range(tower.num_hidden_layers) for b in block]
        elif src in _LAYER_NORMS:
            keys += [f"{src}.weight", f"{src}.bias"]
        else:
            keys.append(src)
    return keys


def _rename(key: str) -> list[tuple[str, int | None, bool]]:
    """An expected open_clip key -> [(transformers key, which third of a fused q/k/v tensor or None, transpose)]."""
    for src, dst in OPEN_CLIP_TO_TRANSFORMERS.items():
        transpose, dst = dst.endswith(" (T)"), dst.removesuffix(" (T)")
        if "{i}" in src:
            m = re.fullmatch(re.escape(src).replace(r"\{i\}", r"(\d+)") + r"\.(.+)", key)
            if not m:
                continue
            block, rest = dst.format(i=m.group(1)), m.group(2)
            if rest.startswith("attn.in_proj_"):  # weight (3W, W) / bias (3W,): rows [q; k; v]
                kind = rest.removeprefix("attn.in_proj_")
                return [(f"{block}.self_attn.{p}_proj.{kind}", j, False) for j, p in enumerate("qkv")]
            module, _, param = rest.rpartition(".")
            return [(f"{block}.{_BLOCK[module]}.{param}", None, False)]
        if key == src:
            return [(dst, None, transpose)]
        if src in _LAYER_NORMS and key.startswith(src + "."):
            return [(dst + key[len(src) :], None, False)]
    raise KeyError(key)


def convert_state_dict(state: dict[str, "torch.Tensor"], config: Any) -> dict[str, "torch.Tensor"]:
    """An open_clip CLIP state dict -> the CLIPModel state dict of `config`. Raises ValueError naming
    every key that is missing, left over, or of the wrong shape for the architecture."""
    if state and all(k.startswith("module.") for k in state):  # saved from DistributedDataParallel
        state = {k[len("module.") :]: v for k, v in state.items()}
    expected = expected_open_clip_keys(config)
    missing = [k for k in expected if k not in state]
    unused = sorted(set(state) - set(expected))
    check_keys(missing, unused, "HPSv2 checkpoint does not match the open_clip CLIP of this architecture")
    out = {}
    for key in expected:
        tensor = state[key]
        for dst, third, transpose in _rename(key):
            t = tensor
            if third is not None:  # fused in_proj of nn.MultiheadAttention: rows [q; k; v]
                if t.shape[0] % 3:
                    raise ValueError(f"HPSv2 checkpoint: {key} has shape {tuple(t.shape)}, not 3 stacked q/k/v blocks")
                t = t.chunk(3, dim=0)[third]
            out[dst] = t.t() if transpose else t
    return out


def _empty_clip_model(config: Any) -> Any:
    """A CLIPModel without spending time on random initialization (its weights are loaded next)."""
    from transformers import CLIPModel

    with no_init_weights():
        return CLIPModel(config)


def read_checkpoint(path: str) -> dict[str, "torch.Tensor"]:
    return read_state_dict(path, "HPSv2")


def load_hpsv2_clip(checkpoint: str, config: Any, device: str = "cpu", dtype: str = "float32") -> Any:
    """The CLIPModel holding an HPSv2 checkpoint (open_clip layout), frozen, in eval mode on `device`."""
    import torch

    model = _empty_clip_model(config)
    converted = convert_state_dict(read_checkpoint(checkpoint), config)
    check_shapes(converted, model.state_dict(), "HPSv2 checkpoint shapes do not fit the configured architecture")
    with torch.no_grad():
        model.load_state_dict(converted, strict=True)  # also checks the mapping covers every CLIPModel weight
    return model.to(device=device, dtype=clip_features.torch_dtype(dtype)).eval().requires_grad_(False)
