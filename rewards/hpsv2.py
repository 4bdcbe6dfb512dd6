"""HPSv2 and HPSv2.1 (Wu et al. 2023): an open_clip ViT-H/14 fine-tuned on human preferences, run here
as a transformers CLIPModel (no open_clip, torchvision or hpsv2 package at run time).

    score = cos(e_img, e_txt)      (image and text features L2-normalized; no logit scale)

exactly what ``hpsv2.score`` reports (``diag(image_features @ text_features.T)``).

Adapted from tgxs002/HPSv2 (hpsv2/img_score.py and its vendored open_clip: model.py, transformer.py,
transform.py ResizeMaxSize, tokenizer.py), rewritten for transformers' CLIPModel; nothing is copied.

The checkpoint (option ``checkpoint``) is the published file ``HPS_v2_compressed.pt`` (``hpsv2``) or
``HPS_v2.1_compressed.pt`` (``hpsv2.1``) from the hub repo xswu/HPSv2, downloaded when not given: a
torch.save'd dict whose "state_dict" is the open_clip CLIP's state dict. It is read with
torch.load(weights_only=True) and its keys are renamed one by one into the CLIPModel's
(``OPEN_CLIP_TO_TRANSFORMERS``): a key left over or missing is an error naming it.

Preprocessing (option ``preprocess``):
  "hpsv2" (default) HPSv2's own evaluation transform: pixels / 255 as float32, resize the longest side
          to S (=224) with torch's antialiased bicubic (the kernel torchvision >= 0.17 runs for a
          tensor), zero-pad to S x S (left/top get the smaller half), normalize with the OpenAI
          CLIP mean/std. Images are not cropped.
  "clip"  transformers' CLIP image processor (shortest side to 224, center crop), as the SDPO
          reference applies it before scoring with the same model.
Prompts are cleaned as open_clip's tokenizer does (ftfy when installed, HTML unescape, whitespace,
lowercase) and tokenized by the CLIP BPE tokenizer of ``tokenizer`` (default: ``processor``).

Shapes: N images / prompts, S the image size (224), L <= 77 tokens, D the projection dim (1024).
"""

from __future__ import annotations

import html
import json
import os
import re
import unicodedata
from typing import TYPE_CHECKING, Any

import numpy as np

from rewards import clip_features
from rewards.registry import RewardFn, register_reward

if TYPE_CHECKING:
    import torch

HUB_REPO = "xswu/HPSv2"
CHECKPOINT_FILES = {"hpsv2": "HPS_v2_compressed.pt", "hpsv2.1": "HPS_v2.1_compressed.pt"}
DEFAULT_PROCESSOR = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
PREPROCESS = ("hpsv2", "clip")
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

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
        "vision_cfg": {"image_size", "layers", "width", "head_width", "mlp_ratio", "patch_size", "patch_dropout", "output_tokens"},
        "text_cfg": {"context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio", "output_tokens"},
    }
    unsupported = [f"{k}={v!r}" for k, v in model_cfg.items() if v not in (None, False, 0, {})]
    for tower, cfg in (("vision_cfg", vision), ("text_cfg", text)):
        unsupported += [f"{tower}.{k}={v!r}" for k, v in cfg.items() if k not in known[tower] and v not in (None, False, 0)]
    if unsupported:
        raise ValueError(f"open_clip model features a transformers CLIPModel cannot express: {', '.join(unsupported)}")
    v_layers, image_size = vision.get("layers", 12), vision.get("image_size", 224)
    if not isinstance(v_layers, int) or not isinstance(image_size, int):
        raise ValueError("only a square ViT image tower converts to a CLIPModel (got a ResNet or a non-square image size)")
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
    path = os.path.expanduser(str(config))
    if os.path.isdir(path):
        path = os.path.join(path, "config.json")
    if not os.path.isfile(path):
        raise ValueError(f"HPSv2 config not found: {config} (pass a config.json, an open_clip model config, or a directory)")
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if "vision_cfg" in data or "model_cfg" in data:
        return clip_config_from_open_clip(data)
    return CLIPConfig.from_dict(data)


