"""`shapes_classifier`: the learned reward of the embedded shapes task (rewards/shapes_net.py). It
scores how well an image shows its caption: the mean over colour, shape, size and position of the
probability a CNN trained on the dataset gives the stated value, in [0, 1]."""

from __future__ import annotations

import numpy as np

from rewards.registry import RewardFn, register_reward


@register_reward("shapes_classifier", needs="nothing (weights committed under rewards/assets/shapes-classifier)")
def shapes_classifier(device: str = "cpu", weights: str | None = None) -> RewardFn:
    """Options: weights = directory holding model.safetensors (default: the committed one)."""
    import torch

    from rewards import shapes_net

    model = shapes_net.load(weights or shapes_net.DEFAULT_DIR, device)

    def score(images: np.ndarray, prompts: list[str]) -> np.ndarray:
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        with torch.inference_mode():
            probs = shapes_net.factor_probabilities(
                model, shapes_net.to_pixels(images).to(device), shapes_net.targets(prompts).to(device)
            )  # (N, 4)
        return probs.mean(dim=1).double().cpu().numpy()

    return score
