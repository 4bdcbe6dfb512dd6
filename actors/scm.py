"""sCM multistep step with log-probability: a TrigFlow consistency model (SANA-Sprint) as a stochastic policy.

A TrigFlow model (sCM, Lu & Song 2024, arXiv 2410.11081; SANA-Sprint, Chen et al. 2025, arXiv
2503.09641) sees its latent on a quarter circle between data and noise,
    x_t = cos(t) x0 + sin(t) z,    t from pi/2 (noise) down to 0 (data),
and predicts F with x0 = cos(t) x_t - sin(t) F (diffusers' ``SCMScheduler.step``, prediction type
"trigflow"). Its multistep sampler jumps to x0 at every step and re-noises it with FRESH noise to the
next time s: x_s = cos(s) x0 + sin(s) z, which is already a Gaussian transition with an exact
log-density. ``eta`` interpolates (as DDIM's eta does) between that re-noising (eta = 1) and the
deterministic step that re-noises with the noise x_t implies (eta = 0, DDIM in TrigFlow coordinates).
Adapted from ``SCMScheduler.step`` (diffusers/schedulers/scheduling_scm.py), changed to (a) read t and
s from a level list built once from the scheduler's timesteps, with a different step index per
sample, (b) the eta family of re-noisings, (c) accept the next state to score it, (d) a final level
above 0, so that the last step too has a log-probability. Pure torch: no diffusers, no ray.

Units: latents here are SANA-Sprint's latents divided by the scheduler's sigma_data (SanaSprintPipeline
keeps x * sigma_data and divides again before every transformer call and after the last step), so
x0 is the VAE's scaled latent and z ~ N(0, I). Both sides of every equation below are linear in the
latents, so sigma_data cancels; with sigma_data = 0.5 (a power of two) even the rounding agrees.

Notation (paper <- code):
    x_t        <- sample                 latent at time t = levels[i]                 (N, C, h, w)
    x_s        <- next_sample            the action, at s = levels[i + 1]             (N, C, h, w)
    F          <- model_output           the prediction, x0 = cos(t) x_t - sin(t) F
    eta        <- eta                    1: SCMScheduler's re-noising; 0: deterministic
    x0_i       <- pred_original_sample   the "dual" predicted clean state

Equations, per step i (levels t_0 > t_1 > ... > t_{T-1} > t_T > 0):
    1. x0   = cos(t) x_t - sin(t) F                       (SCMScheduler.step, "trigflow")
    2. eps  = sin(t) x_t + cos(t) F                       (= (x_t - cos(t) x0) / sin(t), without the division)
    3. mean = cos(s) x0 + sin(s) sqrt(1 - eta^2) eps
    4. std  = eta sin(s)
    5. x_s  = mean + std * z,   z ~ N(0, I)
    6. log p = MEAN over (C, h, w) of log N(x_s; mean, std^2)   (the mean, as the DDIM step)
The scheduler's own last level is s = 0 (x_s = x0, no variance). As the DDIM families end on a final
alpha below 1, the policy ends on t_T = arctan(sigma_min / sigma_data) instead, sigma_min = 0.002
(EDM's smallest noise level, Karras et al. 2022, in TrigFlow time): x_T is x0 up to 0.4 % noise,
the last step has a log-probability like every other, and (as for every family) the T-step sample
SDPO scores is x0_{T-1}, exactly SCM's output. Everything runs in float32.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from actors.gaussian import draw_or_score

SIGMA_MIN = 0.002  # EDM's sigma_min: the final level is arctan(SIGMA_MIN / sigma_data)


class SCMStep(NamedTuple):
    next_sample: torch.Tensor  # x_s, (N, C, h, w)
    log_prob: torch.Tensor  # log p(x_s | x_t), mean over (C, h, w), (N,)
    pred_original_sample: torch.Tensor  # x0_i = cos(t) x_t - sin(t) F, (N, C, h, w)
    mean: torch.Tensor  # (N, C, h, w)
    std_dev: torch.Tensor  # eta sin(s), (N,)


class SCMSample(NamedTuple):
    next_sample: torch.Tensor  # x_s = cos(s) x0 + sin(s) eps (eta = 0), (N, C, h, w)
    pred_original_sample: torch.Tensor  # x0_i, (N, C, h, w)


def scm_levels(timesteps: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """The TrigFlow times of a schedule, (T + 1,) float32: the scheduler's timesteps (T,) (its own
    t_0 > ... > t_{T-1}, without its final 0), then the final level arctan(SIGMA_MIN / sigma_data)."""
    t = timesteps.float()
    return torch.cat([t, t.new_full((1,), math.atan(SIGMA_MIN / sigma_data))])


def _bcast(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return x.to(like.device, torch.float32).view(-1, *([1] * (like.ndim - 1)))


def _moments(
    model_output: torch.Tensor, sample: torch.Tensor, step_index: torch.Tensor, levels: torch.Tensor, eta: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Steps 1-4, shared by the stochastic and the deterministic step: (x0, mean (N, C, h, w), std (N,)), float32."""
    x, out = sample.float(), model_output.float()
    idx = step_index.long().to(levels.device)
    t_n, s_n = levels.float()[idx], levels.float()[idx + 1]  # (N,), (N,)
    t, s = _bcast(t_n, x), _bcast(s_n, x)
    # 1. the clean state, as SCMScheduler.step computes it
    x0 = torch.cos(t) * x - torch.sin(t) * out
    # 2. the noise x_t implies
    eps = torch.sin(t) * x + torch.cos(t) * out
    # 3. the mean of the next state
    mean = torch.cos(s) * x0 + torch.sin(s) * math.sqrt(1 - eta**2) * eps
    # 4. its standard deviation
    return x0, mean, eta * torch.sin(s_n)


def scm_step_with_logprob(
    model_output: torch.Tensor,
    sample: torch.Tensor,
    step_index: torch.Tensor,
    levels: torch.Tensor,
    eta: float,
    next_sample: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
) -> SCMStep:
    """One stochastic step. If `next_sample` is given it is scored instead of drawn (the learner's case);
    otherwise x_s = mean + std * noise, with `noise` ~ N(0, I) required."""
    if not 0 < eta <= 1:
        raise ValueError("eta must be in (0, 1] for the step to have a log-probability (use scm_step for 0)")
    x0, mean, std_n = _moments(model_output, sample, step_index, levels, eta)
    # 5.-6. draw or score x_s, and log N(x_s; mean, std^2)
    nxt, log_prob = draw_or_score(mean, _bcast(std_n, mean), next_sample, noise)
    return SCMStep(nxt.to(sample.dtype), log_prob, x0.to(sample.dtype), mean.to(sample.dtype), std_n)


def scm_step(
    model_output: torch.Tensor, sample: torch.Tensor, step_index: torch.Tensor, levels: torch.Tensor
) -> SCMSample:
    """The deterministic step (eta = 0): x_s = cos(s) x0 + sin(s) eps, and x0. The sampler of the
    held-out evaluation; same arithmetic as the stochastic step at eta = 0."""
    x0, mean, _ = _moments(model_output, sample, step_index, levels, 0.0)
    return SCMSample(mean.to(sample.dtype), x0.to(sample.dtype))