def expected_open_clip_keys(config: Any) -> list[str]:
    """Every key an open_clip CLIP state dict of this architecture holds (no more, no fewer)."""
    keys = []
    for src in OPEN_CLIP_TO_TRANSFORMERS:
        if "{i}" in src:
            tower = config.vision_config if src.startswith("visual.") else config.text_config
            block = [f"{m}.{p}" for m in _BLOCK for p in ("weight", "bias")] + ["attn.in_proj_weight", "attn.in_proj_bias"]
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
    if missing or unused:
        parts = []
        if missing:
            parts.append(f"missing key(s): {', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}")
        if unused:
            parts.append(f"unused key(s): {', '.join(unused[:20])}{' ...' if len(unused) > 20 else ''}")
        raise ValueError(f"HPSv2 checkpoint does not match the open_clip CLIP of this architecture: {'; '.join(parts)}")
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

    try:
        from transformers.initialization import no_init_weights  # transformers 5
    except ImportError:
        try:
            from transformers.modeling_utils import no_init_weights  # 4.x
        except ImportError:
            return CLIPModel(config)
    with no_init_weights():
        return CLIPModel(config)


def read_checkpoint(path: str) -> dict[str, "torch.Tensor"]:
    """The open_clip state dict inside an HPSv2 checkpoint file (its "state_dict" entry, or the file
    itself when that is already a flat state dict; a .safetensors file is read as one)."""
    import torch

    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle.UnpicklingError and others: a message, not the unpickler's traceback
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"cannot read HPSv2 checkpoint {path} with torch.load(weights_only=True): {first}. If it holds Python "
            "objects besides tensors and you trust the file, load it once in full (torch's weights_only=False) "
            "and save its 'state_dict' alone with torch.save, then pass that file as checkpoint"
        ) from None
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"HPSv2 checkpoint {path} is not a state dict (nor a dict with a 'state_dict' entry of tensors)")
    return state


def load_hpsv2_clip(checkpoint: str, config: Any, device: str = "cpu", dtype: str = "float32") -> Any:
    """The CLIPModel holding an HPSv2 checkpoint (open_clip layout), frozen, in eval mode on `device`."""
    import torch

    model = _empty_clip_model(config)
    converted = convert_state_dict(read_checkpoint(checkpoint), config)
    own = model.state_dict()
    wrong = [f"{k} {tuple(v.shape)} (expected {tuple(own[k].shape)})" for k, v in converted.items() if v.shape != own[k].shape]
    if wrong:
        raise ValueError(f"HPSv2 checkpoint shapes do not fit the configured architecture: {', '.join(wrong[:10])}")
    with torch.no_grad():
        model.load_state_dict(converted, strict=True)  # also checks the mapping covers every CLIPModel weight
    return model.to(device=device, dtype=clip_features.torch_dtype(dtype)).eval().requires_grad_(False)


# ---------------------------------------------------------------- inputs


def hpsv2_pixel_values(images: np.ndarray, size: int = 224) -> "torch.Tensor":
    """uint8 (N, H, W, 3) -> float32 (N, 3, size, size), HPSv2's evaluation transform (ToTensor,
    ResizeMaxSize(size, fill=0), Normalize(OpenAI mean/std)) in torch arithmetic, without torchvision.

    scale = size / max(H, W); the image is resized to (round(H * scale), round(W * scale)) by torch's
    antialiased bicubic (align_corners=False, values not clamped) unless scale is 1, then zero-padded
    to size x size with the odd pixel of padding on the right/bottom. Where HPSv2 would leave a
    non-square image with max(H, W) == size unpadded (and fail in the model), this pads it too."""
    import torch
    import torch.nn.functional as F

    clip_features.check_batch(images)
    _, h, w, _ = images.shape
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).to(torch.float32).div(255)  # (N, 3, H, W)
    scale = size / float(max(h, w))
    if scale != 1.0:
        h, w = round(h * scale), round(w * scale)
        x = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False, antialias=True)
    pad_h, pad_w = size - h, size - w
    x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=0.0)
    mean = torch.tensor(OPENAI_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_STD, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - mean) / std


