"""Tests for the `trajectory` update schedule (learner/algo/minibatches.py): DDPO as ddpo-pytorch
runs it, every trained step of a group of samples accumulated into one optimizer step."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from learner.algo.minibatches import items_per_optimizer_step, micro_batches, trajectory_schedule, update_schedule
from learner.config import load_config


def ddpo_pytorch_optimizer_steps(num_samples, num_timesteps, batch_size, grad_accum, timestep_fraction, generator):
    """kvablack/ddpo-pytorch scripts/train.py's training loop (lines 453-593), transcribed: the same
    draws in the same order, each backward pass a list of (sample, timestep), and the Accelerator's
    accumulation of grad_accum x num_train_timesteps passes (lines 70-78) as one optimizer step."""
    num_train_timesteps = int(num_timesteps * timestep_fraction)
    perm = torch.randperm(num_samples, generator=generator)
    perms = torch.stack([torch.randperm(num_timesteps, generator=generator) for _ in range(num_samples)])
    samples = torch.arange(num_samples)[perm]  # samples = {k: v[perm]}
    timesteps = torch.arange(num_timesteps).repeat(num_samples, 1)[
        perm
    ]  # (B, T) step indices, as the samples' "timesteps"
    timesteps = timesteps[torch.arange(num_samples)[:, None], perms]  # shuffled along time per (already shuffled) row
    batched = [(samples[i : i + batch_size], timesteps[i : i + batch_size]) for i in range(0, num_samples, batch_size)]
    steps, current, passes = [], [], 0
    for sample, ts in batched:
        for j in range(num_train_timesteps):
            current.append(list(zip(sample.tolist(), ts[:, j].tolist())))
            passes += 1
            if passes % (grad_accum * num_train_timesteps) == 0:  # accelerator.sync_gradients
                steps.append(current)
                current = []
    assert not current  # ddpo-pytorch asserts an optimizer step at the end of the inner epoch
    return steps


def ours(num_samples, num_timesteps, batch_size, grad_accum, timestep_fraction, generator):
    schedule = trajectory_schedule(num_samples, num_timesteps, batch_size, timestep_fraction, 1, generator)
    per_step = items_per_optimizer_step("trajectory", num_timesteps, batch_size, grad_accum, timestep_fraction)
    return [
        [
            list(zip(mb.sample_index.tolist(), mb.step_index.tolist()))
            for mb in micro_batches(schedule, lo, lo + per_step, batch_size)
        ]
        for lo in range(0, len(schedule), per_step)
    ]


@pytest.mark.parametrize(
    "num_samples,T,batch,accum,fraction", [(8, 3, 2, 2, 1.0), (12, 5, 3, 2, 1.0), (8, 4, 4, 1, 0.5), (6, 2, 1, 3, 1.0)]
)
def test_equals_the_ddpo_pytorch_loop(num_samples, T, batch, accum, fraction):
    """The same backward passes (which (sample, step) items each holds, in order) and the same
    optimizer steps as ddpo-pytorch's loop from the same generator state."""
    ref = ddpo_pytorch_optimizer_steps(num_samples, T, batch, accum, fraction, torch.Generator().manual_seed(3))
    got = ours(num_samples, T, batch, accum, fraction, torch.Generator().manual_seed(3))
    assert got == ref


def test_hand_worked_counts_and_whole_trajectories():
    """8 pairs, T = 3, batch 2, accumulation 2: an optimizer step takes 2 x 2 = 4 whole trajectories,
    4 x 3 = 12 items in 3 x 2 = 6 backward passes of 2; 8 x 3 = 24 items make 2 optimizer steps."""
    steps = ours(8, 3, 2, 2, 1.0, torch.Generator().manual_seed(0))
    assert len(steps) == 2
    assert [len(passes) for passes in steps] == [6, 6] and all(len(p) == 2 for s in steps for p in s)
    groups = []
    for passes in steps:
        items = Counter(item for p in passes for item in p)
        samples = {s for s, _ in items}
        assert len(samples) == 4 and set(items.values()) == {1}
        assert set(items) == {(s, j) for s in samples for j in range(3)}  # every step of each of its samples
        groups.append(samples)
    assert groups[0] | groups[1] == set(range(8)) and not groups[0] & groups[1]
    # the step-shuffled schedule of the same numbers takes 2 x 2 = 4 items per optimizer step instead
    assert (
        items_per_optimizer_step("step_shuffled", 3, 2, 2, 1.0) == 4
        and items_per_optimizer_step("trajectory", 3, 2, 2, 1.0) == 12
    )


def test_update_schedule_dispatches_and_refuses_unknown_names():
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    a = update_schedule("trajectory", 4, 3, 2, 1.0, 1, g())
    assert torch.equal(a.sample_index, trajectory_schedule(4, 3, 2, 1.0, 1, g()).sample_index)
    with pytest.raises(ValueError, match="unknown update schedule 'ppo'"):
        update_schedule("ppo", 4, 3, 2, 1.0, 1, g())


def test_config_resolves_each_algorithms_own_schedule_and_queries():
    sdpo = load_config("tiny")
    ddpo = load_config("tiny", ["algorithm=ddpo"])
    assert (sdpo.train.schedule, sdpo.sampling.reward_queries) == ("step_shuffled", "anchors")
    assert (ddpo.train.schedule, ddpo.sampling.reward_queries) == ("trajectory", "final")
    ablation = load_config("tiny", ["algorithm=ddpo", "train.schedule=step_shuffled"])
    assert ablation.train.schedule == "step_shuffled" and ablation.sampling.reward_queries == "final"
    # DDPO's optimizer steps per epoch: pairs x T items, cut into batch x accumulation x T each
    t, s = ddpo.train, ddpo.sampling
    per_step = t.batch_size * t.gradient_accumulation_steps * s.num_steps
    assert ddpo.samples_per_optimizer_step == per_step
    assert ddpo.optimizer_steps_per_epoch == -(-ddpo.rollout.pairs_per_epoch * s.num_steps // per_step)


def test_sdpo_refuses_final_queries():
    from learner.config import ConfigError

    with pytest.raises(ConfigError, match="sampling.reward_queries: SDPO's dense rewards need the anchor queries"):
        load_config("tiny", ["sampling.reward_queries=final"])
