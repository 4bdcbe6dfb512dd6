"""ImageReward checkpoints into transformers' BLIP (the ImageReward reward's weights): the architecture
as a BlipVisionConfig + BlipTextConfig, an explicit key mapping from the original layout, and loading
the checkpoint file through torch.load(weights_only=True) or safetensors. A key left over or missing,
or a shape that does not fit, is an error naming it. No timm or fairscale at run time; torch and
transformers are imported in the functions.

The original layout (the ``image-reward`` 1.5 package, ImageReward/ImageReward.py and models/BLIP/):
``blip.visual_encoder.*`` is BLIP's timm-style ViT (vit.py VisionTransformer: fused ``attn.qkv``,
LayerNorm eps 1e-6), ``blip.text_encoder.*`` BLIP's BERT with cross-attention (med.py BertModel, no
pooler), ``mlp.layers.{0,2,4,6,7}`` the reward head's five Linear layers (dropouts between them), and
``blip.vision_proj`` / ``blip.text_proj`` BLIP's contrastive projections, which scoring never uses.
Adapted from that package's code, rewritten for transformers' BlipVisionModel / BlipTextModel;
nothing is copied.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from rewards.checkpoint_file import check_keys, check_shapes, no_init_weights, read_json_config, read_state_dict

if TYPE_CHECKING:
    import torch

# The architecture of ImageReward v1.0: ImageReward() builds BLIP_Pretrain(image_size=224, vit="large")
# (blip.py create_vit: ViT-L/16) and its med_config.json (BLIP's configs/med_config.json; BLIP_Pretrain
# sets encoder_width to the ViT width), and MLP(768).
IMAGEREWARD_V1 = {
    "vit": {"img_size": 224, "patch_size": 16, "embed_dim": 1024, "depth": 24, "num_heads": 16, "mlp_ratio": 4.0},
    "med_config": {
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": 512,
        "vocab_size": 30524,
        "pad_token_id": 0,
        "add_cross_attention": True,
    },
}
HEAD_WIDTHS = (1024, 128, 64, 16, 1)  # MLP(input_size): Linear(input_size, 1024) ... Linear(16, 1)
HEAD_INDICES = (0, 2, 4, 6, 7)  # nn.Sequential positions of the Linear layers (Dropouts at 1, 3, 5)

# Original key -> our key. "{i}" is a block index. Our model (ImageRewardModel) holds `vision` (a
# BlipVisionModel), `text` (a BlipTextModel without pooler) and `head` (nn.Sequential of 5 Linear).
_VIT_BLOCK = {
    "norm1": "layer_norm1",
    "attn.qkv": "self_attn.qkv",
    "attn.proj": "self_attn.projection",
    "norm2": "layer_norm2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_VIT = {
    "cls_token": "embeddings.class_embedding",
    "pos_embed": "embeddings.position_embedding",
    "patch_embed.proj.weight": "embeddings.patch_embedding.weight",
    "patch_embed.proj.bias": "embeddings.patch_embedding.bias",
    "norm.weight": "post_layernorm.weight",
    "norm.bias": "post_layernorm.bias",
}
_BERT_EMBEDDINGS = ("word_embeddings.weight", "position_embeddings.weight", "LayerNorm.weight", "LayerNorm.bias")
_BERT_LAYER = [
    f"{attn}.{part}"
    for attn in ("attention", "crossattention")
    for part in ("self.query", "self.key", "self.value", "output.dense", "output.LayerNorm")
]
_BERT_LAYER += [
    "intermediate.dense",
    "output.dense",
    "output.LayerNorm",
]  # each with .weight and .bias; BERT and ours share these names
# Keys the original's load(strict=False) accepts and scoring never reads: BLIP's contrastive projections,
# and med.py's persistent position_ids buffer (checked to be 0, 1, 2, ... before it is dropped).
IGNORED = ("blip.vision_proj.weight", "blip.vision_proj.bias", "blip.text_proj.weight", "blip.text_proj.bias")
POSITION_IDS = "blip.text_encoder.embeddings.position_ids"


# ---------------------------------------------------------------- architecture


def blip_configs(arch: dict) -> tuple[Any, Any, int]:
    """{"vit": VisionTransformer kwargs, "med_config": BertConfig fields} -> (BlipVisionConfig,
    BlipTextConfig, head input width). Settings the transformers models cannot express are an error."""
    from transformers import BlipTextConfig, BlipVisionConfig

    vit, med = dict(arch["vit"]), dict(arch["med_config"])
    if (
        vit.get("qkv_bias", True) is not True
        or vit.get("qk_scale") is not None
        or vit.get("representation_size") is not None
    ):
        raise ValueError(
            "ImageReward config: only ViTs with qkv bias, the default attention scale and no pre-logits convert"
        )
    if med.get("position_embedding_type", "absolute") != "absolute" or not med.get("add_cross_attention", False):
        raise ValueError("ImageReward config: the text encoder must use absolute positions and cross-attention")
    width = int(vit.get("embed_dim", 768))
    vision = BlipVisionConfig(
        hidden_size=width,
        intermediate_size=int(width * vit.get("mlp_ratio", 4.0)),
        num_hidden_layers=int(vit.get("depth", 12)),
        num_attention_heads=int(vit.get("num_heads", 12)),
        image_size=int(vit.get("img_size", 224)),
        patch_size=int(vit.get("patch_size", 16)),
        hidden_act="gelu",  # nn.GELU: the exact (erf) GELU
        layer_norm_eps=1e-6,  # vit.py: partial(nn.LayerNorm, eps=1e-6)
    )
    text = BlipTextConfig(
        vocab_size=int(med["vocab_size"]),
        hidden_size=int(med.get("hidden_size", 768)),
        encoder_hidden_size=width,  # BLIP_Pretrain: encoder_config.encoder_width = vision_width
        intermediate_size=int(med.get("intermediate_size", 3072)),
        num_hidden_layers=int(med.get("num_hidden_layers", 12)),
        num_attention_heads=int(med.get("num_attention_heads", 12)),
        max_position_embeddings=int(med.get("max_position_embeddings", 512)),
        hidden_act=med.get("hidden_act", "gelu"),
        layer_norm_eps=float(med.get("layer_norm_eps", 1e-12)),
        pad_token_id=int(med.get("pad_token_id", 0)),
        bos_token_id=int(med["vocab_size"])
        - 2,  # [DEC], the first token init_tokenizer adds; only generation reads these
        eos_token_id=None,
        sep_token_id=None,
        is_decoder=True,  # builds the cross-attention layers; the forward runs bidirectionally (is_decoder=False)
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return vision, text, text.hidden_size  # ImageReward: MLP(768), the BERT width


def load_arch(config: str | None) -> dict:
    """None -> ImageReward v1.0 (ViT-L/16 + BERT-base); else a .json file (or a directory holding
    model_config.json) of the form {"vit": {...}, "med_config": {...}}."""
    if config is None:
        return IMAGEREWARD_V1
    data = read_json_config(
        config,
        "model_config.json",
        f"ImageReward config not found: {config} (pass a model_config.json or a directory holding one)",
    )
    if not isinstance(data, dict) or not {"vit", "med_config"} <= set(data):
        raise ValueError(f"ImageReward config {config} must hold 'vit' and 'med_config' entries")
    return data


# ---------------------------------------------------------------- key mapping


def expected_keys(vision: Any, text: Any) -> list[str]:
    """Every original key that scoring reads (no more, no fewer), in the original layout."""
    keys = [f"blip.visual_encoder.{k}" for k in _VIT]
    keys += [
        f"blip.visual_encoder.blocks.{i}.{m}.{p}"
        for i in range(vision.num_hidden_layers)
        for m in _VIT_BLOCK
        for p in ("weight", "bias")
    ]
    keys += [f"blip.text_encoder.embeddings.{k}" for k in _BERT_EMBEDDINGS]
    keys += [
        f"blip.text_encoder.encoder.layer.{i}.{m}.{p}"
        for i in range(text.num_hidden_layers)
        for m in _BERT_LAYER
        for p in ("weight", "bias")
    ]
    keys += [f"mlp.layers.{j}.{p}" for j in HEAD_INDICES for p in ("weight", "bias")]
    return keys


def rename(key: str) -> str:
    """An expected original key -> our ImageRewardModel key."""
    if key.startswith("blip.visual_encoder."):
        rest = key.removeprefix("blip.visual_encoder.")
        if rest in _VIT:
            return "vision." + _VIT[rest]
        m = re.fullmatch(r"blocks\.(\d+)\.(.+)\.(weight|bias)", rest)
        if m and m.group(2) in _VIT_BLOCK:
            return f"vision.encoder.layers.{m.group(1)}.{_VIT_BLOCK[m.group(2)]}.{m.group(3)}"
    elif key.startswith("blip.text_encoder."):
        return "text." + key.removeprefix("blip.text_encoder.")  # BLIP's med.py and BlipTextModel share names
    elif key.startswith("mlp.layers."):
        j, param = key.removeprefix("mlp.layers.").split(".")
        return f"head.{HEAD_INDICES.index(int(j))}.{param}"
    raise KeyError(key)


def convert_state_dict(state: dict[str, "torch.Tensor"], vision: Any, text: Any) -> dict[str, "torch.Tensor"]:
    """An ImageReward state dict (original layout) -> our ImageRewardModel's. Raises ValueError naming
    every key that is missing or left over; the unused BLIP projections are dropped."""
    import torch

    if state and all(k.startswith("module.") for k in state):  # saved from DistributedDataParallel
        state = {k[len("module.") :]: v for k, v in state.items()}
    expected = expected_keys(vision, text)
    missing = [k for k in expected if k not in state]
    unused = sorted(set(state) - set(expected) - set(IGNORED) - {POSITION_IDS})
    check_keys(missing, unused, "ImageReward checkpoint does not match the BLIP ViT + BERT of this architecture")
    if POSITION_IDS in state:  # med.py adds position_ids[:, :L] to nothing else: it must be the identity
        ids = state[POSITION_IDS].reshape(-1)
        if not torch.equal(ids.long(), torch.arange(ids.numel())):
            raise ValueError(
                f"ImageReward checkpoint: {POSITION_IDS} is not 0, 1, 2, ...; a model with custom positions does not "
                "convert"
            )
    return {rename(k): state[k] for k in expected}


# ---------------------------------------------------------------- the model


def image_reward_model(vision_config: Any, text_config: Any, head_input: int) -> "torch.nn.Module":
    """An empty ImageRewardModel: `vision` (BlipVisionModel), `text` (BlipTextModel with cross-attention,
    no pooler), `head` (the reward MLP's five Linear layers; its dropouts are no-ops at inference)."""
    from torch import nn
    from transformers import BlipTextModel, BlipVisionModel

    model = nn.Module()
    with no_init_weights():
        model.vision = BlipVisionModel(vision_config)
        model.text = BlipTextModel(text_config, add_pooling_layer=False)
    widths = (head_input, *HEAD_WIDTHS)
    model.head = nn.Sequential(*[nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:])])
    return model


def read_checkpoint(path: str) -> dict[str, "torch.Tensor"]:
    return read_state_dict(path, "ImageReward")


def load_image_reward(
    checkpoint: str, arch: dict, device: str = "cpu", dtype: "torch.dtype | None" = None
) -> "torch.nn.Module":
    """The ImageRewardModel holding an ImageReward checkpoint (original layout), frozen, in eval mode."""
    import torch

    vision, text, head_input = blip_configs(arch)
    model = image_reward_model(vision, text, head_input)
    converted = convert_state_dict(read_checkpoint(checkpoint), vision, text)
    check_shapes(converted, model.state_dict(), "ImageReward checkpoint shapes do not fit the configured architecture")
    with torch.no_grad():
        model.load_state_dict(converted, strict=True)  # also checks the mapping fills every weight of ours
    return model.to(device=device, dtype=dtype or torch.float32).eval().requires_grad_(False)
