"""The typed batches a learner rank receives. Legend: B pairs, P = 2, T steps, C/h/w latent.

The driver sends each rank an `UpdateRequest` (advantages: small) and, in the disaggregated layout,
the `Trajectories` of that rank's pairs by object reference, straight from the rollout actors; in the
hybrid layout the rank sampled them itself and holds them already.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from actors.batch import Trajectories


@dataclass
class ShardAdvantages:
    """The advantages of one data-parallel shard's valid pairs."""

    shard: int  # which shard (rank r of N trains shard r)
    pair_index: torch.Tensor  # (B_s,) long: the shard's valid pairs, ascending
    advantages: torch.Tensor  # (B_s, P, T) clipped stepwise advantages


@dataclass
class UpdateRequest:
    """One policy update: the shards this process trains, for pairs sampled with `policy_version`."""

    policy_version: int
    epoch: int
    num_shards: int  # N: shards of the epoch over all ranks
    max_pairs: int  # the most valid pairs of any shard: every rank takes the same number of optimizer steps
    shards: list[ShardAdvantages]


@dataclass
class TrainBatch:
    """Everything one shard's update needs: its trajectories plus their advantages."""

    policy_version: int
    epoch: int
    shard: int
    prompts: list[str]  # B prompts, one per pair
    timesteps: torch.Tensor  # (T,) long: the scheduler's timesteps
    latents: torch.Tensor  # (B, P, T+1, C, h, w): x_0 ... x_T
    log_probs: torch.Tensor  # (B, P, T): log pi_old(x_{i+1} | x_i)
    advantages: torch.Tensor  # (B, P, T): clipped stepwise advantages

    @classmethod
    def from_rollout(cls, trajectories: Trajectories, advantages: torch.Tensor, shard: int = 0) -> "TrainBatch":
        t = trajectories
        return cls(
            t.policy_version, t.epoch, shard, t.prompts, t.timesteps, t.latents, t.log_probs, advantages
        ).validate()

    @property
    def num_pairs(self) -> int:
        return self.latents.shape[0]

    def validate(self) -> "TrainBatch":
        B, P, T1 = self.latents.shape[:3]
        for name in ("log_probs", "advantages"):
            got = tuple(getattr(self, name).shape)
            if got != (B, P, T1 - 1):
                raise ValueError(f"TrainBatch.{name} has shape {got}, expected {(B, P, T1 - 1)}")
        if P != 2 or len(self.prompts) != B or tuple(self.timesteps.shape) != (T1 - 1,):
            raise ValueError(
                f"TrainBatch: P={P}, {len(self.prompts)} prompts, timesteps {tuple(self.timesteps.shape)} for B={B}, "
                f"T={T1 - 1}"
            )
        if not torch.isfinite(self.advantages).all():
            raise ValueError("TrainBatch.advantages must be finite (drop pairs with missing rewards first)")
        return self


def shard_batches(request: UpdateRequest, trajectories: list[Trajectories]) -> list[TrainBatch]:
    """One TrainBatch per requested shard, from whatever chunks of trajectories this process holds."""
    if not trajectories:
        raise ValueError(f"no trajectories for the update of epoch {request.epoch}")
    pool = Trajectories.concat(trajectories)  # (B_held, ...) ordered by pair index
    row_of = {int(p): i for i, p in enumerate(pool.pair_index)}
    batches = []
    for s in request.shards:
        missing = [int(p) for p in s.pair_index if int(p) not in row_of]
        if missing:
            raise ValueError(f"shard {s.shard} of epoch {request.epoch}: no trajectories for pairs {missing[:5]}")
        rows = torch.tensor([row_of[int(p)] for p in s.pair_index], dtype=torch.long)
        batches.append(TrainBatch.from_rollout(pool.select(rows), s.advantages, s.shard))
    return batches
