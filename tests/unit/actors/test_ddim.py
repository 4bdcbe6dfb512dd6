"""Tests for actors/ddim.py: the DDIM step with log-probability (spec section 1).

Checked against torch.distributions.Normal and, bit for bit, against diffusers' DDIMScheduler.step.
"""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDIMScheduler

from actors.ddim import ddim_step, ddim_step_with_logprob, step_alphas

SHAPE = (2, 4, 3, 3)  # (N, C, h, w)


def make_scheduler(
    T: int, spacing: str = "trailing", prediction_type: str = "epsilon", zero_snr: bool = False
) -> DDIMScheduler:
    # SD-style schedule; clip_sample off (our step never clips x0), final alpha = alphas_cumprod[0]
    sched = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1 if spacing == "leading" else 0,
        timestep_spacing=spacing,
        prediction_type=prediction_type,
        rescale_betas_zero_snr=zero_snr,
    )
    sched.set_timesteps(T)
    return sched


def our_step(sched, model_output, sample, i, **kw):
    n = sample.shape[0]
    return ddim_step_with_logprob(
        model_output,
        sample,
        torch.full((n,), i, dtype=torch.long),
        sched.timesteps,
        sched.alphas_cumprod,
        float(sched.final_alpha_cumprod),
        eta=kw.pop("eta", 1.0),
        prediction_type=sched.config.prediction_type,
        **kw,
    )


def reference_alphas(sched, i):
    """The reference / diffusers rule: t_prev = t - 1000 // T, final alpha once t_prev < 0."""
    t = int(sched.timesteps[i])
    t_prev = t - sched.config.num_train_timesteps // sched.num_inference_steps
    a_prev = sched.alphas_cumprod[t_prev] if t_prev >= 0 else sched.final_alpha_cumprod
    return sched.alphas_cumprod[t], a_prev


# ---------------------------------------------------------------- log-probability


def test_log_prob_is_mean_normal_log_density():
    sched = make_scheduler(10)
    g = torch.Generator().manual_seed(0)
    x, eps, z = (torch.randn(SHAPE, generator=g) for _ in range(3))
    for i in (0, 4, 9):
        out = our_step(sched, eps, x, i, noise=z)
        sigma = out.std_dev.view(-1, 1, 1, 1)
        expected = torch.distributions.Normal(out.mean, sigma).log_prob(out.next_sample).mean(dim=(1, 2, 3))
        torch.testing.assert_close(out.log_prob, expected, rtol=1e-6, atol=1e-6)
        assert out.log_prob.shape == (SHAPE[0],)


def test_log_prob_hand_worked_single_element():
    # one step with hand-picked alphas: a_t = 0.5, a_prev = 0.8, eta = 1, x = 1, eps = 0.5, x_next = 1.1
    #   var   = (1 - 0.8) / (1 - 0.5) * (1 - 0.5 / 0.8) = 0.4 * 0.375 = 0.15,  sigma = sqrt(0.15)
    #   x0    = (1 - sqrt(0.5) * 0.5) / sqrt(0.5)     = sqrt(2) - 0.5
    #   mu    = sqrt(0.8) * x0 + sqrt(1 - 0.8 - 0.15) * 0.5 = sqrt(0.8) * (sqrt(2) - 0.5) + sqrt(0.05) * 0.5
    #   logp  = -(1.1 - mu)^2 / (2 * 0.15) - log(sigma) - log(sqrt(2 pi))
    acp = torch.tensor([0.8, 0.5])  # alphas_cumprod indexed by timestep
    timesteps = torch.tensor([1, 0])  # step 0 at t=1 (a=0.5), next t=0 (a=0.8)
    out = ddim_step_with_logprob(
        torch.full((1, 1, 1, 1), 0.5),
        torch.ones(1, 1, 1, 1),
        torch.tensor([0]),
        timesteps,
        acp,
        0.9,
        eta=1.0,
        next_sample=torch.full((1, 1, 1, 1), 1.1),
    )
    sigma = math.sqrt(0.15)
    x0 = math.sqrt(2) - 0.5
    mu = math.sqrt(0.8) * x0 + math.sqrt(0.05) * 0.5
    logp = -((1.1 - mu) ** 2) / (2 * 0.15) - math.log(sigma) - math.log(math.sqrt(2 * math.pi))
    assert out.std_dev.item() == pytest.approx(sigma, rel=1e-5)
    assert out.pred_original_sample.item() == pytest.approx(x0, rel=1e-5)
    assert out.mean.item() == pytest.approx(mu, rel=1e-5)
    assert out.log_prob.item() == pytest.approx(logp, rel=1e-5)


