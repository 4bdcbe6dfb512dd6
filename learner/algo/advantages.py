"""Stepwise advantages (spec section 4): discounted returns and per-(prompt, step) normalization.

The math is pure numpy (torch appears only as the type of the tensors SparseRewards carries; no
ray). Shapes: N trajectories, T steps.
    r[i]  <- rewards[:, i]     dense reward of step i
    G[i]  <- returns[:, i]     G[i] = r[i] + gamma * G[i+1],  G[T] = 0
    A[i]  <- advantages[:, i]  (G[i] - mean) / (std + 1e-6), then clipped to +- adv_clip_max
"""

from __future__ import annotations

from collections import deque
from typing import Any, NamedTuple

import numpy as np
import torch

STD_EPS = 1e-6


def discounted_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """(N, T) -> (N, T). gamma = 0 returns the rewards unchanged."""
    returns = np.array(rewards, dtype=np.float64)  # copy
    for i in reversed(range(returns.shape[1] - 1)):
        returns[:, i] += gamma * returns[:, i + 1]
    return returns


def batch_normalize(returns: np.ndarray) -> np.ndarray:
    """Normalize over the whole batch (all trajectories and steps), used without stat tracking."""
    return (returns - returns.mean()) / (returns.std() + STD_EPS)


class StepStatTracker:
    """FIFO buffers of recent returns per (prompt, step), kept across epochs.

    A (prompt, step) whose buffer (after adding this batch) holds at least `min_count` values is
    normalized by the buffer's mean and std; otherwise by the mean and std of that step over the batch.
    """

    def __init__(self, buffer_size: int = 32, min_count: int = 16):
        if min_count > buffer_size:
            raise ValueError("min_count must not exceed buffer_size")
        self.buffer_size, self.min_count = buffer_size, min_count
        self.buffers: dict[str, dict[int, deque]] = {}

    def update(self, prompts: list[str], returns: np.ndarray) -> np.ndarray:
        """prompts: N strings; returns: (N, T) -> advantages (N, T). Buffers are updated first."""
        prompts_arr = np.asarray(prompts)
        returns = np.asarray(returns, dtype=np.float64)
        advantages = np.empty_like(returns)
        for prompt in sorted(set(prompts)):  # sorted: a deterministic update order
            rows = prompts_arr == prompt
            per_step = self.buffers.setdefault(prompt, {})
            for step in range(returns.shape[1]):
                buf = per_step.setdefault(step, deque(maxlen=self.buffer_size))
                buf.extend(returns[rows, step].tolist())
                ref = np.asarray(buf) if len(buf) >= self.min_count else returns[:, step]
                advantages[rows, step] = (returns[rows, step] - ref.mean()) / (ref.std() + STD_EPS)
        return advantages

    def state_dict(self) -> dict[str, Any]:
        return {
            "buffer_size": self.buffer_size,
            "min_count": self.min_count,
            "buffers": {p: {str(s): list(b) for s, b in steps.items()} for p, steps in self.buffers.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer_size, self.min_count = int(state["buffer_size"]), int(state["min_count"])
        self.buffers = {
            p: {int(s): deque(vals, maxlen=self.buffer_size) for s, vals in steps.items()}
            for p, steps in state["buffers"].items()
        }


def clip_advantages(advantages: np.ndarray, adv_clip_max: float) -> np.ndarray:
    return np.clip(advantages, -adv_clip_max, adv_clip_max)


class SparseRewards(NamedTuple):
    """What an algorithm's advantage function gets from the driver for B valid pairs."""

    rewards: np.ndarray  # (B, P, K+2) reward-model score of each queried state: first, anchors, last
    query_steps: torch.Tensor  # (B, P, K+2) long: the queried steps
    similarities: torch.Tensor  # (B, P, K+2, T): cos(x0_i, x0_q)
    prompts: list[str]  # B prompts
    shard: np.ndarray  # (B,) the data-parallel shard (rank) that trains each pair


def tracker_rows(shard: np.ndarray, num_traj: int = 2) -> np.ndarray:
    """The order in which the reference feeds trajectories to its stat tracker, as indices into the
    pair-major rows (row b * P + p is trajectory p of pair b): shard by shard (the reference gathers
    its processes in rank order), and inside a shard all first trajectories, then all second ones.
    The order matters once a prompt's FIFO buffer wraps. Returns (B * P,)."""
    rows = []
    for s in np.unique(shard):  # ascending shard index
        pairs = np.flatnonzero(shard == s)  # (B_s,) ascending pair order
        for p in range(num_traj):
            rows.append(pairs * num_traj + p)
    return np.concatenate(rows)


def normalized(
    returns: np.ndarray, prompts: list[str], shard: np.ndarray, tracker: StepStatTracker | None
) -> np.ndarray:
    """Returns (B, P, S) -> advantages (B, P, S), not yet clipped: per-(prompt, step) tracking fed in
    the reference's order (tracker_rows), or normalization over the whole batch without a tracker."""
    B, P, S = returns.shape
    flat = returns.reshape(B * P, S)  # (B*P, S), pair-major
    if tracker is None:
        return batch_normalize(flat).reshape(B, P, S)
    rows = tracker_rows(np.asarray(shard), P)  # (B*P,)
    adv = np.empty_like(flat, dtype=np.float64)
    adv[rows] = tracker.update([prompts[r // P] for r in rows], flat[rows])
    return adv.reshape(B, P, S)
