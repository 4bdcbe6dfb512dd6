"""DDPO, the baseline run on the same actors, reward service and learner (config `algorithm: ddpo`):
PPO's clipped surrogate on the final-image reward (Black et al. 2023, "Training Diffusion Models with
Reinforcement Learning"). Pure numpy/torch: no ray, no diffusers.

Adapted from ddpo-pytorch (kvablack/ddpo-pytorch: scripts/train.py's PPO step and
ddpo_pytorch/stat_tracking.py's PerPromptStatTracker). Changed: (a) the rollout is SDPO's, pairs
sharing an initial noise, and the pair axis P = 2 is treated as two independent trajectories of the
same prompt; (b) per-prompt tracking is this project's StepStatTracker with a single "step", which is
the same FIFO rule (buffer per prompt; batch statistics until it holds min_count values);
(c) nothing else: by default the reward scores the decoded final latent x_T as ddpo-pytorch does
(its pipeline_with_logprob returns the decoded last latent, scripts/train.py line 336, scored at
line 382; config `sampling.reward_queries: final`), and an optimizer step accumulates all timesteps
of its samples (`train.schedule: trajectory`, learner.algo.minibatches). `reward_queries: anchors`
scores x0_{T-1} (the state SDPO scores as its final sample) instead, and `schedule: step_shuffled`
gives DDPO SDPO's schedule: the ablations that separate SDPO's objective from its schedule.

Notation (paper <- code):
    r(x_T)                     <- final_rewards       (B, P): the last query's reward
    A = (r - mean) / (std + eps), clipped to +- adv_clip_max, the same at every step i
                               <- advantages          (B, P, T)
    ratio = pi_theta / pi_old  <- exp(new - old)      (M, P) one step per trajectory
    L = mean(max(-A * ratio, -A * clip(ratio, 1 - clip_range, 1 + clip_range)))
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from learner.algo.advantages import SparseRewards, StepStatTracker, clip_advantages, normalized


class DDPOLoss(NamedTuple):
    loss: torch.Tensor  # scalar
    clipfrac: torch.Tensor  # scalar: fraction of ratios outside 1 +- clip_range
    approx_kl: torch.Tensor  # scalar: 0.5 * mean((new - old)^2)


def ddpo_advantages(sparse: SparseRewards, tracker: StepStatTracker | None, *, adv_clip_max: float) -> np.ndarray:
    """Final rewards (B, P) of B prompts -> per-trajectory advantages (B, P, T), the same at every step.
    Per-prompt tracking (both trajectories of a pair count for its prompt), in the reference's order."""
    T = sparse.similarities.shape[-1]
    final = np.asarray(sparse.rewards, dtype=np.float64)[:, :, -1:]  # (B, P, 1): the last query's (x_T, or x0_{T-1})
    adv = clip_advantages(normalized(final, sparse.prompts, sparse.shard, tracker), adv_clip_max)  # (B, P, 1)
    return np.repeat(adv, T, axis=2)  # (B, P, T)


def ddpo_loss(
    new_log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    clip_range: float = 1e-4,
) -> DDPOLoss:
    """PPO's clipped loss over trajectory-steps; all inputs the same shape, e.g. (M, P)."""
    # 1. importance ratio of each trajectory-step
    log_ratio = new_log_probs - old_log_probs
    ratio = torch.exp(log_ratio)
    # 2. the pessimistic (larger) of the unclipped and clipped negated surrogates
    unclipped = -advantages * ratio
    if clip_range > 0:
        clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
        loss = torch.maximum(unclipped, clipped).mean()
        clipfrac = ((ratio.detach() - 1.0).abs() > clip_range).float().mean()
    else:
        loss = unclipped.mean()
        clipfrac = torch.zeros((), device=loss.device)
    approx_kl = 0.5 * (log_ratio.detach() ** 2).mean()
    return DDPOLoss(loss, clipfrac, approx_kl)
