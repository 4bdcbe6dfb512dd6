"""The flow-matching SDE step with log-probability, against hand-worked values (arithmetic in the
comments), the ODE limit, the marginals it must keep, and diffusers' own flow Euler step."""

from __future__ import annotations

import math

import pytest
import torch

from actors.flow_sde import flow_levels, flow_ode_step, flow_sde_step_with_logprob, step_levels

LEVELS = torch.tensor([1.0, 0.5, 0.0])  # T = 2: s_0 = 1, s_1 = 0.5, s_2 = 0
LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)  # 0.918939


def full(value: float) -> torch.Tensor:
    return torch.full((1, 1, 2, 2), value)


def test_first_step_from_pure_noise_by_hand():
    # s = 1, s' = 0.5, dt = -0.5; at s = 1 the denominator uses s_1 = 0.5: sd = 0.5 * sqrt(1 / 0.5) = 0.7071, sd^2 = 0.5
    # mean = x (1 + 0.5 / 2 * -0.5) + v (1 + 0.5 * 0 / 2) * -0.5 = 0.875 x - 0.5 v = 1.75 - 0.5 = 1.25   (x = 2, v = 1)
    # std  = sd * sqrt(0.5) = 0.5;  x' = 1.25 + 0.5 * 0.4 = 1.45;  x0 = x - 1 * v = 1
    # log p = -(0.2)^2 / (2 * 0.25) - log 0.5 - log sqrt(2 pi) = -0.08 + 0.693147 - 0.918939 = -0.305792
    step = flow_sde_step_with_logprob(full(1.0), full(2.0), torch.tensor([0]), LEVELS, 0.5, noise=full(0.4))
    assert torch.allclose(step.mean, full(1.25)) and torch.allclose(step.next_sample, full(1.45))
    assert torch.allclose(step.pred_original_sample, full(1.0))
    assert step.std_dev.item() == pytest.approx(0.5, rel=1e-6)
    assert step.log_prob.item() == pytest.approx(-0.08 + math.log(2) - LOG_SQRT_2PI, abs=1e-6)


def test_last_step_to_level_zero_keeps_a_log_prob_by_hand():
    # s = 0.5, s' = 0, dt = -0.5: sd = 0.5 * sqrt(0.5 / 0.5) = 0.5, sd^2 = 0.25
    # mean = x (1 + 0.25 / 1 * -0.5) + v (1 + 0.25 * 0.5 / 1) * -0.5 = 0.875 x - 0.5625 v = 0.875 - 1.125 = -0.25   (x =
    # 1, v = 2)
    # std = 0.5 * sqrt(0.5) = 0.353553 > 0;  x0 = 1 - 0.5 * 2 = 0
    # scoring x' = 0: log p = -(0.25)^2 / (2 * 0.125) - log 0.353553 - 0.918939 = -0.25 + 1.039721 - 0.918939 =
    # -0.129218
    step = flow_sde_step_with_logprob(full(2.0), full(1.0), torch.tensor([1]), LEVELS, 0.5, next_sample=full(0.0))
    assert torch.allclose(step.mean, full(-0.25)) and torch.allclose(step.pred_original_sample, full(0.0))
    assert step.std_dev.item() == pytest.approx(0.5 * math.sqrt(0.5), rel=1e-6)
    assert step.log_prob.item() == pytest.approx(-0.25 - math.log(0.5 * math.sqrt(0.5)) - LOG_SQRT_2PI, abs=1e-6)
    assert torch.equal(step.next_sample, full(0.0))  # scored, not drawn


def test_one_step_schedule_has_finite_noise():
    # T = 1: levels (1, 0); the denominator level s_1 = 0 gives sd = a, std = a * sqrt(1) = a
    step = flow_sde_step_with_logprob(
        full(1.0), full(2.0), torch.tensor([0]), torch.tensor([1.0, 0.0]), 0.7, noise=full(0.0)
    )
    assert step.std_dev.item() == pytest.approx(0.7) and torch.isfinite(step.log_prob).all()


