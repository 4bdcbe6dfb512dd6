"""Algorithms by name (config `algorithm`): each is its advantage function and its loss. Pure
torch/numpy: no ray, no diffusers.

    advantages(SparseRewards, tracker, gamma=, adv_clip_max=, similarity_floor=) -> (B, P, T)
    loss(new_log_probs (M, P), old_log_probs (M, P), advantages (M, P), temporal weights w_j (M,),
         clip_range) -> a named (loss, clipfrac, approx_kl)
SDPO uses the temporal weights; DDPO has none. Each algorithm also names its own update schedule
(learner.algo.minibatches) and the states its reward scores (sampling.reward_queries), which the
config's 'auto' resolves to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from actors.errors import UsageError
from learner.algo.ddpo import ddpo_advantages, ddpo_loss
from learner.algo.sdpo import sdpo_advantages, sdpo_loss


@dataclass(frozen=True)
class Algorithm:
    name: str
    advantages: Callable
    loss: Callable
    schedule: str  # train.schedule when 'auto'
    reward_queries: str  # sampling.reward_queries when 'auto'


ALGORITHMS: dict[str, Algorithm] = {
    "sdpo": Algorithm("sdpo", sdpo_advantages, sdpo_loss, "step_shuffled", "anchors"),
    "ddpo": Algorithm(
        "ddpo", ddpo_advantages, lambda new, old, adv, weights, clip_range: ddpo_loss(new, old, adv, clip_range),
        "trajectory", "final",
    ),
}


def get_algorithm(name: str) -> Algorithm:
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise UsageError(f"unknown algorithm {name!r}; valid names: {', '.join(sorted(ALGORITHMS))}") from None
