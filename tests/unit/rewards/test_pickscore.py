"""PickScore on a tiny random CLIP: exp(logit_scale) * cos(image, prompt), or the raw cosine."""

import numpy as np
import pytest
import torch

from rewards.clip_features import load_image_processor, pixel_values
from rewards.registry import build_reward


@pytest.fixture(scope="module")
def rewards(tiny_clip_dir):
    d = str(tiny_clip_dir)
    return (
        build_reward("pickscore", model=d, processor=d),
        build_reward("pickscore", model=d, processor=d, raw_cosine=True),
    )


PROMPTS = ["a cat", "a photo of a dog", "an owl in the snow"]


def test_score_is_logit_scale_times_raw_cosine(rewards, tiny_clip_dir, images):
    from transformers import CLIPModel

    scaled, raw = rewards[0](images, PROMPTS), rewards[1](images, PROMPTS)
    assert scaled.shape == raw.shape == (3,) and scaled.dtype == raw.dtype == np.float64
    assert np.isfinite(scaled).all() and (np.abs(raw) <= 1 + 1e-6).all()
    scale = CLIPModel.from_pretrained(tiny_clip_dir).logit_scale.exp().item()  # 1/0.07 ~ 14.3 for a fresh CLIP
    assert scale > 10
    np.testing.assert_allclose(scaled, scale * raw, rtol=1e-6)


def test_matches_library_clip_forward(rewards, tiny_clip_dir, images):
    """CLIPModel.forward's logits_per_image[n, n] is exactly exp(logit_scale) * cos(image n, prompt n).
    Pixels come from the pinned PIL processor (itself checked in test_clip_features.py)."""
    from transformers import AutoTokenizer, CLIPModel

    model = CLIPModel.from_pretrained(tiny_clip_dir).eval()
    tokens = AutoTokenizer.from_pretrained(tiny_clip_dir)(PROMPTS, padding=True, return_tensors="pt")
    pixels = pixel_values(load_image_processor(tiny_clip_dir), images)
    with torch.no_grad():
        logits = model(**tokens, pixel_values=pixels).logits_per_image  # (N images, N prompts)
    np.testing.assert_allclose(rewards[0](images, PROMPTS), torch.diagonal(logits).double().numpy(), rtol=1e-5)


def test_scores_follow_images_and_prompts(rewards, images):
    scaled = rewards[0]
    base = scaled(images, PROMPTS)
    assert not np.allclose(base, scaled(255 - images, PROMPTS))
    assert not np.allclose(base, scaled(images, ["zebra", "rocket ship", "qqq"]))
    with pytest.raises(ValueError, match="3 images but 2 prompts"):
        scaled(images, PROMPTS[:2])
