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
(``rewards.open_clip_weights``): a key left over or missing is an error naming it.

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
import re
import unicodedata
from typing import TYPE_CHECKING, Any

import numpy as np

from rewards import clip_features
from rewards.checkpoint_file import checkpoint_file
from rewards.open_clip_weights import load_clip_config, load_hpsv2_clip
from rewards.registry import RewardFn, register_reward

if TYPE_CHECKING:
    import torch

HUB_REPO = "xswu/HPSv2"
CHECKPOINT_FILES = {"hpsv2": "HPS_v2_compressed.pt", "hpsv2.1": "HPS_v2.1_compressed.pt"}
DEFAULT_PROCESSOR = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
PREPROCESS = ("hpsv2", "clip")
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

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
_CONTROL = dict.fromkeys(
    [*range(0x00, 0x09), 0x0B, *range(0x0E, 0x20), 0x7F, *range(0x206A, 0x2070), 0xFEFF, *range(0xFFF9, 0xFFFD)]
)
_COMPAT = {  # typographic ligatures and half/full-width forms -> plain letters (NFKC of each)
    c: unicodedata.normalize("NFKC", chr(c))
    for c in [
        0x132,
        0x133,
        0x149,
        *range(0x1C4, 0x1CD),
        *range(0x1F1, 0x1F4),
        *range(0xFB00, 0xFB07),
        0x3000,
        *range(0xFF01, 0xFFF0),
    ]
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
        return self.tokenizer(
            cleaned, padding=True, truncation=True, max_length=self.context_length, return_tensors="pt"
        )["input_ids"]

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
    return checkpoint_file(checkpoint, "HPSv2", name, HUB_REPO, CHECKPOINT_FILES[name], "--option checkpoint=PATH")


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


def _factory(version: str):
    """The reward factory of one HPSv2 version. Its options are its keyword parameters (the registry
    reads them from the signature), the same for both versions."""

    def factory(
        device: str = "cpu",
        checkpoint: str | None = None,
        processor: str = DEFAULT_PROCESSOR,
        tokenizer: str | None = None,
        preprocess: str = "hpsv2",
        config: str | None = None,
        dtype: str = "float32",
    ) -> RewardFn:
        return build_hpsv2(version, device, checkpoint, processor, tokenizer, preprocess, config, dtype)

    factory.__name__ = version.replace(".", "_")
    factory.__doc__ = (
        f"Options: checkpoint = {CHECKPOINT_FILES[version]} (default: download), processor / tokenizer = hub id or "
        'local dir of the CLIP ViT-H/14 tokenizer (and, for preprocess="clip", image processor), preprocess = '
        '"hpsv2" | "clip", config = architecture (default ViT-H/14), dtype of the model.'
    )
    return factory


for _version, _file in CHECKPOINT_FILES.items():
    register_reward(_version, needs=_NEEDS.format(file=_file))(_factory(_version))
