"""The typed batch the driver sends to the learner. Legend: B pairs, P = 2, T steps, C/h/w latent."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class TrainBatch:
    """Everything one SDPO update needs, for B pairs sampled with policy `policy_version`."""

    policy_version: int
    epoch: int
    prompts: list[str]  # B prompts, one per pair
    timesteps: torch.Tensor  # (T,) long: the scheduler's timesteps
    latents: torch.Tensor  # (B, P, T+1, C, h, w): x_0 ... x_T
    log_probs: torch.Tensor  # (B, P, T): log pi_old(x_{i+1} | x_i)
    advantages: torch.Tensor  # (B, P, T): clipped stepwise advantages

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
            raise ValueError(f"TrainBatch: P={P}, {len(self.prompts)} prompts, timesteps {tuple(self.timesteps.shape)} for B={B}, T={T1 - 1}")
        if not torch.isfinite(self.advantages).all():
            raise ValueError("TrainBatch.advantages must be finite (drop pairs with missing rewards first)")
        return self

    def select(self, rows: torch.Tensor) -> "TrainBatch":
        """The sub-batch of the given pairs (B' rows)."""
        return TrainBatch(
            self.policy_version,
            self.epoch,
            [self.prompts[int(i)] for i in rows],
            self.timesteps,
            self.latents[rows],
            self.log_probs[rows],
            self.advantages[rows],
        )
