"""ImageReward v1.0 (Xu et al. 2023): BLIP's ViT-L/16 image encoder and BERT text encoder with
cross-attention, fine-tuned on human preferences, with a small MLP on the [CLS] output; run here as
transformers' BlipVisionModel + BlipTextModel (no image-reward, timm, fairscale or torchvision at run time).

    h     = BERT(prompt tokens, cross-attending to ViT(image))[:, 0]     first token ([CLS]) output
    r     = W5 W4 W3 W2 W1 h + b                                         five Linear layers, no activations
    score = (r - mu) / sigma,  mu = 0.16717362830052426, sigma = 1.0333394966054072

What it reproduces, from the ``image-reward`` 1.5 package: ``ImageReward.ImageReward.score`` and
``inference_rank`` (tokenizer call, image transform, ``blip.visual_encoder``, ``blip.text_encoder`` with
``encoder_hidden_states`` and an all-ones image mask, ``last_hidden_state[:, 0, :]``, ``mlp``,
``(rewards - self.mean) / self.std``); ``ImageReward._transform(224)``; ``MLP``; ``utils.load`` (a flat
state dict, weights only); ``models/BLIP/blip.py`` ``init_tokenizer`` (bert-base-uncased plus the
[DEC] and [ENC] special tokens) and ``create_vit("large")``; ``models/BLIP/vit.py``
``VisionTransformer.forward`` and ``models/BLIP/med.py`` ``BertModel.forward`` in its default
"multimodal" mode (the weights: rewards.blip_weights). The prompt is tokenized as the original does:
[CLS] WordPiece [SEP], truncated and padded to 35 tokens; the first token stays [CLS] (ImageReward
does not swap in BLIP's [ENC] token as BLIP's ITM head does). Adapted from that code, rewritten for
transformers; nothing is copied.

The checkpoint (option ``checkpoint``) is ``ImageReward.pt`` from the hub repo THUDM/ImageReward,
downloaded when not given: a torch.save'd state dict, read with torch.load(weights_only=True), its
keys renamed one by one (a key left over or missing is an error naming it).

Preprocessing (option ``preprocess``):
  "imagereward" (default) ImageReward's own transform: PIL bicubic resize of the shortest side to
          S (=224; the other side int(S * long / short)), center crop S x S (offsets rounded as
          torchvision does), pixels / 255, normalize with the OpenAI CLIP mean/std.
  "clip"  transformers' CLIP image processor (option ``processor``, default openai/clip-vit-large-patch14),
          as the SDPO reference applies it before scoring with the same model.
Option ``normalize`` (default true) applies (r - mu) / sigma; the SDPO reference reports the raw r
(normalize=false). Both are affine, so per-prompt advantages are the same either way.

Shapes: N images / prompts, S the image size (224), L = 35 tokens, P = (S / 16)^2 + 1 image tokens,
Dv the ViT width (1024), D the BERT width (768).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from rewards import clip_features
from rewards.checkpoint_file import checkpoint_file
from rewards.registry import RewardFn, register_reward

if TYPE_CHECKING:
    import torch

HUB_REPO, CHECKPOINT_FILE = "THUDM/ImageReward", "ImageReward.pt"
DEFAULT_TOKENIZER = "bert-base-uncased"
DEFAULT_PROCESSOR = "openai/clip-vit-large-patch14"
PREPROCESS = ("imagereward", "clip")
MAX_LENGTH = 35  # ImageReward.score: padding="max_length", truncation=True, max_length=35
REWARD_MEAN, REWARD_STD = 0.16717362830052426, 1.0333394966054072  # ImageReward.__init__: self.mean, self.std
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

# ---------------------------------------------------------------- inputs


def resized_size(height: int, width: int, size: int = 224) -> tuple[int, int]:
    """torchvision Resize(size) of a PIL image: the shortest side becomes `size`, the longest
    int(size * long / short) (truncated). Returns (new_height, new_width)."""
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(size * long / short)
    return (new_long, size) if width <= height else (size, new_long)


def imagereward_pixel_values(images: np.ndarray, size: int = 224) -> "torch.Tensor":
    """uint8 (N, H, W, 3) -> float32 (N, 3, size, size), ImageReward's transform (Resize(size, BICUBIC),
    CenterCrop(size), ToTensor, Normalize(OpenAI mean/std)) on the same PIL resize, without torchvision."""
    import torch
    from PIL import Image

    clip_features.check_batch(images)
    _, h, w, _ = images.shape
    new_h, new_w = resized_size(h, w, size)
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))  # torchvision center_crop
    crops = []
    for img in images:
        resized = Image.fromarray(img).resize((new_w, new_h), Image.BICUBIC)  # uint8 in, uint8 out, as on a PIL image
        crops.append(np.asarray(resized)[top : top + size, left : left + size])
    x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).to(torch.float32).div(255)  # (N, 3, S, S)
    mean = torch.tensor(OPENAI_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_STD, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - mean) / std


def load_bert_tokenizer(name_or_path: str) -> Any:
    """BLIP's tokenizer (blip.py init_tokenizer): BERT's uncased WordPiece plus [DEC] as bos token and
    [ENC] as an additional special token (ids 30522 and 30523 in bert-base-uncased)."""
    from transformers import BertTokenizer

    tok = BertTokenizer.from_pretrained(clip_features.checked_source(name_or_path))
    tok.add_special_tokens({"bos_token": "[DEC]"})
    tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return tok


# ---------------------------------------------------------------- the reward


class ImageRewardScorer:
    """Callable reward: (uint8 images (N, H, W, 3), N prompts) -> float64 ImageReward scores (N,)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        preprocess: str = "imagereward",
        image_processor: Any = None,
        normalize: bool = True,
    ):
        if preprocess not in PREPROCESS:
            raise ValueError(f"unknown preprocess '{preprocess}'; valid: {', '.join(PREPROCESS)}")
        self.model, self.tokenizer, self.preprocess, self.image_processor = (
            model,
            tokenizer,
            preprocess,
            image_processor,
        )
        self.normalize = bool(normalize)
        self.image_size = model.vision.config.image_size

    def pixel_values(self, images: np.ndarray) -> "torch.Tensor":
        if self.preprocess == "clip":
            return clip_features.pixel_values(self.image_processor, images)
        return imagereward_pixel_values(images, self.image_size)

    def tokens(self, prompts: list[str]) -> dict[str, "torch.Tensor"]:
        """input_ids and attention_mask, (N, 35) int64: [CLS] WordPiece [SEP] [PAD]..., cut to 35."""
        out = self.tokenizer(
            list(prompts), padding="max_length", truncation=True, max_length=MAX_LENGTH, return_tensors="pt"
        )
        return {"input_ids": out["input_ids"], "attention_mask": out["attention_mask"]}

    def features(self, images: np.ndarray, prompts: list[str]) -> "torch.Tensor":
        """(N, D) float32: the text encoder's first-token output, cross-attending to the image tokens."""
        import torch

        param = next(self.model.parameters())
        pixels = self.pixel_values(images).to(param.device, param.dtype)  # (N, 3, S, S)
        tokens = {k: v.to(param.device) for k, v in self.tokens(prompts).items()}  # (N, L) each
        with torch.inference_mode():
            image_embeds = self.model.vision(
                pixel_values=pixels
            ).last_hidden_state  # (N, P, Dv), final LayerNorm applied
            # No encoder_attention_mask: the original's is all ones (every image token attended).
            hidden = self.model.text(**tokens, encoder_hidden_states=image_embeds).last_hidden_state  # (N, L, D)
        return hidden[:, 0, :].float()

    def __call__(self, images: np.ndarray, prompts: list[str]) -> np.ndarray:
        import torch

        clip_features.check_batch(images, prompts)
        feats = self.features(images, prompts)  # (N, D)
        head = self.model.head
        with torch.inference_mode():
            rewards = head(feats.to(next(head.parameters()).dtype)).float().squeeze(-1)  # (N,)
        if self.normalize:
            rewards = (rewards - REWARD_MEAN) / REWARD_STD
        return rewards.double().cpu().numpy()


