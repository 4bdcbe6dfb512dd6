"""Tests for learner/algo/ddpo.py (the DDPO baseline: PPO clipped loss, per-prompt final-reward
advantages) and learner/algo/registry.py (algorithms by name), plus a DDPO update on the tiny pipeline."""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import pytest
import torch

from learner.algo.advantages import StepStatTracker
from learner.algo.ddpo import ddpo_advantages, ddpo_loss
from learner.algo.registry import ALGORITHMS, StepItems, get_algorithm
from plumbing.errors import UsageError
from tests.conftest import final_rewards, update_request


def final_reward_advantages(rewards, prompts, num_steps, adv_clip_max, tracker):
    return ddpo_advantages(final_rewards(rewards, prompts, num_steps), tracker, adv_clip_max=adv_clip_max)


def f64(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


# Two pairs (M = 2) x two trajectories; log-ratios chosen so the ratios are round numbers:
#   ratio = [[1.2, 0.5], [1.0, 0.95]]    A = [[2, -1], [-0.5, 3]]
RATIO = f64([[1.2, 0.5], [1.0, 0.95]])
OLD = f64([[0.3, -0.1], [0.0, 2.0]])
NEW = OLD + RATIO.log()
ADV = f64([[2.0, -1.0], [-0.5, 3.0]])


def test_loss_hand_worked_clipped():
    # clip_range .1, ratio clipped to [.9, 1.1]; per trajectory-step max(-A r, -A clip(r)):
    #   r 1.2,  A  2:  max(-2.4, -2 * 1.1 = -2.2)  = -2.2   (clipped: no gain past 1.1)
    #   r 0.5,  A -1:  max( 0.5,  1 * 0.9 =  0.9)  =  0.9   (clipped: no gain below 0.9)
    #   r 1.0,  A -.5: max( 0.5,  0.5)             =  0.5
    #   r 0.95, A  3:  max(-2.85, -2.85)           = -2.85  (inside the range)
    # loss = (-2.2 + 0.9 + 0.5 - 2.85) / 4 = -3.65 / 4 = -0.9125
    # clipfrac: |r - 1| = .2, .5, 0, .05 -> two of four exceed .1 -> 0.5
    # approx_kl = .5 * mean(log(1.2)^2, log(.5)^2, 0, log(.95)^2)
    out = ddpo_loss(NEW, OLD, ADV, clip_range=0.1)
    assert out.loss.item() == pytest.approx(-0.9125, rel=1e-12)
    assert out.clipfrac.item() == 0.5
    kl = 0.5 * (math.log(1.2) ** 2 + math.log(0.5) ** 2 + 0.0 + math.log(0.95) ** 2) / 4
    assert out.approx_kl.item() == pytest.approx(kl, rel=1e-12)


def test_loss_hand_worked_unclipped():
    # clip_range 0: mean(-A r) = (-2.4 + 0.5 + 0.5 - 2.85) / 4 = -4.25 / 4 = -1.0625
    out = ddpo_loss(NEW, OLD, ADV, clip_range=0.0)
    assert out.loss.item() == pytest.approx(-1.0625, rel=1e-12)
    assert out.clipfrac.item() == 0.0


def test_clipped_entries_get_no_gradient():
    # d(-A r)/d new = -A r (r = exp(new - old)), over M * P = 4 entries:
    #   the two clipped entries: 0
    #   r 1.0, A -.5: both branches equal and inside the range -> -(-.5)(1.0) / 4 = .125
    #   r .95, A 3:   inside the range                          -> -(3)(.95) / 4   = -.7125
    new = NEW.clone().requires_grad_(True)
    ddpo_loss(new, OLD, ADV, clip_range=0.1).loss.backward()
    torch.testing.assert_close(new.grad, f64([[0.0, 0.0], [0.125, -0.7125]]))


def test_first_pass_loss_is_minus_mean_advantage():
    # new == old: ratio 1 everywhere, so loss = mean(-A) = -(2 - 1 - .5 + 3) / 4 = -0.875; nothing clipped
    out = ddpo_loss(OLD.clone(), OLD, ADV, clip_range=1e-4)
    assert out.loss.item() == pytest.approx(-0.875, rel=1e-12)
    assert out.clipfrac.item() == 0.0 and out.approx_kl.item() == 0.0


def test_advantages_hand_worked_per_prompt_with_fallback():
    # B = 2 prompts x P = 2 trajectories, min_count 3: every prompt has 2 < 3 values -> batch stats.
    #   batch [1, 3, 2, 2]: mean 2, std sqrt((1 + 1 + 0 + 0) / 4) = sqrt(.5)
    #   cat: (1 - 2) / sqrt(.5) = -1.4142, (3 - 2) / sqrt(.5) = 1.4142 -> clipped to +-1;  dog: 0, 0
    tracker = StepStatTracker(buffer_size=4, min_count=3)
    adv = final_reward_advantages(np.array([[1.0, 3.0], [2.0, 2.0]]), ["cat", "dog"], 3, 1.0, tracker)
    assert adv.shape == (2, 2, 3)
    np.testing.assert_allclose(adv[:, :, 0], [[-1.0, 1.0], [0.0, 0.0]], atol=1e-9)
    assert (adv == adv[:, :, :1]).all()  # the same advantage at every step of a trajectory
    # next epoch, cat again with [5, 5]: its buffer [1, 3, 5, 5] holds 4 >= 3 values -> its own stats
    #   mean 3.5, std sqrt((2.5^2 + .5^2 + 1.5^2 + 1.5^2) / 4) = sqrt(2.75); (5 - 3.5) / sqrt(2.75) = .904534
    adv = final_reward_advantages(np.array([[5.0, 5.0]]), ["cat"], 2, 5.0, tracker)
    np.testing.assert_allclose(adv, np.full((1, 2, 2), 1.5 / math.sqrt(2.75)), rtol=1e-5)


def test_advantages_without_tracking_normalize_over_the_batch():
    # [1, 3, 2, 2] -> (r - 2) / sqrt(.5): [-1.4142, 1.4142, 0, 0]
    adv = final_reward_advantages(np.array([[1.0, 3.0], [2.0, 2.0]]), ["cat", "dog"], 1, 5.0, None)
    np.testing.assert_allclose(adv[:, :, 0], [[-math.sqrt(2), math.sqrt(2)], [0, 0]], rtol=1e-5)


class DDPOPerPromptStatTracker:
    """ddpo-pytorch's PerPromptStatTracker (ddpo_pytorch/stat_tracking.py), transcribed as the reference."""

    def __init__(self, buffer_size, min_count):
        self.buffer_size, self.min_count, self.stats = buffer_size, min_count, {}

    def update(self, prompts, rewards):
        prompts, rewards = np.array(prompts), np.array(rewards)
        advantages = np.empty_like(rewards)
        for prompt in np.unique(prompts):
            prompt_rewards = rewards[prompts == prompt]
            self.stats.setdefault(prompt, deque(maxlen=self.buffer_size)).extend(prompt_rewards)
            if len(self.stats[prompt]) < self.min_count:
                mean, std = np.mean(rewards), np.std(rewards) + 1e-6
            else:
                mean, std = np.mean(self.stats[prompt]), np.std(self.stats[prompt]) + 1e-6
            advantages[prompts == prompt] = (prompt_rewards - mean) / std
        return advantages


def test_advantages_equal_ddpo_pytorch_tracker_over_epochs():
    rng = np.random.default_rng(0)
    ours, ref = StepStatTracker(buffer_size=6, min_count=4), DDPOPerPromptStatTracker(6, 4)
    for _ in range(5):
        prompts = list(rng.choice(["cat", "dog", "owl"], size=4))
        rewards = rng.normal(size=(4, 2))
        got = final_reward_advantages(rewards, prompts, 2, 100.0, ours)[:, :, 0]  # (B, P)
        # the SDPO reference's order: every first trajectory, then every second one
        want = ref.update(prompts + prompts, rewards.T.reshape(-1)).reshape(2, 4).T
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_registry():
    assert set(ALGORITHMS) == {"sdpo", "ddpo"}
    # DDPO's loss weighs every step alike: the items' temporal weights change nothing
    for weights in (f64([1.0, 0.5]), f64([1.0, 1.0])):
        out = get_algorithm("ddpo").loss(StepItems(NEW, OLD, ADV, weights), 0.1)
        assert out.loss.item() == pytest.approx(-0.9125, rel=1e-12)
    assert (get_algorithm("ddpo").schedule, get_algorithm("sdpo").schedule) == ("trajectory", "step_shuffled")
    with pytest.raises(UsageError, match="unknown algorithm 'ppo'; valid names: ddpo, sdpo") as err:
        get_algorithm("ppo")
    assert err.value.exit_code == 2


def test_ddpo_update_on_the_tiny_pipeline(tiny_cache):
    """A DDPO update through the real LearnerWorker: ratio exactly 1 on the first pass, and the
    trajectory with the positive advantage gains log-probability relative to the other."""
    from actors.config import ModelConfig, SamplingConfig
    from actors.policy import encode_prompts
    from actors.rollout_worker import RolloutWorker
    from actors.sampling import score_steps
    from learner.worker.config import TrainConfig
    from learner.worker.learner_worker import LearnerWorker

    sampling, model = SamplingConfig(num_steps=3), ModelConfig(tiny_cache_dir=tiny_cache)
    train = TrainConfig(learning_rate=1e-2, clip_range=0.2, gradient_accumulation_steps=3)
    learner = LearnerWorker(model=model, sampling=sampling, train=train, seed=0, algorithm="ddpo")
    rollout = RolloutWorker(model=model, sampling=sampling, seed=0)
    rollout.set_weights(learner.get_weights())
    b = rollout.rollout(0, [0, 1], ["cat", "dog"], learner.version).trajectories
    adv = torch.tensor([1.0, -1.0])[None, :, None].expand(2, 2, 3).contiguous()  # (B, P, T): trajectory 1 better
    metrics = learner.update(update_request(b, adv), b)
    assert metrics["ratio_first_pass"] == 1.0 and metrics["backward_passes"] == 3
    rollout.set_weights(learner.get_weights())
    pipe = rollout.pipe
    embeds = encode_prompts(pipe, b.prompts).repeat_interleave(2, dim=0)  # (2B, L, D)
    diffs = []
    for i in range(3):
        x, x_next = b.latents[:, :, i].flatten(0, 1), b.latents[:, :, i + 1].flatten(0, 1)  # (2B, C, h, w)
        with torch.no_grad():
            lp = score_steps(pipe.unet, pipe.scheduler, x, x_next, torch.full((4,), i), b.timesteps, embeds, 1.0)
        lp = lp.log_prob.view(2, 2)  # (B, P)
        rho = lp - b.log_probs[:, :, i]
        diffs.append((rho[:, 0] - rho[:, 1]).mean())
    assert torch.stack(diffs).mean() > 0
