"""The Gaussian policy step shared by every stochastic sampler (DDIM at eta > 0, the flow SDE): draw
the next state from N(mean, std^2), or take the one given, and its log-probability."""

from __future__ import annotations

import math

import torch

_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))


def draw_or_score(
    mean: torch.Tensor, std: torch.Tensor, next_sample: torch.Tensor | None, noise: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x', log N(x'; mean, std^2) averaged over all but the batch dimension), in float32.

    `std` broadcasts against `mean` ((N, 1, 1, 1) per sample). If `next_sample` is given it is scored
    (the learner's case); otherwise x' = mean + std * noise is drawn, with `noise` ~ N(0, I) required.
    The gradient flows through mean and std, never through x' (the sampled action is data)."""
    if next_sample is None:
        if noise is None:
            raise ValueError("pass `noise` to draw the next sample, or `next_sample` to score it")
        nxt = mean + std * noise.float()
    else:
        nxt = next_sample.float()
    log_prob = -((nxt.detach() - mean) ** 2) / (2 * std**2) - torch.log(std) - _LOG_SQRT_2PI
    return nxt, log_prob.mean(dim=tuple(range(1, log_prob.ndim)))
