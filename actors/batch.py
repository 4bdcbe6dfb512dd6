"""The typed batches that leave a rollout worker. Letter legend (also in the README):
B pairs (prompts), P = 2 trajectories per pair, T steps, K+2 queried steps per trajectory,
C/h/w latent channels/height/width, H/W image height/width.

A rollout is two objects, because they go to different places: the small `SparseQueries` (decoded
images of the queried states and the latent similarities) goes to the driver, which has them scored
and turns them into advantages; the large `Trajectories` (every latent and log-prob: about 6.7 MB a
pair at SD-Turbo size) goes straight to the learner rank that trains on those pairs, by object
reference, or stays on the worker that sampled it in the hybrid layout.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import NamedTuple

import numpy as np
import torch


@dataclass(frozen=True)
class PolicyWeights:
    """One published policy version: the LoRA tensors every rollout actor loads."""

    version: int
    lora: dict[str, torch.Tensor]  # peft LoRA state dict, CPU tensors


def _take(value, rows: torch.Tensor):
    if isinstance(value, torch.Tensor):
        return value[rows]
    if isinstance(value, np.ndarray):
        return value[rows.numpy()]
    return [value[int(i)] for i in rows]


def _cat(values: list):
    if isinstance(values[0], torch.Tensor):
        return torch.cat(values)
    if isinstance(values[0], np.ndarray):
        return np.concatenate(values)
    return [v for part in values for v in part]


class _PairBatch:
    """Shared pair-axis operations of the batches below: every field named in `PER_PAIR` has B first."""

    PER_PAIR: tuple[str, ...] = ()

    @property
    def num_pairs(self) -> int:
        return len(self.pair_index)

    def select(self, rows):
        """The sub-batch of the given pairs (B' rows), e.g. those with valid rewards."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        return replace(self, **{name: _take(getattr(self, name), rows) for name in self.PER_PAIR}).validate()

    @classmethod
    def concat(cls, batches: list):
        """Concatenate along B, ordered by pair index (so results do not depend on arrival order)."""
        batches = sorted(batches, key=lambda b: int(b.pair_index[0]))
        versions = {b.policy_version for b in batches}
        if len(versions) != 1:
            raise ValueError(f"cannot concatenate rollouts of different policy versions {sorted(versions)}")
        merged = {f.name: getattr(batches[0], f.name) for f in fields(cls)}
        merged |= {name: _cat([getattr(b, name) for b in batches]) for name in cls.PER_PAIR}
        return cls(**merged).validate()


@dataclass
class SparseQueries(_PairBatch):
    """What the driver needs of B sampled pairs: the queried states' images and the similarities."""

    PER_PAIR = ("pair_index", "prompts", "query_steps", "similarities", "images")

    policy_version: int
    epoch: int
    pair_index: torch.Tensor  # (B,) long: global index of each pair within the epoch
    prompts: list[str]  # B prompts, one per pair
    query_steps: torch.Tensor  # (B, P, K+2) long: first step, anchors, last step (sorted)
    similarities: torch.Tensor  # (B, P, K+2, T): cos(x0_i, x0_q) for each queried step q
    images: np.ndarray  # (B, P, K+2, H, W, 3) uint8: decoded x0 at the queried steps
    worker: str = ""  # which worker sampled them (for error messages)
    busy_s: float = 0.0  # seconds the worker spent sampling and decoding them
    flops: float = 0.0  # the denoiser's FLOPs in sampling them (actors/flops.py; 0: not counted)
    peak_flops: float = float("nan")  # the worker's device peak FLOP/s (NaN: unknown)

    def validate(self) -> "SparseQueries":
        B, P, Q, T = self.similarities.shape
        for name, got, want in (
            ("pair_index", tuple(self.pair_index.shape), (B,)),
            ("query_steps", tuple(self.query_steps.shape), (B, P, Q)),
            ("images", tuple(self.images.shape[:3]), (B, P, Q)),
        ):
            if got != want:
                raise ValueError(f"SparseQueries.{name} has shape {got}, expected {want}")
        if P != 2 or len(self.prompts) != B or self.images.dtype != np.uint8:
            raise ValueError(f"SparseQueries: P={P} (must be 2), {len(self.prompts)} prompts for {B} pairs")
        return self


@dataclass
class Trajectories(_PairBatch):
    """The stored transitions of B pairs: what the learner recomputes log-probs on."""

    PER_PAIR = ("pair_index", "prompts", "latents", "log_probs")

    policy_version: int
    epoch: int
    pair_index: torch.Tensor  # (B,) long: global index of each pair within the epoch
    prompts: list[str]  # B prompts, one per pair
    # (T,) the scheduler's timesteps t_0 > ... > t_{T-1} (long for DDIM, float for flow models and SANA-Sprint's
    # TrigFlow times)
    timesteps: torch.Tensor
    latents: torch.Tensor  # (B, P, T+1, C, h, w): x_0 (shared by the pair) ... x_T
    log_probs: torch.Tensor  # (B, P, T): log pi_old(x_{i+1} | x_i), mean over (C, h, w)

    def validate(self) -> "Trajectories":
        B, P, T1 = self.latents.shape[:3]
        for name, got, want in (
            ("pair_index", tuple(self.pair_index.shape), (B,)),
            ("timesteps", tuple(self.timesteps.shape), (T1 - 1,)),
            ("log_probs", tuple(self.log_probs.shape), (B, P, T1 - 1)),
        ):
            if got != want:
                raise ValueError(f"Trajectories.{name} has shape {got}, expected {want}")
        if P != 2 or len(self.prompts) != B:
            raise ValueError(f"Trajectories: P={P} (must be 2), {len(self.prompts)} prompts for {B} pairs")
        if not torch.equal(self.latents[:, 0, 0], self.latents[:, 1, 0]):
            raise ValueError("Trajectories: the two trajectories of a pair must share the initial noise")
        return self


class RolloutBatch(NamedTuple):
    """One rollout call's result: two objects on Ray (``rollout.options(num_returns=2)``)."""

    queries: SparseQueries
    trajectories: Trajectories | None  # None where the worker keeps them (the hybrid layout)
