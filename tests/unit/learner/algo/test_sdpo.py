"""Tests for learner/algo/sdpo.py: temporal weights and the dense reward difference loss (spec section 5)."""

from __future__ import annotations

import pytest
import torch

from learner.algo.sdpo import sdpo_loss, temporal_weights


def f64(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


# Two pairs (M = 2), pair axis last. Log-ratios rho = new - old:
#   pair 1: rho = (.3 - .1, .1 - .2) = (.2, -.1)          rho_1 - rho_2 = .3   A^1 - A^2 = 1 - (-.5) = 1.5
#   pair 2: rho = (-1 + 1.1, -1.22 + 1.2) = (.1, -.02)    rho_1 - rho_2 = .12  A^1 - A^2 = .2 - .4 = -.2
NEW = f64([[0.3, 0.1], [-1.0, -1.22]])
OLD = f64([[0.1, 0.2], [-1.1, -1.2]])
ADV = f64([[1.0, -0.5], [0.2, 0.4]])
W = f64([1.0, 0.5])  # w_j of each pair's step


def test_temporal_weights_hand_values():
    # lam**j / log_scale: .5**[0,1,2,3] / 2 = [.5, .25, .125, .0625]
    torch.testing.assert_close(temporal_weights(4, lam=0.5, log_scale=2.0), torch.tensor([0.5, 0.25, 0.125, 0.0625]))
    # defaults lam .99, log_scale 1: [1, .99, .9801]; early steps weigh more
    w = temporal_weights(3)
    torch.testing.assert_close(w, torch.tensor([1.0, 0.99, 0.9801]))
    assert w.dtype == torch.float32 and torch.all(w[1:] < w[:-1])


def test_loss_hand_worked_unclipped():
    # pair 1: (1 * .3 - 1.5)^2 = (-1.2)^2 = 1.44
    # pair 2: (.5 * .12 - (-.2))^2 = (.06 + .2)^2 = .0676
    # loss = (1.44 + .0676) / 2 = .7538
    # approx_kl = .5 * mean(.2^2, .1^2, .1^2, .02^2) = .5 * (.04 + .01 + .01 + .0004) / 4 = .00755
    out = sdpo_loss(NEW, OLD, ADV, W, clip_range=0.0)
    assert out.loss.item() == pytest.approx(0.7538, rel=1e-9)
    assert out.approx_kl.item() == pytest.approx(0.00755, rel=1e-9)
    assert out.clipfrac.item() == 0.0


def test_loss_hand_worked_clipped_takes_the_max():
    # clip_range .05: each new log-prob clamped to old +- .05
    #   pair 1: clamped rho = (.05, -.05), difference .1: L_clip = (.1 - 1.5)^2 = 1.96 > L_unclip 1.44 -> 1.96
    #   pair 2: clamped rho = (.05, -.02), difference .07: L_clip = (.035 + .2)^2 = .055225 < .0676 -> .0676
    # loss = (1.96 + .0676) / 2 = 1.0138; clipfrac (the reference's: L_clip > L_unclip): pair 1 only -> 1/2
    out = sdpo_loss(NEW, OLD, ADV, W, clip_range=0.05)
    assert out.loss.item() == pytest.approx(1.0138, rel=1e-9)
    assert out.clipfrac.item() == pytest.approx(0.5)
    assert out.loss.item() > sdpo_loss(NEW, OLD, ADV, W, clip_range=0.0).loss.item()


def test_clipped_pair_gets_no_gradient():
    # pair 1's max is the clipped loss, whose clamped log-probs are constant: no gradient through it.
    # pair 2's max is the unclipped loss: d/d new = 2 * (w d - dA) * w * (+1, -1) / M
    #   = 2 * .26 * .5 * (1, -1) / 2 = (.13, -.13)
    new = NEW.clone().requires_grad_(True)
    sdpo_loss(new, OLD, ADV, W, clip_range=0.05).loss.backward()
    torch.testing.assert_close(new.grad, f64([[0.0, 0.0], [0.13, -0.13]]))


@pytest.mark.parametrize("clip_range", [0.0, 1e-4])
def test_zero_loss_when_policy_unchanged_and_advantages_equal(clip_range):
    g = torch.Generator().manual_seed(0)
    old = torch.randn(5, 2, generator=g)
    adv = torch.randn(5, 1, generator=g).expand(5, 2)  # A^1 = A^2 in every pair
    out = sdpo_loss(old.clone(), old, adv, temporal_weights(5), clip_range=clip_range)
    assert out.loss.item() == 0.0 and out.approx_kl.item() == 0.0 and out.clipfrac.item() == 0.0
    # with unequal advantages and an unchanged policy, the loss is mean((A^1 - A^2)^2): (2^2 + 0^2) / 2 = 2
    out = sdpo_loss(
        f64([[0.0, 0.0], [1.0, 1.0]]),
        f64([[0.0, 0.0], [1.0, 1.0]]),
        f64([[1.0, -1.0], [3.0, 3.0]]),
        f64([1.0, 1.0]),
        clip_range=clip_range,
    )
    assert out.loss.item() == pytest.approx(2.0)


def test_gradient_step_raises_the_better_trajectory():
    # A^1 > A^2 in every pair: one SGD step on the new log-probs must lower the loss and push
    # rho_1 - rho_2 up. At new = old: dL/d new_1 = 2 (w * 0 - 2) * w / M < 0, so new_1 rises, new_2 falls.
    g = torch.Generator().manual_seed(1)
    old = torch.randn(3, 2, generator=g)
    adv = torch.tensor([[1.0, -1.0], [0.5, -0.5], [2.0, 0.0]])
    w = temporal_weights(50)[torch.tensor([0, 10, 49])]
    new = torch.nn.Parameter(old.clone())
    opt = torch.optim.SGD([new], lr=0.1)
    before = sdpo_loss(new, old, adv, w, clip_range=0.0).loss
    before.backward()
    opt.step()
    after = sdpo_loss(new, old, adv, w, clip_range=0.0).loss
    rho = (new - old).detach()
    assert after.item() < before.item()
    assert torch.all(rho[:, 0] - rho[:, 1] > 0)  # was exactly 0 before the step
    assert torch.all(rho[:, 0] > 0) and torch.all(rho[:, 1] < 0)
    # before: mean of (A^1 - A^2)^2 = (4 + 1 + 4) / 3 = 3
    assert before.item() == pytest.approx(3.0)


def test_clipfrac_counts_pairs_whose_clipped_loss_is_larger():
    # clipfrac = mean(L_clip > L_unclip), as the reference logs it; w = 1, clip_range 1e-4:
    #   pair 1: rho (2e-4, 0), A diff  1: L_unclip .9998^2... = (2e-4 - 1)^2 < L_clip (1e-4 - 1)^2  -> counts
    #   pair 2: rho (2e-4, 0), A diff -1: L_unclip (2e-4 + 1)^2 > L_clip (1e-4 + 1)^2            -> no
    #   pair 3: rho (5e-5, 0), A diff  1: inside the range, L_clip == L_unclip                     -> no
    #   pair 4: rho (0, -3e-4), A diff 1: L_unclip (3e-4 - 1)^2 < L_clip (1e-4 - 1)^2              -> counts
    old = torch.zeros(4, 2, dtype=torch.float64)
    new = f64([[2e-4, 0.0], [2e-4, 0.0], [5e-5, 0.0], [0.0, -3e-4]])
    adv = f64([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    out = sdpo_loss(new, old, adv, torch.ones(4, dtype=torch.float64), clip_range=1e-4)
    assert out.clipfrac.item() == pytest.approx(2 / 4)
    assert not out.clipfrac.requires_grad


def test_weights_scale_the_log_ratio_difference():
    # one pair, rho = (.4, 0), A^1 - A^2 = 1: w = 2.5 makes w * .4 = 1 exactly -> loss 0; w = 1 -> (.4 - 1)^2 = .36
    new, old, adv = f64([[0.4, 0.0]]), f64([[0.0, 0.0]]), f64([[1.0, 0.0]])
    assert sdpo_loss(new, old, adv, f64([2.5]), clip_range=0.0).loss.item() == pytest.approx(0.0, abs=1e-12)
    assert sdpo_loss(new, old, adv, f64([1.0]), clip_range=0.0).loss.item() == pytest.approx(0.36)
