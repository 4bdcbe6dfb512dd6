"""The step-shuffled update schedule (spec section 6). Pure torch: no ray.

Each inner epoch: shuffle the samples; give each sample its own permutation of the T steps; then
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


def micro_batches(schedule: Minibatch, start: int, stop: int, size: int) -> Iterator[Minibatch]:
    """Items [start, stop) of `schedule` (clipped to its length) in micro-batches of at most `size`."""
    stop = min(stop, len(schedule))
    for lo in range(start, stop, size):
        hi = min(lo + size, stop)
        yield Minibatch(schedule.sample_index[lo:hi], schedule.step_index[lo:hi])
