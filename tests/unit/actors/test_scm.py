"""The sCM (TrigFlow) multistep step with log-probability, against hand-worked values (arithmetic in
the comments), diffusers' SCMScheduler.step, its deterministic limit and per-sample step indices."""

from __future__ import annotations

import math

import pytest
import torch

from actors.scm import SIGMA_MIN, scm_levels, scm_step, scm_step_with_logprob

LEVELS = torch.tensor([math.pi / 3, math.pi / 6, 0.01])  # T = 2: cos/sin (0.5, 0.866025), then (0.866025, 0.5)
LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)  # 0.918939


def full(value: float) -> torch.Tensor:
    return torch.full((1, 1, 2, 2), value)


def test_step_by_hand():
    # t = pi/3, s = pi/6, x = 2, F = 1, eta = 0.6 (sqrt(1 - eta^2) = 0.8)
    # x0   = cos t x - sin t F = 0.5 * 2 - 0.866025 * 1 = 0.133975
    # eps  = sin t x + cos t F = 0.866025 * 2 + 0.5 * 1 = 2.232051
    # mean = cos s x0 + sin s 0.8 eps = 0.866025 * 0.133975 + 0.5 * 0.8 * 2.232051 = 0.116025 + 0.892820 = 1.008846
    # std  = eta sin s = 0.6 * 0.5 = 0.3;  x' = 1.008846 + 0.3 * 0.4 = 1.128846
    # log p = -(0.12)^2 / (2 * 0.09) - log 0.3 - log sqrt(2 pi) = -0.08 + 1.203973 - 0.918939 = 0.205034
    step = scm_step_with_logprob(full(1.0), full(2.0), torch.tensor([0]), LEVELS, 0.6, noise=full(0.4))
    assert torch.allclose(step.pred_original_sample, full(0.133975), atol=1e-6)
    assert torch.allclose(step.mean, full(1.008846), atol=1e-6) and torch.allclose(
        step.next_sample, full(1.128846), atol=1e-6
    )
    assert step.std_dev.item() == pytest.approx(0.3, rel=1e-6)
    assert step.log_prob.item() == pytest.approx(-0.08 - math.log(0.3) + -LOG_SQRT_2PI, abs=1e-6)
    # scoring the same action gives the same log-density, and the action is taken as given
    scored = scm_step_with_logprob(full(1.0), full(2.0), torch.tensor([0]), LEVELS, 0.6, next_sample=full(1.128846))
    assert scored.log_prob.item() == pytest.approx(step.log_prob.item(), abs=1e-5)
    assert torch.equal(scored.next_sample, full(1.128846))


def test_eta_one_is_scm_schedulers_renoising():
    """eta = 1 is SCMScheduler.step bit for bit: the scheduler works on the pipeline's latents (ours x
    sigma_data = 0.5) and draws its noise x sigma_data; ours draws the unit noise from the same generator."""
    from diffusers import SCMScheduler

    sched = SCMScheduler()
    sched.set_timesteps(2, max_timesteps=1.5708, intermediate_timesteps=1.3)  # (1.5708, 1.3, 0)
    x, out = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    ref = sched.step(0.5 * out, sched.timesteps[0], 0.5 * x, generator=torch.Generator().manual_seed(0))
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    ours = scm_step_with_logprob(out, x, torch.tensor([0, 0]), scm_levels(sched.timesteps[:-1], 0.5), 1.0, noise=z)
    assert torch.equal(0.5 * ours.pred_original_sample, ref.pred_original_sample)
    assert torch.equal(0.5 * ours.next_sample, ref.prev_sample)


def test_deterministic_step_is_the_small_eta_limit_and_loop_equivalent():
    x, out = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2)
    idx = torch.tensor([0, 1, 1])
    det = scm_step(out, x, idx, LEVELS)
    near = scm_step_with_logprob(out, x, idx, LEVELS, 1e-4, noise=torch.zeros_like(x))
    assert torch.allclose(near.mean, det.next_sample, atol=1e-6)
    for n in range(3):  # per-sample step indices: the same as one sample at a time
        one = scm_step(out[n : n + 1], x[n : n + 1], idx[n : n + 1], LEVELS)
        assert torch.equal(one.next_sample, det.next_sample[n : n + 1])
    # eta = 0 re-noises with the noise x_t implies: x_t itself is cos(t) x0 + sin(t) eps
    t = LEVELS[idx].view(-1, 1, 1, 1)
    eps = (x - torch.cos(t) * det.pred_original_sample) / torch.sin(t)
    s = LEVELS[idx + 1].view(-1, 1, 1, 1)
    assert torch.allclose(det.next_sample, torch.cos(s) * det.pred_original_sample + torch.sin(s) * eps, atol=1e-5)


def test_final_level_keeps_a_log_prob():
    # after the scheduler's times, arctan(0.002 / 0.5) = 0.004: the last step's std is eta * sin(0.004) = 0.004 at eta =
    # 1
    levels = scm_levels(torch.tensor([1.5708, 1.3]), 0.5)
    assert levels[-1].item() == pytest.approx(math.atan(SIGMA_MIN / 0.5)) and levels[-1].item() == pytest.approx(
        0.004, rel=1e-5
    )
    step = scm_step_with_logprob(full(1.0), full(2.0), torch.tensor([1]), levels, 1.0, noise=full(0.0))
    assert (
        step.std_dev.item() == pytest.approx(math.sin(math.atan(0.004)), rel=1e-5)
        and torch.isfinite(step.log_prob).all()
    )
    with pytest.raises(ValueError, match="eta must be in"):
        scm_step_with_logprob(full(1.0), full(2.0), torch.tensor([1]), levels, 0.0, noise=full(0.0))
