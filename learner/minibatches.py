"""Step-shuffled minibatches (spec section 6). Pure torch: no ray.

Each inner epoch: shuffle the samples; give each sample its own permutation of the T steps; then
for each permuted step position j (the first timestep_fraction of them), and inside it for each
minibatch of the shuffled samples, yield one backward pass.
"""

from __future__ import annotations

from typing import Iterator, NamedTuple

import torch


class Minibatch(NamedTuple):
    sample_index: torch.Tensor  # (M,) which pairs
    step_index: torch.Tensor  # (M,) which denoising step of each pair


def step_shuffled_minibatches(
    num_samples: int, num_steps: int, batch_size: int, timestep_fraction: float, generator: torch.Generator
) -> Iterator[Minibatch]:
    order = torch.randperm(num_samples, generator=generator)  # (B,)
    step_perms = torch.stack([torch.randperm(num_steps, generator=generator) for _ in range(num_samples)])  # (B, T)
    num_train_steps = max(1, int(num_steps * timestep_fraction))
    for j in range(num_train_steps):
        for start in range(0, num_samples, batch_size):
            idx = order[start : start + batch_size]  # (M,)
            yield Minibatch(idx, step_perms[idx, j])


def num_backward_passes(num_samples: int, num_steps: int, batch_size: int, timestep_fraction: float) -> int:
    return max(1, int(num_steps * timestep_fraction)) * -(-num_samples // batch_size)
