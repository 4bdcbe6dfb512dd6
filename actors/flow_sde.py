"""Flow-matching SDE step with log-probability: a flow model as a stochastic policy (spec section 9).

A flow-matching model (SD3/3.5) predicts a velocity v for the straight path between data and noise,
    x_s = (1 - s) x0 + s eps,    v = eps - x0,    s the noise level, 1 (noise) down to 0 (data),
and is sampled by the ODE dx = v ds. SDPO needs a stochastic transition with an exact log-probability
at every step, so (as Flow-GRPO, Liu et al. 2025, arXiv 2505.05470) the ODE is replaced by the
reverse-time SDE with the same marginals. With x0 = x - s v and eps = x + (1 - s) v the score is
grad log p_s(x) = -eps / s, and a diffusion coefficient sd(s) turns the ODE into

    dx = [v + sd^2 / (2 s) * (x + (1 - s) v)] ds + sd dW,

whose Euler-Maruyama step from level s to s' < s (dt = s' - s < 0) is Gaussian. The update below is
adapted from Flow-GRPO's ``sde_step_with_logprob`` (flow_grpo/diffusers_patch/sd3_sde_with_logprob.py),
changed to (a) read s and s' from a level list built once from the scheduler's timesteps, with a
different step index per sample, (b) accept the next state to score it, (c) also return x0.
Pure torch: no diffusers, no ray.

Notation (paper <- code):
    x_s        <- sample                 noisy latent at level s = levels[i]          (N, C, h, w)
    x_{s'}     <- next_sample            the action, at s' = levels[i + 1]            (N, C, h, w)
    v          <- model_output           velocity prediction
    a          <- noise_level            Flow-GRPO's a = 0.7; a = 0 is the ODE's Euler step
    x0_i       <- pred_original_sample   the "dual" predicted clean state, x - s v

Equations, per step i (levels s_0 = 1 > s_1 > ... > s_{T-1} > s_T = 0):
    1. sd   = a * sqrt(s / (1 - s)); at s = 1 the denominator uses s_1, the largest level below 1
            (so sd = a / sqrt(1 - s_1); with T = 1, s_1 = 0 and sd = a)
    2. mean = x * (1 + sd^2 / (2 s) * dt) + v * (1 + sd^2 (1 - s) / (2 s)) * dt,    dt = s' - s
    3. std  = sd * sqrt(-dt)
    4. x_{s'} = mean + std * z,   z ~ N(0, I)
    5. log p = MEAN over (C, h, w) of log N(x_{s'}; mean, std^2)   (the mean, as the DDIM step)
    6. x0   = x - s * v
The last step goes to s' = 0 with dt = -s_{T-1}: std = sd(s_{T-1}) * sqrt(s_{T-1}) > 0, so it has
a log-probability like every other step; its x_{s'} keeps that noise, and (as with DDIM) the T-step
sample SDPO scores is x0_{T-1}, the clean prediction of the last step. Everything runs in float32
(bf16 overflows in the mean).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from actors.gaussian import draw_or_score


class FlowStep(NamedTuple):
    next_sample: torch.Tensor  # x_{s'}, (N, C, h, w)
    log_prob: torch.Tensor  # log p(x_{s'} | x_s), mean over (C, h, w), (N,)
    pred_original_sample: torch.Tensor  # x0_i = x_s - s v, (N, C, h, w)
    mean: torch.Tensor  # (N, C, h, w)
    std_dev: torch.Tensor  # std = sd * sqrt(-dt), (N,)


class FlowSample(NamedTuple):
    next_sample: torch.Tensor  # x_{s'} = x_s + v dt (the ODE's Euler step), (N, C, h, w)
    pred_original_sample: torch.Tensor  # x0_i, (N, C, h, w)


def flow_levels(timesteps: torch.Tensor, num_train_timesteps: int) -> torch.Tensor:
    """The noise levels of a schedule, (T + 1,) float32: s_i = t_i / num_train_timesteps for the
    scheduler's timesteps (T,) (diffusers' flow schedulers set t = s * num_train_timesteps), then s_T = 0."""
    s = timesteps.float() / num_train_timesteps
    return torch.cat([s, s.new_zeros(1)])


def step_levels(step_index: torch.Tensor, levels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(s, s', denominator level) per sample, each (N,) float32, for step indices (N,) into levels (T + 1,).
    The denominator level is s itself, or s_1 where s = 1 (equation 1)."""
    idx = step_index.long().to(levels.device)
    lv = levels.float()
    s, s_next = lv[idx], lv[idx + 1]
    return s, s_next, torch.where(s == 1, lv[1], s)


def _bcast(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return x.to(like.device, torch.float32).view(-1, *([1] * (like.ndim - 1)))


def flow_sde_step_with_logprob(
    model_output: torch.Tensor,
    sample: torch.Tensor,
    step_index: torch.Tensor,
    levels: torch.Tensor,
    noise_level: float,
    next_sample: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
) -> FlowStep:
    """One SDE step. If `next_sample` is given it is scored instead of drawn (the learner's case);
    otherwise x_{s'} = mean + std * noise, with `noise` ~ N(0, I) required."""
    if noise_level <= 0:
        raise ValueError("noise_level must be > 0 for the step to have a log-probability (use flow_ode_step for 0)")
    dtype = sample.dtype
    x, v = sample.float(), model_output.float()
    s_n, s_next_n, denom_n = step_levels(step_index, levels)
    s, dt = _bcast(s_n, x), _bcast(s_next_n - s_n, x)
    # 1. diffusion coefficient sd(s)
    sd_n = noise_level * torch.sqrt(s_n / (1 - denom_n))
    sd = _bcast(sd_n, x)
    # 2. Gaussian mean of the Euler-Maruyama step
    mean = x * (1 + sd**2 / (2 * s) * dt) + v * (1 + sd**2 * (1 - s) / (2 * s)) * dt
    # 3. its standard deviation
    std_n = sd_n * torch.sqrt(s_n - s_next_n)
    std = _bcast(std_n, x)
    # 4. draw or score x_{s'}, and log N(x_{s'}; mean, std^2)
    nxt, log_prob = draw_or_score(mean, std, next_sample, noise)
    # 5. predicted clean state
    x0 = x - s * v
    return FlowStep(nxt.to(dtype), log_prob, x0.to(dtype), mean.to(dtype), std_n)


def flow_ode_step(
    model_output: torch.Tensor, sample: torch.Tensor, step_index: torch.Tensor, levels: torch.Tensor
) -> FlowSample:
    """The deterministic step (a = 0): the ODE's Euler step x_{s'} = x_s + v (s' - s), and x0 = x_s - s v.
    The sampler of the held-out evaluation (diffusers' FlowMatchEulerDiscreteScheduler.step)."""
    x, v = sample.float(), model_output.float()
    s_n, s_next_n, _ = step_levels(step_index, levels)
    s, dt = _bcast(s_n, x), _bcast(s_next_n - s_n, x)
    return FlowSample((x + v * dt).to(sample.dtype), (x - s * v).to(sample.dtype))
