"""The update schedules: which (pair, step) items share an optimizer step, and in what order.
Pure torch: no ray. Config `train.schedule`:

- `step_shuffled` (SDPO's reference, spec section 6): an optimizer step takes `batch_size x
  gradient_accumulation_steps` (pair, step) items, mixing the steps of many pairs.
- `trajectory` (ddpo-pytorch's, kvablack/ddpo-pytorch scripts/train.py lines 453-593): an optimizer
  step takes every trained step of `batch_size x gradient_accumulation_steps` pairs (whole
  trajectories), so it averages that many pairs x T items.

Step-shuffled, each inner epoch: shuffle the samples; give each sample its own permutation of the T steps; then
walk the permuted step positions j (the first timestep_fraction of them) and, inside each, the
shuffled samples. That sequence of (pair, step) items is cut into micro-batches (one backward pass
each) and optimizer steps (`samples_per_step` items each). The micro-batch size changes only how
many items share a backward pass, never which items share an optimizer step, so it changes speed,
not the math (up to float summation order).
"""

from __future__ import annotations

from typing import Iterator, NamedTuple

import torch


class Minibatch(NamedTuple):
    sample_index: torch.Tensor  # (M,) which pairs
    step_index: torch.Tensor  # (M,) which denoising step of each pair

    def __len__(self) -> int:
        return len(self.sample_index)


def trainable_steps(num_steps: int, skip_last_step: bool) -> int:
    """How many of the T steps an update may train on: all, or the first T - 1 (train.skip_last_step).
    The schedule permutes steps 0 .. trainable - 1, so leaving the last one out is a shorter range."""
    return num_steps - 1 if skip_last_step else num_steps


def num_train_steps(num_steps: int, timestep_fraction: float) -> int:
    """How many of the T permuted step positions are trained on."""
    return max(1, int(num_steps * timestep_fraction))


def step_shuffled_schedule(
    num_samples: int, num_steps: int, timestep_fraction: float, num_inner_epochs: int, generator: torch.Generator
) -> Minibatch:
    """The whole update's (pair, step) items in training order: (L,) each, L = inner epochs x
    num_train_steps x num_samples."""
    samples, steps = [], []
    for _ in range(num_inner_epochs):
        order = torch.randperm(num_samples, generator=generator)  # (B,)
        step_perms = torch.stack([torch.randperm(num_steps, generator=generator) for _ in range(num_samples)])  # (B, T)
        for j in range(num_train_steps(num_steps, timestep_fraction)):
            samples.append(order)
            steps.append(step_perms[order, j])  # (B,)
    return Minibatch(torch.cat(samples), torch.cat(steps))  # (L,), (L,)


def trajectory_schedule(
    num_samples: int,
    num_steps: int,
    batch_size: int,
    timestep_fraction: float,
    num_inner_epochs: int,
    generator: torch.Generator,
) -> Minibatch:
    """ddpo-pytorch's order, per inner epoch: shuffle the samples (its `perm`, line 457), give each its
    own permutation of the T steps (`perms`, lines 461-470), cut the shuffled samples into minibatches
    of `batch_size` (line 474), and for each minibatch walk the first num_train_steps permuted
    positions j (lines 487-507): item (order[r], perms[r][j]) for every shuffled position r of the
    minibatch (the permutations belong to positions in the shuffled order, as there).
    Its Accelerator accumulates gradient_accumulation_steps x num_train_steps such passes into one
    optimizer step (lines 70-78), i.e. whole trajectories: (L,) each, L = inner epochs x
    num_train_steps x num_samples. Both trajectories of a pair take the pair's permutation (which only
    matters when timestep_fraction < 1)."""
    samples, steps = [], []
    n_train = num_train_steps(num_steps, timestep_fraction)
    for _ in range(num_inner_epochs):
        order = torch.randperm(num_samples, generator=generator)  # (B,)
        step_perms = torch.stack([torch.randperm(num_steps, generator=generator) for _ in range(num_samples)])  # (B, T)
        for lo in range(0, num_samples, batch_size):
            for j in range(n_train):
                samples.append(order[lo : lo + batch_size])  # (b,)
                steps.append(step_perms[lo : lo + batch_size, j])
    return Minibatch(torch.cat(samples), torch.cat(steps))  # (L,), (L,)


SCHEDULES = ("step_shuffled", "trajectory")


def items_per_optimizer_step(
    name: str, num_steps: int, batch_size: int, gradient_accumulation_steps: int, timestep_fraction: float
) -> int:
    """(pair, step) items one optimizer step averages (per rank), by schedule."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown update schedule {name!r}; valid: {', '.join(SCHEDULES)}")
    per_step = batch_size * gradient_accumulation_steps
    return per_step * (num_train_steps(num_steps, timestep_fraction) if name == "trajectory" else 1)


def update_schedule(
    name: str,
    num_samples: int,
    num_steps: int,
    batch_size: int,
    timestep_fraction: float,
    num_inner_epochs: int,
    generator: torch.Generator,
) -> Minibatch:
    """The named schedule's (pair, step) items in training order; items_per_optimizer_step cuts them."""
    if name == "trajectory":
        return trajectory_schedule(num_samples, num_steps, batch_size, timestep_fraction, num_inner_epochs, generator)
    if name == "step_shuffled":
        return step_shuffled_schedule(num_samples, num_steps, timestep_fraction, num_inner_epochs, generator)
    raise ValueError(f"unknown update schedule {name!r}; valid: {', '.join(SCHEDULES)}")


def micro_batches(schedule: Minibatch, start: int, stop: int, size: int) -> Iterator[Minibatch]:
    """Items [start, stop) of `schedule` (clipped to its length) in micro-batches of at most `size`."""
    stop = min(stop, len(schedule))
    for lo in range(start, stop, size):
        hi = min(lo + size, stop)
        yield Minibatch(schedule.sample_index[lo:hi], schedule.step_index[lo:hi])
