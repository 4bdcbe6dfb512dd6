"""The typed batches that leave a rollout worker. Letter legend (also in the README):
B pairs (prompts), P = 2 trajectories per pair, T steps, K+2 queried steps per trajectory,
C/h/w latent channels/height/width, H/W image height/width.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class PolicyWeights:
    """One published policy version: the LoRA tensors every rollout actor loads."""

    version: int
    lora: dict[str, torch.Tensor]  # peft LoRA state dict, CPU tensors


@dataclass
class RolloutBatch:
    """B trajectory pairs sampled by one rollout call with policy `policy_version`."""

    policy_version: int
    epoch: int
    pair_index: torch.Tensor  # (B,) long: global index of each pair within the epoch
    prompts: list[str]  # B prompts, one per pair
    timesteps: torch.Tensor  # (T,) long: the scheduler's timesteps t_0 > ... > t_{T-1}
    latents: torch.Tensor  # (B, P, T+1, C, h, w): x_0 (shared by the pair) ... x_T
    log_probs: torch.Tensor  # (B, P, T): log pi_old(x_{i+1} | x_i), mean over (C, h, w)
    query_steps: torch.Tensor  # (B, P, K+2) long: first step, anchors, last step (sorted)
    similarities: torch.Tensor  # (B, P, K+2, T): cos(x0_i, x0_q) for each queried step q
    images: np.ndarray  # (B, P, K+2, H, W, 3) uint8: decoded x0 at the queried steps
    worker: str = ""  # which rollout worker made it (for error messages)

    @property
    def num_pairs(self) -> int:
        return self.latents.shape[0]

    def validate(self) -> "RolloutBatch":
        B, P, T1 = self.latents.shape[:3]
        T, Q = T1 - 1, self.query_steps.shape[-1]
        expect = {
            "pair_index": (self.pair_index.shape, (B,)),
            "timesteps": (self.timesteps.shape, (T,)),
            "log_probs": (self.log_probs.shape, (B, P, T)),
            "query_steps": (self.query_steps.shape, (B, P, Q)),
            "similarities": (self.similarities.shape, (B, P, Q, T)),
            "images": (self.images.shape[:3], (B, P, Q)),
        }
        for name, (got, want) in expect.items():
            if tuple(got) != tuple(want):
                raise ValueError(f"RolloutBatch.{name} has shape {tuple(got)}, expected {want}")
        if P != 2 or len(self.prompts) != B or self.images.dtype != np.uint8:
            raise ValueError(f"RolloutBatch: P={P} (must be 2), {len(self.prompts)} prompts for {B} pairs")
        if not torch.equal(self.latents[:, 0, 0], self.latents[:, 1, 0]):
            raise ValueError("RolloutBatch: the two trajectories of a pair must share the initial noise")
        return self

    def select(self, rows: torch.Tensor) -> "RolloutBatch":
        """The sub-batch of the given pairs (B' rows), e.g. those with valid rewards."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        return RolloutBatch(
            policy_version=self.policy_version,
            epoch=self.epoch,
            pair_index=self.pair_index[rows],
            prompts=[self.prompts[int(i)] for i in rows],
            timesteps=self.timesteps,
            latents=self.latents[rows],
            log_probs=self.log_probs[rows],
            query_steps=self.query_steps[rows],
            similarities=self.similarities[rows],
            images=self.images[rows.numpy()],
            worker=self.worker,
        )

    @staticmethod
    def concat(batches: list["RolloutBatch"]) -> "RolloutBatch":
        """Concatenate along B, ordered by pair index (so results do not depend on arrival order)."""
        batches = sorted(batches, key=lambda b: int(b.pair_index[0]))
        versions = {b.policy_version for b in batches}
        if len(versions) != 1:
            raise ValueError(f"cannot concatenate rollouts of different policy versions {sorted(versions)}")
        cat = lambda name: torch.cat([getattr(b, name) for b in batches])  # noqa: E731
        return RolloutBatch(
            policy_version=batches[0].policy_version,
            epoch=batches[0].epoch,
            pair_index=cat("pair_index"),
            prompts=[p for b in batches for p in b.prompts],
            timesteps=batches[0].timesteps,
            latents=cat("latents"),
            log_probs=cat("log_probs"),
            query_steps=cat("query_steps"),
            similarities=cat("similarities"),
            images=np.concatenate([b.images for b in batches]),
            worker=",".join(sorted({b.worker for b in batches})),
        ).validate()