_QUOTES = [(re.compile("[\u02bc\u2018-\u201b]"), "'"), (re.compile("[\u201c-\u201f]"), '"')]
_CONTROL = dict.fromkeys([*range(0x00, 0x09), 0x0B, *range(0x0E, 0x20), 0x7F, *range(0x206A, 0x2070), 0xFEFF, *range(0xFFF9, 0xFFFD)])
_COMPAT = {  # typographic ligatures and half/full-width forms -> plain letters (NFKC of each)
    c: unicodedata.normalize("NFKC", chr(c))
    for c in [0x132, 0x133, 0x149, *range(0x1C4, 0x1CD), *range(0x1F1, 0x1F4), *range(0xFB00, 0xFB07), 0x3000, *range(0xFF01, 0xFFF0)]
    if unicodedata.normalize("NFKC", chr(c)) != chr(c)
}


def _fix_text(text: str) -> str:
    """ftfy.fix_text when ftfy is installed; else its fixes that apply to well-formed Unicode (HTML
    entities, ligatures, character width, curly quotes, control characters, NFC). Without ftfy,
    mojibake (text decoded with the wrong codec) is left as it is."""
    try:
        import ftfy
    except ImportError:
        if "<" not in text:
            text = html.unescape(text)
        text = text.translate(_COMPAT)
        for pattern, plain in _QUOTES:
            text = pattern.sub(plain, text)
        return unicodedata.normalize("NFC", text.translate(_CONTROL))
    return ftfy.fix_text(text)


def clean_prompt(text: str) -> str:
    """open_clip's tokenizer cleaning: fix text, unescape HTML twice, collapse whitespace, lowercase."""
    text = html.unescape(html.unescape(_fix_text(text))).strip()
    return re.sub(r"\s+", " ", text).strip().lower()


# ---------------------------------------------------------------- the reward


class HPSv2Scorer:
    """Callable reward: (uint8 images (N, H, W, 3), N prompts) -> float64 cosines (N,)."""

    def __init__(self, clip: Any, tokenizer: Any, preprocess: str = "hpsv2", image_processor: Any = None):
        if preprocess not in PREPROCESS:
            raise ValueError(f"unknown preprocess '{preprocess}'; valid: {', '.join(PREPROCESS)}")
        self.clip, self.tokenizer, self.preprocess, self.image_processor = clip, tokenizer, preprocess, image_processor
        self.image_size = clip.config.vision_config.image_size
        self.context_length = clip.config.text_config.max_position_embeddings

    def pixel_values(self, images: np.ndarray) -> "torch.Tensor":
        if self.preprocess == "clip":
            return clip_features.pixel_values(self.image_processor, images)
        return hpsv2_pixel_values(images, self.image_size)

    def token_ids(self, prompts: list[str]) -> "torch.Tensor":
        """(N, L) int64: <|startoftext|> BPE ... <|endoftext|>, truncated to 77 (the last kept token
        replaced by <|endoftext|>), padded after it."""
        cleaned = [clean_prompt(p) for p in prompts]
        return self.tokenizer(cleaned, padding=True, truncation=True, max_length=self.context_length, return_tensors="pt")["input_ids"]

    def image_features(self, images: np.ndarray) -> "torch.Tensor":
        """(N, D) float32, unit norm: ln_post(CLS token) @ proj."""
        return clip_features.image_embeddings(self.clip, self.pixel_values(images))

    def text_features(self, prompts: list[str]) -> "torch.Tensor":
        """(N, D) float32, unit norm: ln_final(causal transformer)[EOT] @ text_projection, where the
        EOT position is argmax(token ids) as in open_clip (<|endoftext|> is the highest id)."""
        import torch

        ids = self.token_ids(prompts).to(next(self.clip.parameters()).device)
        with torch.inference_mode():
            # No padding mask: like open_clip, only the causal mask; tokens after EOT cannot reach it.
            hidden = self.clip.text_model(input_ids=ids).last_hidden_state  # (N, L, width), final LN applied
            pooled = hidden[torch.arange(ids.shape[0], device=ids.device), ids.argmax(dim=-1)]
            embeds = self.clip.text_projection(pooled).float()  # (N, D)
        return embeds / torch.linalg.vector_norm(embeds, dim=-1, keepdim=True)

    def __call__(self, images: np.ndarray, prompts: list[str]) -> np.ndarray:
        clip_features.check_batch(images, prompts)
        image, text = self.image_features(images), self.text_features(prompts)
        return (image * text).sum(dim=-1).double().cpu().numpy()  # row n: image n against prompt n