def test_log_prob_is_mean_not_sum_over_latent_dims():
    # the same per-element density on a (1, 2, 2, 2) latent: the mean equals the single-element value,
    # the sum would be 8 times it
    sched = make_scheduler(10)
    x, eps, z = torch.ones(1, 2, 2, 2), torch.full((1, 2, 2, 2), 0.3), torch.full((1, 2, 2, 2), 0.7)
    big = our_step(sched, eps, x, 3, noise=z)
    one = our_step(sched, eps[:, :1, :1, :1], x[:, :1, :1, :1], 3, noise=z[:, :1, :1, :1])
    torch.testing.assert_close(big.log_prob, one.log_prob)


def test_scoring_mode_matches_drawing_mode():
    sched = make_scheduler(10)
    g = torch.Generator().manual_seed(1)
    x, eps, z = (torch.randn(SHAPE, generator=g) for _ in range(3))
    drawn = our_step(sched, eps, x, 2, noise=z)
    scored = our_step(sched, eps, x, 2, next_sample=drawn.next_sample)
    assert torch.equal(scored.next_sample, drawn.next_sample)
    torch.testing.assert_close(scored.log_prob, drawn.log_prob, rtol=0, atol=1e-6)
    # a different next state scores lower than its own mean
    at_mean = our_step(sched, eps, x, 2, next_sample=drawn.mean)
    assert torch.all(at_mean.log_prob > drawn.log_prob)


# ---------------------------------------------------------------- against diffusers, bit for bit


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("T", [10, 50])
def test_epsilon_step_equals_diffusers(spacing, T):
    sched = make_scheduler(T, spacing)
    g = torch.Generator().manual_seed(T)
    x = torch.randn(SHAPE, generator=g)
    for i, t in enumerate(sched.timesteps):  # the whole chain, so the last step (final alpha) is included
        eps, z = torch.randn(SHAPE, generator=g), torch.randn(SHAPE, generator=g)
        ref = sched.step(eps, t, x, eta=1.0, variance_noise=z)
        ours = our_step(sched, eps, x, i, noise=z)
        assert torch.equal(ours.next_sample, ref.prev_sample), (spacing, T, i)
        assert torch.equal(ours.pred_original_sample, ref.pred_original_sample), (spacing, T, i)
        x = ref.prev_sample


@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample"])
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_other_prediction_types_equal_diffusers(prediction_type, spacing):
    sched = make_scheduler(10, spacing, prediction_type)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(SHAPE, generator=g)
    for i, t in enumerate(sched.timesteps):
        out, z = torch.randn(SHAPE, generator=g), torch.randn(SHAPE, generator=g)
        ref = sched.step(out, t, x, eta=1.0, variance_noise=z)
        ours = our_step(sched, out, x, i, noise=z)
        assert torch.equal(ours.pred_original_sample, ref.pred_original_sample), (prediction_type, i)
        assert torch.equal(ours.next_sample, ref.prev_sample), (prediction_type, i)
        x = ref.prev_sample


