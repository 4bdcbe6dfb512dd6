"""The aesthetic reward on a tiny random CLIP + LAION-layout head, loaded as a real checkpoint is."""

import numpy as np
import pytest
import torch

from rewards.clip_features import load_image_processor, pixel_values
from rewards.registry import build_reward


def _by_hand(model_dir, head_path, images) -> np.ndarray:
    """CLIP image features from the library's own forward, normalized, then the head as plain matmuls:
    h <- h W_i^T + b_i for the Linear layers 0, 2, 4, 6, 7 (Dropout is identity in eval, no activations).
    Pixels come from the pinned PIL processor (itself checked in test_clip_features.py)."""
    from transformers import CLIPModel

    model = CLIPModel.from_pretrained(model_dir).eval()
    pixels = pixel_values(load_image_processor(model_dir), images)
    with torch.no_grad():
        e = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)  # (N, 16)
    h = e / e.norm(dim=-1, keepdim=True)
    state = torch.load(head_path, weights_only=True)
    for i in (0, 2, 4, 6, 7):
        h = h @ state[f"layers.{i}.weight"].T + state[f"layers.{i}.bias"]
    return h[:, 0].double().numpy()  # (N,)


@pytest.fixture(scope="module")
def reward(tiny_clip_dir, aesthetic_head):
    return build_reward("aesthetic", model=str(tiny_clip_dir), head=str(aesthetic_head))


def test_scores_match_hand_computation(reward, tiny_clip_dir, aesthetic_head, images):
    scores = reward(images, ["a cat"] * 3)
    assert scores.shape == (3,) and scores.dtype == np.float64 and np.isfinite(scores).all()
    np.testing.assert_allclose(scores, _by_hand(tiny_clip_dir, aesthetic_head, images), rtol=1e-5, atol=1e-6)


def test_scores_follow_images_not_prompts(reward, images):
    scores = reward(images, ["a", "b", "c"])
    np.testing.assert_array_equal(scores, reward(images, ["x", "y", "z"]))
    assert not np.allclose(scores, reward(255 - images, ["a", "b", "c"]))
    assert len(np.unique(scores)) == 3  # three different random images, three different scores


def test_batch_equals_one_at_a_time(reward, images):
    one_by_one = np.concatenate([reward(images[i : i + 1], ["p"]) for i in range(len(images))])
    np.testing.assert_allclose(reward(images, ["p"] * 3), one_by_one, rtol=1e-5, atol=1e-6)


def test_safetensors_head_gives_same_scores(reward, tiny_clip_dir, tmp_path, images, make_head):
    head = make_head(tmp_path / "head.safetensors")  # same seed as the .pth fixture
    from_safetensors = build_reward("aesthetic", model=str(tiny_clip_dir), head=str(head))
    np.testing.assert_allclose(from_safetensors(images, [""] * 3), reward(images, [""] * 3), rtol=1e-6)


def test_bad_heads_are_user_errors(tiny_clip_dir, tmp_path, make_head):
    with pytest.raises(ValueError, match="needs head=PATH"):
        build_reward("aesthetic", model=str(tiny_clip_dir))
    wide = make_head(tmp_path / "vit_l14.pth", input_dim=768)
    with pytest.raises(ValueError, match="takes 768-dim embeddings but the CLIP model projects to 16"):
        build_reward("aesthetic", model=str(tiny_clip_dir), head=str(wide))
    torch.save({"0.weight": torch.zeros(1)}, tmp_path / "bare.pth")
    with pytest.raises(ValueError, match=r"expected keys \['layers.0.weight'"):
        build_reward("aesthetic", model=str(tiny_clip_dir), head=str(tmp_path / "bare.pth"))
