"""Tests for learner/algo/minibatches.py: step-shuffled minibatches (spec section 6)."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from learner.algo.minibatches import micro_batches, num_train_steps, step_shuffled_schedule, trainable_steps


def step_shuffled_minibatches(num_samples, num_steps, batch_size, timestep_fraction, generator):
    """One inner epoch as the reference walks it: for each step position j, the shuffled samples in
    minibatches of `batch_size` (the last one of a position may be short): the schedule cut at every
    position boundary."""
    schedule = step_shuffled_schedule(num_samples, num_steps, timestep_fraction, 1, generator)
    for lo in range(0, len(schedule), num_samples):
        yield from micro_batches(schedule, lo, lo + num_samples, batch_size)


def num_backward_passes(num_samples, num_steps, batch_size, timestep_fraction):
    return num_train_steps(num_steps, timestep_fraction) * -(-num_samples // batch_size)


def run(num_samples, num_steps, batch_size, fraction, seed=0):
    g = torch.Generator().manual_seed(seed)
    return list(step_shuffled_minibatches(num_samples, num_steps, batch_size, fraction, g))


@pytest.mark.parametrize("num_samples,batch_size", [(6, 2), (7, 3), (4, 1), (5, 5), (3, 8)])
def test_every_pair_once_per_epoch(num_samples, batch_size):
    T = 5
    batches = run(num_samples, T, batch_size, 1.0)
    seen = Counter((int(s), int(j)) for mb in batches for s, j in zip(mb.sample_index, mb.step_index))
    assert set(seen) == {(s, j) for s in range(num_samples) for j in range(T)}
    assert set(seen.values()) == {1}
    # shapes: each minibatch has matching (M,) indices, M <= batch_size, only the last of a step may be short
    for mb in batches:
        assert mb.sample_index.shape == mb.step_index.shape and 1 <= len(mb.sample_index) <= batch_size


def test_each_sample_steps_form_a_permutation_in_order_of_position():
    # 6 samples, batch 2 -> 3 minibatches per step position; position j is minibatches 3j .. 3j+2
    T, batches = 7, run(6, 7, 2, 1.0, seed=3)
    order = {s: [] for s in range(6)}
    for mb in batches:
        for s, j in zip(mb.sample_index.tolist(), mb.step_index.tolist()):
            order[s].append(j)
    for s, steps in order.items():
        assert sorted(steps) == list(range(T)), s
    # the samples really get their own permutations (identical ones for all 6 would be a 1 in 7!^5 fluke)
    assert len({tuple(v) for v in order.values()}) > 1
    # and the order is shuffled, not 0..T-1 for everyone
    assert any(v != list(range(T)) for v in order.values())


def test_sample_order_is_the_same_shuffle_at_every_position():
    # within one inner epoch the samples are shuffled once; each step position walks the same order
    batches = run(5, 4, 2, 1.0, seed=4)
    per_position = 3  # ceil(5 / 2)
    orders = [
        torch.cat([mb.sample_index for mb in batches[p * per_position : (p + 1) * per_position]]).tolist()
        for p in range(4)
    ]
    assert all(o == orders[0] for o in orders)
    assert sorted(orders[0]) == list(range(5))


def test_half_fraction_trains_on_half_the_positions():
    # T = 8, fraction .5 -> the first int(8 * .5) = 4 permuted positions of every sample
    batches = run(4, 8, 2, 0.5, seed=5)
    full = run(4, 8, 2, 1.0, seed=5)
    assert len(batches) == 4 * 2 and len(full) == 8 * 2
    per_sample = Counter(int(s) for mb in batches for s in mb.sample_index)
    assert per_sample == {s: 4 for s in range(4)}
    pairs = [(int(s), int(j)) for mb in batches for s, j in zip(mb.sample_index, mb.step_index)]
    assert len(set(pairs)) == 16  # 4 samples x 4 distinct steps
    # same seed: the half epoch is exactly the first half of the full epoch's schedule
    for a, b in zip(batches, full[:8]):
        assert torch.equal(a.sample_index, b.sample_index) and torch.equal(a.step_index, b.step_index)


def test_tiny_fraction_keeps_one_position():
    # int(5 * .1) = 0, but at least one step position is trained
    batches = run(3, 5, 3, 0.1)
    assert len(batches) == 1 and len(batches[0].sample_index) == 3


def test_deterministic_for_the_same_seed():
    a, b, c = run(6, 5, 2, 1.0, seed=11), run(6, 5, 2, 1.0, seed=11), run(6, 5, 2, 1.0, seed=12)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.equal(x.sample_index, y.sample_index) and torch.equal(x.step_index, y.step_index)
    assert any(
        not torch.equal(x.step_index, z.step_index) or not torch.equal(x.sample_index, z.sample_index)
        for x, z in zip(a, c)
    )


def test_consecutive_epochs_from_one_generator_differ():
    g = torch.Generator().manual_seed(0)
    e1 = list(step_shuffled_minibatches(6, 5, 2, 1.0, g))
    e2 = list(step_shuffled_minibatches(6, 5, 2, 1.0, g))
    assert any(not torch.equal(x.step_index, y.step_index) for x, y in zip(e1, e2))


@pytest.mark.parametrize(
    "num_samples,num_steps,batch_size,fraction,expected",
    [
        (6, 5, 2, 1.0, 15),  # 5 positions x ceil(6/2) = 3
        (7, 5, 3, 1.0, 15),  # 5 x ceil(7/3) = 3
        (8, 50, 1, 1.0, 400),  # 50 x 8
        (4, 8, 2, 0.5, 8),  # 4 x 2
        (3, 5, 3, 0.1, 1),  # max(1, 0) x 1
        (32, 50, 2, 1.0, 800),  # the aesthetic preset: 50 x 16
    ],
)
def test_num_backward_passes_matches_count(num_samples, num_steps, batch_size, fraction, expected):
    assert num_backward_passes(num_samples, num_steps, batch_size, fraction) == expected
    assert len(run(num_samples, num_steps, batch_size, fraction)) == expected


def test_schedule_and_micro_batches_cover_each_item_once():
    g = torch.Generator().manual_seed(0)
    sched = step_shuffled_schedule(5, 4, 1.0, 2, g)  # 2 inner epochs x 4 positions x 5 samples
    assert len(sched) == 40
    first_epoch = Counter(zip(sched.sample_index[:20].tolist(), sched.step_index[:20].tolist()))
    assert set(first_epoch) == {(s, j) for s in range(5) for j in range(4)} and set(first_epoch.values()) == {1}
    # optimizer step k = items [8k, 8k + 8): micro-batches of 3 split it as 3 + 3 + 2, never across steps
    sizes = [len(mb) for mb in micro_batches(sched, 8, 16, 3)]
    assert sizes == [3, 3, 2]
    assert [len(mb) for mb in micro_batches(sched, 32, 48, 8)] == [8]  # clipped to the schedule's end


def test_reference_walk_equals_the_schedule_in_minibatches():
    """step_shuffled_minibatches (the reference's walk: per position, per minibatch) is the schedule
    cut at every position boundary."""
    walk = run(6, 3, 2, 1.0, seed=5)
    sched = step_shuffled_schedule(6, 3, 1.0, 1, torch.Generator().manual_seed(5))
    assert torch.equal(torch.cat([mb.sample_index for mb in walk]), sched.sample_index)
    assert torch.equal(torch.cat([mb.step_index for mb in walk]), sched.step_index)


def test_skipping_the_last_step_schedules_every_other_step_once():
    # T = 5 with train.skip_last_step: steps 0-3 of every sample once, step 4 never
    T = 5
    assert trainable_steps(T, True) == 4 and trainable_steps(T, False) == 5
    schedule = step_shuffled_schedule(6, trainable_steps(T, True), 1.0, 1, torch.Generator().manual_seed(0))
    seen = Counter(zip(schedule.sample_index.tolist(), schedule.step_index.tolist()))
    assert set(seen) == {(s, j) for s in range(6) for j in range(T - 1)} and set(seen.values()) == {1}
