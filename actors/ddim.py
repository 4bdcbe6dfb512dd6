"""DDIM step with log-probability: the diffusion model as a stochastic policy (spec section 1).

Adapted from the DDIM update of diffusers' ``DDIMScheduler.step`` (Song et al. 2021, eq. 12):
changed to (a) take the previous timestep from the scheduler's own timestep list, so any T and any
spacing is exact, (b) accept a different step index per sample, (c) return the log-density of the
next state; ``ddim_step`` is the deterministic (eta = 0) step of the held-out evaluation.
Pure torch: no diffusers, no ray.

Notation (paper <- code):
    x_i        <- sample                  noisy latent at step i                    (N, C, h, w)
    x_{i+1}    <- next_sample             the action                                (N, C, h, w)
    t_i        <- timesteps[step_index]   i = 0 is the first, noisiest step
    a_t, a_prev<- alpha_t, alpha_prev     alphas_cumprod at t_i and at the next timestep
    x0_i       <- pred_original_sample    the "dual" predicted clean state
    sigma      <- std_dev                 eta * sqrt((1-a_prev)/(1-a_t) * (1 - a_t/a_prev))
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from actors.gaussian import draw_or_score

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


class DDIMStep(NamedTuple):
    next_sample: torch.Tensor  # x_{i+1}, (N, C, h, w)
    log_prob: torch.Tensor  # log pi(x_{i+1} | x_i), mean over (C, h, w), (N,)
    pred_original_sample: torch.Tensor  # x0_i, (N, C, h, w)
    mean: torch.Tensor  # mu, (N, C, h, w)
    std_dev: torch.Tensor  # sigma, (N,)


def step_alphas(
    step_index: torch.Tensor, timesteps: torch.Tensor, alphas_cumprod: torch.Tensor, final_alpha_cumprod: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(a_t, a_prev) per sample, both (N,) float32, for 0-based step indices into the scheduler's `timesteps` (T,).

    a_prev is alphas_cumprod at the scheduler's NEXT timestep, or the final alpha after the last step.
    """
    T = timesteps.shape[0]
    idx = step_index.long().to(timesteps.device)
    acp = alphas_cumprod.float()
    alpha_t = acp[timesteps[idx].long()]
    nxt = (idx + 1).clamp(max=T - 1)
    alpha_prev = torch.where(idx + 1 < T, acp[timesteps[nxt].long()], torch.tensor(float(final_alpha_cumprod)))
    return alpha_t, alpha_prev


def ddim_sigma(alpha_t: torch.Tensor, alpha_prev: torch.Tensor, eta: float) -> torch.Tensor:
    """sigma = eta * sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)), per sample (float32, as diffusers computes
    it)."""
    return eta * ((1 - alpha_prev) / (1 - alpha_t) * (1 - alpha_t / alpha_prev)).clamp(min=0) ** 0.5


def _bcast(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return x.to(like.device, like.dtype).view(-1, *([1] * (like.ndim - 1)))


class DDIMSample(NamedTuple):
    next_sample: torch.Tensor  # x_{i+1} = mu (sigma = 0), (N, C, h, w)
    pred_original_sample: torch.Tensor  # x0_i, (N, C, h, w)


def _ddim_moments(
    model_output: torch.Tensor,
    sample: torch.Tensor,
    step_index: torch.Tensor,
    timesteps: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    final_alpha_cumprod: float,
    eta: float,
    prediction_type: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Steps 1-3 of the DDIM update, shared by the stochastic and the deterministic step:
    (x0 (N, C, h, w), mu (N, C, h, w), sigma (N,)), all float32."""
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
    x = sample.float()
    out = model_output.float()
    alpha_t, alpha_prev = step_alphas(step_index, timesteps, alphas_cumprod, final_alpha_cumprod)
    # 1. sigma from the two alphas
    std_dev = ddim_sigma(alpha_t, alpha_prev, eta)
    a_t, a_prev, std = _bcast(alpha_t, x), _bcast(alpha_prev, x), _bcast(std_dev, x)
    # 2. predicted clean state x0 and predicted noise eps, by prediction type (as diffusers converts)
    if prediction_type == "epsilon":
        eps = out
        x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
    elif prediction_type == "v_prediction":
        x0 = a_t.sqrt() * x - (1 - a_t).sqrt() * out
        eps = a_t.sqrt() * out + (1 - a_t).sqrt() * x
    else:
        x0 = out
        eps = (x - a_t.sqrt() * x0) / (1 - a_t).sqrt()
    # 3. mean of the next state: mu = sqrt(a_prev) x0 + sqrt(1 - a_prev - sigma^2) eps
    mu = a_prev.sqrt() * x0 + (1 - a_prev - std**2).clamp(min=0).sqrt() * eps
    return x0, mu, std_dev


def ddim_step_with_logprob(
    model_output: torch.Tensor,
    sample: torch.Tensor,
    step_index: torch.Tensor,
    timesteps: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    final_alpha_cumprod: float,
    eta: float,
    prediction_type: str = "epsilon",
    next_sample: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
) -> DDIMStep:
    """One DDIM step. If `next_sample` is given it is scored instead of drawn (the learner's case);
    otherwise x_{i+1} = mu + sigma * noise, with `noise` ~ N(0, I) required."""
    if eta <= 0:
        raise ValueError("eta must be > 0 for the step to have a log-probability (use ddim_step for eta = 0)")
    dtype = sample.dtype
    x0, mu, std_dev = _ddim_moments(
        model_output, sample, step_index, timesteps, alphas_cumprod, final_alpha_cumprod, eta, prediction_type
    )
    std = _bcast(std_dev, mu)
    nxt, log_prob = draw_or_score(mu, std, next_sample, noise)  # x_{i+1} and log N(x_{i+1}; mu, sigma^2)
    return DDIMStep(nxt.to(dtype), log_prob, x0.to(dtype), mu.to(dtype), std_dev)


def ddim_step(
    model_output: torch.Tensor,
    sample: torch.Tensor,
    step_index: torch.Tensor,
    timesteps: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    final_alpha_cumprod: float,
    prediction_type: str = "epsilon",
) -> DDIMSample:
    """The deterministic DDIM step (eta = 0, sigma = 0): x_{i+1} = mu, with no log-probability.
    The sampler of the held-out evaluation; same arithmetic as the stochastic step at eta = 0."""
    x0, mu, _ = _ddim_moments(
        model_output, sample, step_index, timesteps, alphas_cumprod, final_alpha_cumprod, 0.0, prediction_type
    )
    return DDIMSample(mu.to(sample.dtype), x0.to(sample.dtype))
