"""The dense reward difference objective of SDPO (spec section 5). Pure torch: no ray, no diffusers.

Notation (paper <- code), for a minibatch of M pairs at one step j each (k = 1, 2 is the pair axis):
    log pi_theta(x^k_{j+1}|x^k_j)  <- new_log_probs[:, k]   (M, 2)
    log pi_old(x^k_{j+1}|x^k_j)    <- old_log_probs[:, k]   (M, 2)
    A^k[j]                         <- advantages[:, k]      (M, 2), already clipped
    w_j = lam**j / log_scale       <- weights               (M,)
    rho_k = new - old;  L = (w_j (rho_1 - rho_2) - (A^1 - A^2))^2, and the same with
    new clamped to old +- clip_range; loss = mean(max(L_unclip, L_clip));
    clipfrac = mean(L_clip > L_unclip), as the reference logs it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from actors.similarity import dense_rewards
from learner.algo.advantages import SparseRewards, StepStatTracker, clip_advantages, discounted_returns, normalized


class SDPOLoss(NamedTuple):
    loss: torch.Tensor  # scalar
    clipfrac: (
        torch.Tensor
    )  # scalar: fraction of pairs whose clipped loss term exceeds the unclipped one (the reference's)
    approx_kl: torch.Tensor  # scalar: 0.5 * mean((new - old)^2)


def temporal_weights(num_steps: int, lam: float = 0.99, log_scale: float = 1.0) -> torch.Tensor:
    """w_j = lam**j / log_scale for j = 0..T-1: (T,). Early (noisy) steps weigh more."""
    return lam ** torch.arange(num_steps, dtype=torch.float32) / log_scale


def sdpo_loss(
    new_log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    weights: torch.Tensor,
    clip_range: float = 1e-4,
) -> SDPOLoss:
    # 1. per-trajectory log-ratios and their pair difference
    log_ratio = new_log_probs - old_log_probs  # (M, 2)
    log_diff = log_ratio[:, 0] - log_ratio[:, 1]  # (M,)
    adv_diff = advantages[:, 0] - advantages[:, 1]  # (M,)
    # 2. regress the weighted log-ratio difference onto the advantage difference
    loss_unclipped = (weights * log_diff - adv_diff) ** 2
    if clip_range > 0:
        # 3. the same with each new log-prob clamped to old +- clip_range
        clamped = torch.maximum(torch.minimum(new_log_probs, old_log_probs + clip_range), old_log_probs - clip_range)
        clipped_ratio = clamped - old_log_probs
        loss_clipped = (weights * (clipped_ratio[:, 0] - clipped_ratio[:, 1]) - adv_diff) ** 2
        loss = torch.maximum(loss_unclipped, loss_clipped).mean()
        clipfrac = (loss_clipped > loss_unclipped).float().mean()
    else:
        loss = loss_unclipped.mean()
        clipfrac = torch.zeros((), device=loss.device)
    approx_kl = 0.5 * (log_ratio.detach() ** 2).mean()
    return SDPOLoss(loss, clipfrac.detach(), approx_kl)


def sdpo_advantages(
    sparse: SparseRewards,
    tracker: StepStatTracker | None,
    *,
    gamma: float,
    adv_clip_max: float,
    similarity_floor: float,
) -> np.ndarray:
    """Sparse rewards (B, P, K+2) -> SDPO's stepwise advantages (B, P, T) (spec sections 3-4):
    dense rewards by latent similarity, discounted returns, per-(prompt, step) normalization, clip."""
    B, P, Q, T = sparse.similarities.shape
    dense = dense_rewards(
        torch.as_tensor(sparse.rewards).flatten(0, 1),  # (B*P, K+2)
        sparse.query_steps.flatten(0, 1),  # (B*P, K+2)
        sparse.similarities.flatten(0, 1),  # (B*P, K+2, T)
        similarity_floor,
    )  # (B*P, T)
    returns = discounted_returns(dense.double().numpy(), gamma).reshape(B, P, T)  # (B, P, T)
    return clip_advantages(normalized(returns, sparse.prompts, sparse.shard, tracker), adv_clip_max)
