"""A weighted sum of registered rewards: r = sum_k w_k * r_k, with the parts r_k kept for logging."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rewards.registry import RewardFn, build_reward, reward_spec


@dataclass(frozen=True)
class WeightedReward:
    """Call it like any RewardFn; `components` gives each part's scores so per-reward means can be logged."""

    weights: dict[str, float]  # reward name -> w_k
    rewards: dict[str, RewardFn]  # reward name -> built reward, same keys as weights

    def components(self, images: np.ndarray, prompts: list[str]) -> dict[str, np.ndarray]:
        """uint8 (N, H, W, 3), N prompts -> {name: float64 (N,)}, unweighted."""
        return {name: np.asarray(fn(images, prompts), dtype=np.float64) for name, fn in self.rewards.items()}

    def combine(self, components: dict[str, np.ndarray]) -> np.ndarray:
        """{name: (N,)} -> sum_k w_k * r_k, float64 (N,)."""
        return sum(self.weights[name] * components[name] for name in self.weights)

    def __call__(self, images: np.ndarray, prompts: list[str]) -> np.ndarray:
        return self.combine(self.components(images, prompts))


def build_weighted_reward(
    weights: dict[str, float], device: str = "cpu", options: dict[str, dict] | None = None
) -> WeightedReward:
    """Build each named reward with its options (options[name] -> factory keywords) and weight them."""
    options = options or {}
    if not weights:
        raise ValueError("a weighted reward needs at least one reward in `weights`")
    for name in weights:
        reward_spec(name)  # unknown names fail here, listing the valid ones, before any model loads
    stray = sorted(set(options) - set(weights))
    if stray:
        raise ValueError(f"options given for rewards without a weight: {stray}; weighted rewards: {sorted(weights)}")
    rewards = {name: build_reward(name, device=device, **options.get(name, {})) for name in weights}
    return WeightedReward(weights=dict(weights), rewards=rewards)
