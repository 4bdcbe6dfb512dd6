"""Algorithms by name (config `algorithm`). Each fills the same typed seam, with no adapters:

    advantages(SparseRewards, tracker, AdvantageSettings) -> (B, P, T)
    loss(StepItems: new_log_probs, old_log_probs, advantages (M, P), temporal weights w_j (M,),
         clip_range) -> a named (loss, clipfrac, approx_kl)

SDPO uses every setting and the temporal weights; DDPO uses only the advantage clip, and weights
every step alike. Each algorithm also names its own update schedule (learner.algo.minibatches) and
the states its reward scores (sampling.reward_queries), which the config's 'auto' resolves to.
Pure torch/numpy: no ray, no diffusers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, NamedTuple

import numpy as np
import torch

from learner.algo.advantages import SparseRewards, StepStatTracker
from learner.algo.ddpo import DDPOLoss, ddpo_advantages, ddpo_loss
from learner.algo.sdpo import SDPOLoss, sdpo_advantages, sdpo_loss
from plumbing.errors import UsageError


class AdvantageSettings(NamedTuple):
    """The train/sampling settings an advantage function may use."""

    gamma: float  # train.gamma: discount of the stepwise returns
    adv_clip_max: float  # train.adv_clip_max
    similarity_floor: float  # sampling.similarity_floor: of the dense rewards' latent similarity


class StepItems(NamedTuple):
    """One minibatch of (pair, step) items for the loss, each (M, P) but the weights (M,)."""

    new_log_probs: torch.Tensor
    old_log_probs: torch.Tensor
    advantages: torch.Tensor
    weights: torch.Tensor  # SDPO's temporal weight w_j of each item's step


class Algorithm(ABC):
    name: ClassVar[str]
    schedule: ClassVar[str]  # train.schedule when 'auto'
    reward_queries: ClassVar[str]  # sampling.reward_queries when 'auto'

    @abstractmethod
    def advantages(
        self, sparse: SparseRewards, tracker: StepStatTracker | None, settings: AdvantageSettings
    ) -> np.ndarray: ...

    @abstractmethod
    def loss(self, items: StepItems, clip_range: float) -> SDPOLoss | DDPOLoss: ...


class SDPO(Algorithm):
    name, schedule, reward_queries = "sdpo", "step_shuffled", "anchors"

    def advantages(self, sparse, tracker, settings):
        return sdpo_advantages(
            sparse,
            tracker,
            gamma=settings.gamma,
            adv_clip_max=settings.adv_clip_max,
            similarity_floor=settings.similarity_floor,
        )

    def loss(self, items, clip_range):
        return sdpo_loss(items.new_log_probs, items.old_log_probs, items.advantages, items.weights, clip_range)


class DDPO(Algorithm):
    name, schedule, reward_queries = "ddpo", "trajectory", "final"

    def advantages(self, sparse, tracker, settings):
        return ddpo_advantages(sparse, tracker, adv_clip_max=settings.adv_clip_max)

    def loss(self, items, clip_range):  # PPO's clipped loss: every step weighs the same
        return ddpo_loss(items.new_log_probs, items.old_log_probs, items.advantages, clip_range)


ALGORITHMS: dict[str, Algorithm] = {a.name: a for a in (SDPO(), DDPO())}


def get_algorithm(name: str) -> Algorithm:
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise UsageError(f"unknown algorithm {name!r}; valid names: {', '.join(sorted(ALGORITHMS))}") from None