@pytest.mark.parametrize("T", [1, 2, 8])  # T divides 1000: diffusers' a_prev rule is right
def test_zero_terminal_snr_v_prediction(T):
    # the shapes model's schedule: a_999 = 0, so the first step starts from pure noise: x0 = -v,
    # sigma^2 = 1 - a_prev, x_1 = sqrt(a_prev) x0 + sigma z (no eps term at eta = 1), a finite
    # log-probability. diffusers' step can give NaN there (sqrt of 1 - a_prev - sigma^2 rounded below 0);
    # every later step, and the deterministic chain, equal diffusers'.
    sched = make_scheduler(T, "trailing", "v_prediction", zero_snr=True)
    assert int(sched.timesteps[0]) == 999 and float(sched.alphas_cumprod[999]) == 0.0
    g = torch.Generator().manual_seed(11)
    x = torch.randn(SHAPE, generator=g)
    x_det = x.clone()
    for i, t in enumerate(sched.timesteps):
        out, z = torch.randn(SHAPE, generator=g), torch.randn(SHAPE, generator=g)
        ours = our_step(sched, out, x, i, noise=z)
        assert torch.isfinite(ours.log_prob).all() and torch.isfinite(ours.next_sample).all(), (T, i)
        if i == 0:
            a_prev = float(sched.alphas_cumprod[sched.timesteps[1]]) if T > 1 else float(sched.final_alpha_cumprod)
            assert torch.equal(ours.pred_original_sample, -out)
            assert torch.allclose(ours.std_dev, torch.tensor((1 - a_prev) ** 0.5))
            assert torch.allclose(ours.next_sample, a_prev**0.5 * -out + (1 - a_prev) ** 0.5 * z, atol=1e-4)
        else:
            ref = sched.step(out, t, x, eta=1.0, variance_noise=z)
            assert torch.allclose(ours.next_sample, ref.prev_sample, atol=1e-6), (T, i)
            assert torch.allclose(ours.pred_original_sample, ref.pred_original_sample, atol=1e-6), (T, i)
        x = ours.next_sample
        det = ddim_step(
            out,
            x_det,
            torch.full((SHAPE[0],), i),
            sched.timesteps,
            sched.alphas_cumprod,
            float(sched.final_alpha_cumprod),
            prediction_type="v_prediction",
        )
        ref_det = sched.step(out, t, x_det, eta=0.0)
        assert torch.allclose(det.next_sample, ref_det.prev_sample, atol=1e-6), (T, i)
        x_det = det.next_sample


# ---------------------------------------------------------------- deterministic step (eta = 0), bit for bit


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("T", [1, 2, 4, 8, 10, 50])
def test_deterministic_step_equals_diffusers_eta0(T, spacing, prediction_type):
    # the evaluation sampler: the whole k-step chain equals DDIMScheduler.step(eta=0) bit for bit
    # (T divides 1000 here, so diffusers' t - 1000 // T rule picks the same a_prev as ours)
    sched = make_scheduler(T, spacing, prediction_type)
    g = torch.Generator().manual_seed(100 + T)
    x = torch.randn(SHAPE, generator=g)
    args = (sched.timesteps, sched.alphas_cumprod, float(sched.final_alpha_cumprod))
    for i, t in enumerate(sched.timesteps):
        out = torch.randn(SHAPE, generator=g)
        ref = sched.step(out, t, x, eta=0.0)
        ours = ddim_step(out, x, torch.full((SHAPE[0],), i), *args, prediction_type=prediction_type)
        assert torch.equal(ours.next_sample, ref.prev_sample), (T, spacing, i)
        assert torch.equal(ours.pred_original_sample, ref.pred_original_sample), (T, spacing, i)
        x = ref.prev_sample


def test_deterministic_step_is_the_mean_of_the_stochastic_step():
    # eta = 0 is the limit of the policy: x_{i+1} = mu, and x0 does not depend on eta
    sched = make_scheduler(10)
    g = torch.Generator().manual_seed(11)
    x, eps, z = (torch.randn(SHAPE, generator=g) for _ in range(3))
    det = ddim_step(
        eps, x, torch.full((SHAPE[0],), 3), sched.timesteps, sched.alphas_cumprod, float(sched.final_alpha_cumprod)
    )
    sto = our_step(sched, eps, x, 3, noise=z, eta=1e-12)
    torch.testing.assert_close(det.next_sample, sto.mean)
    assert torch.equal(det.pred_original_sample, sto.pred_original_sample)


# ---------------------------------------------------------------- which alpha is a_prev


def test_step_alphas_hand_check_trailing_T3():
    # trailing spacing, T=3: timesteps = round(1000, 666.67, 333.33) - 1 = [999, 666, 332]
    sched = make_scheduler(3, "trailing")
    assert sched.timesteps.tolist() == [999, 666, 332]
    acp = sched.alphas_cumprod
    a_t, a_prev = step_alphas(torch.tensor([0, 1, 2]), sched.timesteps, acp, float(sched.final_alpha_cumprod))
    assert torch.equal(a_t, acp[[999, 666, 332]])
    # a_prev: the scheduler's next timestep (666, then 332), then the final alpha (= acp[0] here)
    assert torch.equal(a_prev, torch.stack([acp[666], acp[332], sched.final_alpha_cumprod]))
    # the reference rule t - 1000 // 3 = t - 333 lands on 999 - 333 = 666 (right), but on
    # 666 - 333 = 333 != 332 at step 1 (wrong alpha)
    _, ref_prev_1 = reference_alphas(sched, 1)
    assert torch.equal(ref_prev_1, acp[333])
    assert ref_prev_1 != a_prev[1]


