"""The latent-similarity dense-reward predictor (spec section 3). Pure torch: no ray, no diffusers.

Notation (paper <- code), per trajectory with T steps:
    x0_i            <- pred_x0[:, i]         predicted clean ("dual") state of step i
    s_q[i]          <- similarities[:, k, i] cos(x0_i, x0_q) for the k-th queried step q
    q = 0, a, T-1   <- query_steps[:, k]     first step, anchor(s), last step (sorted)
    r_q             <- sparse_rewards[:, k]  reward-model score of the decoded x0_q
    r[i]            <- dense rewards         sum_k r_qk s_qk[i] / sum_k s_qk[i], exact at queried steps
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class AnchorSelection(NamedTuple):
    query_steps: torch.Tensor  # (N, K+2) long, sorted: 0, anchors..., T-1
    similarities: torch.Tensor  # (N, K+2, T) cos(x0_i, x0_q) for each query q and step i


def cosine_to_steps(pred_x0: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """cos(x0_i, x0_{steps[n]}) for every step i: pred_x0 (N, T, C, h, w), steps (N,) -> (N, T)."""
    flat = pred_x0.flatten(2).float()  # (N, T, C*h*w)
    ref = flat[torch.arange(flat.shape[0]), steps.long()]  # (N, C*h*w)
    return torch.cosine_similarity(flat, ref[:, None, :], dim=-1)  # (N, T)


def select_anchors(pred_x0: torch.Tensor, num_anchors: int = 1) -> AnchorSelection:
    """Choose anchors greedily: each is the step least similar (summed cosine) to the steps chosen so far.

    With one anchor this is a = argmin_i (s_first[i] + s_last[i]) over the steps strictly between
    the first and the last (a queried step is never chosen twice).
    """
    N, T = pred_x0.shape[:2]
    if T < num_anchors + 2:
        raise ValueError(f"{num_anchors} anchor(s) need at least {num_anchors + 2} steps, got T={T}")
    rows = torch.arange(N)
    first, last = torch.zeros(N, dtype=torch.long), torch.full((N,), T - 1, dtype=torch.long)
    chosen = [first, last]
    sims = [cosine_to_steps(pred_x0, first), cosine_to_steps(pred_x0, last)]  # each (N, T)
    for _ in range(num_anchors):
        score = torch.stack(sims).sum(0)  # (N, T)
        for c in chosen:
            score[rows, c] = float("inf")
        anchor = score.argmin(dim=1)  # (N,)
        chosen.append(anchor)
        sims.append(cosine_to_steps(pred_x0, anchor))
    steps = torch.stack(chosen, dim=1)  # (N, K+2), unsorted: first, last, anchors
    sims_t = torch.stack(sims, dim=1)  # (N, K+2, T)
    order = steps.argsort(dim=1)  # sort queries by step
    return AnchorSelection(steps.gather(1, order), sims_t.gather(1, order[:, :, None].expand_as(sims_t)))


def dense_rewards(
    sparse_rewards: torch.Tensor, query_steps: torch.Tensor, similarities: torch.Tensor, floor: float = 1e-3
) -> torch.Tensor:
    """Fill every step's reward from the queried ones: (N, K+2), (N, K+2), (N, K+2, T) -> (N, T).

    Similarities are clamped to >= `floor` first, so the weights are positive and every dense reward is
    a convex combination of the sparse ones, even for unrelated (near-zero or negative cosine) latents.
    """
    weights = similarities.float().clamp(min=floor)  # (N, K+2, T)
    r = (sparse_rewards.float()[:, :, None] * weights).sum(1) / weights.sum(1)  # (N, T)
    return r.scatter(1, query_steps.long(), sparse_rewards.float())  # exact at the queried steps
