"""The reward server: a plain class that scores batches of images (``ray.remote`` is applied where
it is launched), and the typed request that crosses the process boundary to it."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

import numpy as np

from rewards.registry import build_reward


@dataclass
class ScoreRequest:
    images: np.ndarray  # (N, H, W, 3) uint8
    prompts: list[str]  # N prompts, one per image

    def validate(self) -> "ScoreRequest":
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise ValueError(f"ScoreRequest.images must be uint8 (N, H, W, 3), got {self.images.dtype} {self.images.shape}")
        if len(self.prompts) != self.images.shape[0]:
            raise ValueError(f"ScoreRequest: {len(self.prompts)} prompts for {self.images.shape[0]} images")
        return self


class RewardServer:
    def __init__(self, name: str, device: str = "cpu", batch_size: int = 32, options: dict[str, Any] | None = None):
        self.name, self.batch_size = name, batch_size
        self.reward_fn = build_reward(name, device=device, **(options or {}))
        self.calls = 0  # real reward-model calls, one per image

    def identity(self) -> str:
        return f"RewardServer({self.name}, pid={os.getpid()}, host={socket.gethostname()})"

    def score(self, request: ScoreRequest) -> np.ndarray:
        """(N,) float64 scores, computed in chunks of at most `batch_size` images."""
        request.validate()
        out = []
        for start in range(0, len(request.prompts), self.batch_size):
            end = start + self.batch_size
            out.append(np.asarray(self.reward_fn(request.images[start:end], request.prompts[start:end]), dtype=np.float64))
        self.calls += len(request.prompts)
        return np.concatenate(out) if out else np.zeros(0)
