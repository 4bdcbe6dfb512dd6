"""The learner worker on the real tiny pipeline: exact ratio on the first pass, version checks,
and that an update moves the LoRA weights in the direction the objective asks."""

from __future__ import annotations

import pytest
import torch

from actors.config import ModelConfig, SamplingConfig
from actors.rollout_worker import RolloutWorker
from learner.batch import TrainBatch
from learner.config import TrainConfig
from learner.learner_worker import LearnerWorker, StalePolicyError

SAMPLING = SamplingConfig(num_steps=4)


@pytest.fixture(scope="module")
def workers(tiny_cache):
    model = ModelConfig(tiny_cache_dir=tiny_cache)
    learner = LearnerWorker(model, SAMPLING, TrainConfig(learning_rate=1e-2, gradient_accumulation_steps=2), seed=0)
    rollout = RolloutWorker(model, SAMPLING, seed=0)
    return learner, rollout


def _batch(learner, rollout, epoch, advantages=None) -> TrainBatch:
    rollout.set_weights(learner.get_weights())
    b = rollout.rollout(epoch, [0, 1], ["cat", "dog"], learner.version)
    adv = advantages if advantages is not None else torch.tensor([[1.0, -1.0]]).repeat(2, 1)[:, :, None].expand(2, 2, 4)
    return TrainBatch(b.policy_version, epoch, b.prompts, b.timesteps, b.latents, b.log_probs, adv.contiguous())


def test_update_ratio_first_pass_is_one_and_version_increments(workers):
    learner, rollout = workers
    v0 = learner.version
    metrics = learner.update(_batch(learner, rollout, 0))
    assert metrics["ratio_first_pass"] == 1.0
    assert metrics["backward_passes"] == 4  # T=4 steps x 1 minibatch of 2 pairs
    assert learner.version == v0 + 1
    assert learner.get_weights().version == v0 + 1


def test_stale_batch_is_rejected(workers):
    learner, rollout = workers
    batch = _batch(learner, rollout, 1)
    batch.policy_version -= 1
    with pytest.raises(StalePolicyError, match="expects data from policy version"):
        learner.update(batch)


def test_update_raises_the_log_prob_of_the_better_trajectory(workers):
    learner, rollout = workers
    batch = _batch(learner, rollout, 2)  # trajectory 1 has the higher advantage at every step
    learner.update(batch)
    rollout.set_weights(learner.get_weights())
    # recompute log-probs of the same actions under the new policy
    from actors.policy import encode_prompts
    from actors.sampling import score_steps

    pipe = rollout.pipe
    embeds = encode_prompts(pipe, batch.prompts).repeat_interleave(2, dim=0)
    diffs = []
    for i in range(4):
        x, x_next = batch.latents[:, :, i].flatten(0, 1), batch.latents[:, :, i + 1].flatten(0, 1)
        with torch.no_grad():
            lp = score_steps(pipe.unet, pipe.scheduler, x, x_next, torch.full((4,), i), batch.timesteps, embeds, 1.0)
        lp = lp.log_prob.view(2, 2)
        rho = lp - batch.log_probs[:, :, i]
        diffs.append((rho[:, 0] - rho[:, 1]).mean())
    assert torch.stack(diffs).mean() > 0


def test_train_batch_validate():
    good = TrainBatch(0, 0, ["a"], torch.arange(3), torch.zeros(1, 2, 4, 4, 2, 2), torch.zeros(1, 2, 3), torch.zeros(1, 2, 3))
    good.validate()
    with pytest.raises(ValueError, match="advantages"):
        TrainBatch(0, 0, ["a"], torch.arange(3), torch.zeros(1, 2, 4, 4, 2, 2), torch.zeros(1, 2, 3), torch.zeros(1, 2, 2)).validate()
    with pytest.raises(ValueError, match="finite"):
        TrainBatch(0, 0, ["a"], torch.arange(3), torch.zeros(1, 2, 4, 4, 2, 2), torch.zeros(1, 2, 3), torch.full((1, 2, 3), float("nan"))).validate()
