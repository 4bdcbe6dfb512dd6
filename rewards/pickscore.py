"""PickScore v1 (Kirstain et al. 2023): a CLIP ViT-H/14 fine-tuned on human preferences (Pick-a-Pic).

    score = exp(logit_scale) * cos(e_img, e_txt)      (raw_cosine=True: cos(e_img, e_txt) alone)

as in the PickScore README. exp(logit_scale) of the real model is about 100 (CLIP's clamp), so scores
are roughly 100x the cosine, around 20 for typical images; the SDPO reference reports the plain
cosine, which `raw_cosine=True` returns. Model weights: yuvalkirstain/PickScore_v1; tokenizer and
image processor: laion/CLIP-ViT-H-14-laion2B-s32B-b79K (either may be a local directory).
"""

from __future__ import annotations

import numpy as np

from rewards import clip_features
from rewards.registry import RewardFn, register_reward

DEFAULT_MODEL = "yuvalkirstain/PickScore_v1"
DEFAULT_PROCESSOR = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"


@register_reward(
    "pickscore",
    needs="transformers; `model` (default yuvalkirstain/PickScore_v1), `processor` (default "
    "laion/CLIP-ViT-H-14-laion2B-s32B-b79K)",
)
def pickscore(
    device: str = "cpu",
    model: str = DEFAULT_MODEL,
    processor: str = DEFAULT_PROCESSOR,
    raw_cosine: bool = False,
    dtype: str = "float32",
) -> RewardFn:
    """Options: model / processor = hub ids or local dirs, raw_cosine = return cos instead of
    exp(logit_scale) * cos, dtype of the CLIP towers."""
    clip = clip_features.load_clip_model(model, device, dtype)
    image_processor = clip_features.load_image_processor(processor)
    tokenizer = clip_features.load_tokenizer(processor)
    scale = 1.0 if raw_cosine else clip.logit_scale.exp().item()

    def score(images: np.ndarray, prompts: list[str]) -> np.ndarray:
        clip_features.check_batch(images, prompts)
        image = clip_features.image_embeddings(clip, clip_features.pixel_values(image_processor, images))  # (N, D)
        text = clip_features.text_embeddings(clip, tokenizer, prompts)  # (N, D)
        cosine = (image * text).sum(dim=-1)  # (N,) row-wise: image n against its own prompt n
        return scale * cosine.double().cpu().numpy()

    return score