def checkpoint_path(checkpoint: str | None, name: str) -> str:
    """A local checkpoint file, or the version's release file from the hub (cached by huggingface_hub)."""
    if checkpoint is not None:
        path = os.path.expanduser(str(checkpoint))
        if not os.path.isfile(path):
            raise ValueError(f"HPSv2 checkpoint file not found: {checkpoint}")
        return path
    filename = CHECKPOINT_FILES[name]
    try:
        from huggingface_hub import hf_hub_download

        return hf_hub_download(HUB_REPO, filename)
    except Exception as err:  # offline, no network, gated: say what to do instead
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(
            f"the '{name}' reward needs {filename} (hub repo {HUB_REPO}) and could not download it: {first}; "
            f"download it and pass checkpoint=PATH (CLI: --option checkpoint=PATH)"
        ) from None


def build_hpsv2(
    name: str,
    device: str = "cpu",
    checkpoint: str | None = None,
    processor: str = DEFAULT_PROCESSOR,
    tokenizer: str | None = None,
    preprocess: str = "hpsv2",
    config: str | None = None,
    dtype: str = "float32",
) -> HPSv2Scorer:
    if preprocess not in PREPROCESS:  # before any download or model load
        raise ValueError(f"unknown preprocess '{preprocess}'; valid: {', '.join(PREPROCESS)}")
    clip_config = load_clip_config(config)
    path = checkpoint_path(checkpoint, name)  # first: without it nothing else is worth loading
    tok = clip_features.load_tokenizer(tokenizer or processor)
    image_processor = clip_features.load_image_processor(processor) if preprocess == "clip" else None
    clip = load_hpsv2_clip(path, clip_config, device, dtype)
    return HPSv2Scorer(clip, tok, preprocess, image_processor)


_NEEDS = (
    "transformers; `checkpoint` ({file} from the hub repo xswu/HPSv2, downloaded if not given), "
    "`processor` (tokenizer, default laion/CLIP-ViT-H-14-laion2B-s32B-b79K)"
)


@register_reward("hpsv2", needs=_NEEDS.format(file=CHECKPOINT_FILES["hpsv2"]))
def hpsv2(
    device: str = "cpu",
    checkpoint: str | None = None,
    processor: str = DEFAULT_PROCESSOR,
    tokenizer: str | None = None,
    preprocess: str = "hpsv2",
    config: str | None = None,
    dtype: str = "float32",
) -> RewardFn:
    """Options: checkpoint = HPS_v2_compressed.pt (default: download), processor / tokenizer = hub id or
    local dir of the CLIP ViT-H/14 tokenizer (and, for preprocess="clip", image processor),
    preprocess = "hpsv2" | "clip", config = architecture (default ViT-H/14), dtype of the model."""
    return build_hpsv2("hpsv2", device, checkpoint, processor, tokenizer, preprocess, config, dtype)


@register_reward("hpsv2.1", needs=_NEEDS.format(file=CHECKPOINT_FILES["hpsv2.1"]))
def hpsv2_1(
    device: str = "cpu",
    checkpoint: str | None = None,
    processor: str = DEFAULT_PROCESSOR,
    tokenizer: str | None = None,
    preprocess: str = "hpsv2",
    config: str | None = None,
    dtype: str = "float32",
) -> RewardFn:
    """HPSv2.1: the same model and options as `hpsv2`, checkpoint HPS_v2.1_compressed.pt."""
    return build_hpsv2("hpsv2.1", device, checkpoint, processor, tokenizer, preprocess, config, dtype)