def test_step_alphas_trailing_T6_differs_from_reference_rule():
    # trailing, T=6: timesteps [999, 832, 666, 499, 332, 166]; the reference goes 999 - 166 = 833 != 832
    sched = make_scheduler(6, "trailing")
    assert sched.timesteps.tolist() == [999, 832, 666, 499, 332, 166]
    acp = sched.alphas_cumprod
    _, a_prev = step_alphas(torch.arange(6), sched.timesteps, acp, float(sched.final_alpha_cumprod))
    expected = torch.stack([acp[832], acp[666], acp[499], acp[332], acp[166], sched.final_alpha_cumprod])
    assert torch.equal(a_prev, expected)
    ref_prev = torch.stack([reference_alphas(sched, i)[1] for i in range(6)])
    assert not torch.equal(a_prev, ref_prev)
    assert torch.equal(ref_prev[0], acp[833])


def test_uneven_T_our_step_differs_from_diffusers_where_the_reference_rule_is_wrong():
    # T=3 trailing: step 0 (666 either way) agrees with diffusers bit for bit; step 1 does not
    sched = make_scheduler(3, "trailing")
    g = torch.Generator().manual_seed(3)
    x, eps, z = (torch.randn(SHAPE, generator=g) for _ in range(3))
    for i, same in ((0, True), (1, False), (2, True)):
        ref = sched.step(eps, sched.timesteps[i], x, eta=1.0, variance_noise=z).prev_sample
        ours = our_step(sched, eps, x, i, noise=z).next_sample
        assert torch.equal(ours, ref) == same, i


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("T", [1, 2, 4, 5, 8, 10, 20, 25, 50, 100])
def test_step_alphas_equal_reference_rule_when_T_divides_1000(spacing, T):
    sched = make_scheduler(T, spacing)
    a_t, a_prev = step_alphas(torch.arange(T), sched.timesteps, sched.alphas_cumprod, float(sched.final_alpha_cumprod))
    ref = [reference_alphas(sched, i) for i in range(T)]
    assert torch.equal(a_t, torch.stack([r[0] for r in ref]))
    assert torch.equal(a_prev, torch.stack([r[1] for r in ref]))


# ---------------------------------------------------------------- batches and errors


def test_per_sample_step_indices_equal_row_by_row():
    sched = make_scheduler(10)
    g = torch.Generator().manual_seed(5)
    n = 4
    x, eps, z = (torch.randn(n, 2, 3, 3, generator=g) for _ in range(3))
    steps = torch.tensor([0, 9, 3, 6])
    args = (sched.timesteps, sched.alphas_cumprod, float(sched.final_alpha_cumprod))
    batch = ddim_step_with_logprob(eps, x, steps, *args, eta=1.0, noise=z)
    for r in range(n):
        row = ddim_step_with_logprob(eps[r : r + 1], x[r : r + 1], steps[r : r + 1], *args, eta=1.0, noise=z[r : r + 1])
        assert torch.equal(batch.next_sample[r], row.next_sample[0])
        assert torch.equal(batch.pred_original_sample[r], row.pred_original_sample[0])
        assert torch.equal(batch.std_dev[r], row.std_dev[0])
        torch.testing.assert_close(batch.log_prob[r], row.log_prob[0], rtol=0, atol=1e-6)
    # rows at different steps really have different sigmas
    assert len(set(batch.std_dev.tolist())) == n


def test_eta_scales_sigma():
    sched = make_scheduler(10)
    x, eps, z = torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)
    one = our_step(sched, eps, x, 4, noise=z, eta=1.0)
    half = our_step(sched, eps, x, 4, noise=z, eta=0.5)
    torch.testing.assert_close(half.std_dev, 0.5 * one.std_dev)


def test_errors():
    sched = make_scheduler(10)
    x = torch.zeros(1, 1, 2, 2)
    with pytest.raises(ValueError, match="prediction_type"):
        ddim_step_with_logprob(
            x,
            x,
            torch.tensor([0]),
            sched.timesteps,
            sched.alphas_cumprod,
            0.9,
            eta=1.0,
            prediction_type="flow",
            noise=x,
        )
    for eta in (0.0, -1.0):
        with pytest.raises(ValueError, match="eta"):
            our_step(sched, x, x, 0, noise=x, eta=eta)
    with pytest.raises(ValueError, match="noise"):
        our_step(sched, x, x, 0)