def checkpoint_path(checkpoint: str | None) -> str:
    """A local checkpoint file, or ImageReward.pt from the hub (cached by huggingface_hub)."""
    return checkpoint_file(checkpoint, "ImageReward", "imagereward", HUB_REPO, CHECKPOINT_FILE, "--model PATH")


@register_reward(
    "imagereward",
    needs=f"transformers; `checkpoint` ({CHECKPOINT_FILE} from the hub repo {HUB_REPO}, downloaded if not given), "
    f"`tokenizer` (default {DEFAULT_TOKENIZER})",
)
def imagereward(
    device: str = "cpu",
    checkpoint: str | None = None,
    tokenizer: str = DEFAULT_TOKENIZER,
    preprocess: str = "imagereward",
    processor: str = DEFAULT_PROCESSOR,
    normalize: bool = True,
    config: str | None = None,
    dtype: str = "float32",
) -> RewardFn:
    """Options: checkpoint = ImageReward.pt (default: download), tokenizer = hub id or local dir of the BERT
    uncased vocabulary, preprocess = "imagereward" | "clip", processor = the CLIP image processor for
    preprocess="clip", normalize = apply ImageReward's published mean/std, config = architecture
    (default ViT-L/16 + BERT-base), dtype of the model."""
    from rewards.blip_weights import load_arch, load_image_reward

    if preprocess not in PREPROCESS:  # before any download or model load
        raise ValueError(f"unknown preprocess '{preprocess}'; valid: {', '.join(PREPROCESS)}")
    if not isinstance(normalize, bool):
        raise ValueError(f"imagereward option normalize must be true or false, got {normalize!r}")
    arch = load_arch(config)
    torch_dtype = clip_features.torch_dtype(dtype)
    path = checkpoint_path(checkpoint)  # first: without it nothing else is worth loading
    tok = load_bert_tokenizer(tokenizer)
    image_processor = clip_features.load_image_processor(processor) if preprocess == "clip" else None
    model = load_image_reward(path, arch, device, torch_dtype)
    return ImageRewardScorer(model, tok, preprocess, image_processor, normalize)