def test_ode_step_by_hand_and_as_the_small_noise_limit():
    # Euler: x' = x + v dt = 2 + 1 * -0.5 = 1.5; x0 = 2 - 1 * 1 = 1
    ode = flow_ode_step(full(1.0), full(2.0), torch.tensor([0]), LEVELS)
    assert torch.allclose(ode.next_sample, full(1.5)) and torch.allclose(ode.pred_original_sample, full(1.0))
    x, v = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2)
    idx = torch.tensor([0, 1, 1])
    sde = flow_sde_step_with_logprob(v, x, idx, LEVELS, 1e-4, noise=torch.zeros_like(x))
    assert torch.allclose(sde.mean, flow_ode_step(v, x, idx, LEVELS).next_sample, atol=1e-6)


def test_drawn_then_scored_log_probs_agree_and_steps_vectorize():
    """Per-sample step indices give what one call per sample gives; scoring a drawn sample repeats its log-prob."""
    levels = flow_levels(torch.tensor([1000.0, 750.0, 400.0, 100.0]), 1000)  # (T + 1,) = 1, 0.75, 0.4, 0.1, 0
    assert torch.allclose(levels, torch.tensor([1.0, 0.75, 0.4, 0.1, 0.0]))
    x, v, z = (torch.randn(4, 3, 2, 2, generator=torch.Generator().manual_seed(k)) for k in range(3))
    idx = torch.tensor([0, 1, 2, 3])
    drawn = flow_sde_step_with_logprob(v, x, idx, levels, 0.7, noise=z)
    scored = flow_sde_step_with_logprob(v, x, idx, levels, 0.7, next_sample=drawn.next_sample)
    assert torch.equal(drawn.log_prob, scored.log_prob)
    for n in range(4):
        one = flow_sde_step_with_logprob(v[n : n + 1], x[n : n + 1], idx[n : n + 1], levels, 0.7, noise=z[n : n + 1])
        assert torch.equal(one.next_sample, drawn.next_sample[n : n + 1]) and torch.equal(
            one.log_prob, drawn.log_prob[n : n + 1]
        )
    s, s_next, denom = step_levels(idx, levels)
    assert denom.tolist() == pytest.approx([0.75, 0.75, 0.4, 0.1])  # s = 1 uses s_1


def test_sde_keeps_the_flow_marginals():
    """Data x0 = c (a point mass): x_s ~ N((1 - s) c, s^2) and the exact velocity is v = (x - c) / s. A
    small SDE step from s = 0.8 must land on the marginal at s' = 0.78 (mean and std), like the ODE."""
    c, s, s_next = 2.0, 0.8, 0.78
    levels = torch.tensor([1.0, s, s_next, 0.0])
    eps = torch.randn(200_000, 1, 1, 1, generator=torch.Generator().manual_seed(0))
    x = (1 - s) * c + s * eps
    v = (x - c) / s
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    nxt = flow_sde_step_with_logprob(v, x, torch.full((x.shape[0],), 1), levels, 0.7, noise=z).next_sample
    assert nxt.mean().item() == pytest.approx((1 - s_next) * c, abs=5e-3)
    assert nxt.std().item() == pytest.approx(s_next, abs=5e-3)


def test_ode_chain_matches_diffusers_flow_euler_step():
    """The deterministic chain equals diffusers' FlowMatchEulerDiscreteScheduler.step with the same velocities
    (levels t / 1000 against its own sigmas: equal to float rounding)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    sched.set_timesteps(4)
    levels = flow_levels(sched.timesteps, 1000)
    assert torch.allclose(levels, sched.sigmas, atol=1e-6)
    x = ours = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    for i, t in enumerate(sched.timesteps):
        v = torch.tanh(x) - 0.3 * x  # any velocity field, the same for both chains
        x = sched.step(v, t, x).prev_sample
        ours = flow_ode_step(torch.tanh(ours) - 0.3 * ours, ours, torch.full((2,), i), levels).next_sample
    assert torch.allclose(ours, x, atol=1e-5)


def test_zero_noise_level_is_refused():
    with pytest.raises(ValueError, match="noise_level must be > 0"):
        flow_sde_step_with_logprob(full(1.0), full(1.0), torch.tensor([0]), LEVELS, 0.0, noise=full(0.0))
