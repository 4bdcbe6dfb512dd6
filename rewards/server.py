"""The reward server: a plain class that scores batches of images (``ray.remote`` is applied where
it is launched), and the typed request and result that cross the process boundary."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

import numpy as np

from plumbing.console import quiet_environment
from plumbing.errors import RunFailure
from rewards.combined import build_weighted_reward
from rewards.registry import import_reward_modules


class RewardFunctionError(RunFailure):
    """A reward function raised, or returned something other than one finite-or-NaN score per image,
    on valid input: a bug in the reward, which stops the run (retrying would only repeat it).
    `details` holds the reward's own traceback."""

    def __init__(self, message: str, details: str = ""):
        super().__init__(message, details)
        self.details = details

    def __str__(self) -> str:
        return str(self.args[0])


MAX_IMAGE_PIXELS = 4096 * 4096  # a decoded image a reward server accepts; SD-class samples are 512 x 512 to 1024 x 1024


@dataclass
class ScoreRequest:
    images: np.ndarray  # (N, H, W, 3) uint8
    prompts: list[str]  # N prompts, one per image

    def validate(self) -> "ScoreRequest":
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise ValueError(
                f"ScoreRequest.images must be uint8 (N, H, W, 3), got {self.images.dtype} {self.images.shape}"
            )
        if len(self.prompts) != self.images.shape[0]:
            raise ValueError(f"ScoreRequest: {len(self.prompts)} prompts for {self.images.shape[0]} images")
        if self.images.shape[1] * self.images.shape[2] > MAX_IMAGE_PIXELS:
            raise ValueError(
                f"ScoreRequest: images of {self.images.shape[1]} x {self.images.shape[2]} pixels; at most "
                f"{MAX_IMAGE_PIXELS} per image"
            )
        return self


@dataclass
class ScoreResult:
    scores: np.ndarray  # (N,) float64: the (weighted) reward; NaN/inf are left for the caller to drop
    components: dict[str, np.ndarray]  # reward name -> (N,) unweighted scores of each part
    seconds: float  # time spent in the reward model(s)


class RewardServer:
    """Scores images with one reward, or a weighted sum of several sharing this actor."""

    def __init__(
        self,
        *,
        name: str,
        device: str = "cpu",
        batch_size: int = 32,
        options: dict[str, dict[str, Any]] | None = None,
        weights: dict[str, float] | None = None,
        modules: tuple[str, ...] = (),
    ):
        quiet_environment()  # before any reward module imports transformers
        import_reward_modules(modules)
        self.name, self.batch_size = name, batch_size
        self.reward = build_weighted_reward(weights or {name: 1.0}, device=device, options=options or {})
        self.calls = 0  # real reward-model calls, one per image

    def identity(self) -> str:
        return f"RewardServer({self.name}, pid={os.getpid()}, host={socket.gethostname()})"

    def score(self, request: ScoreRequest) -> ScoreResult:
        """Score N images in model calls of at most `batch_size` images."""
        import time

        request.validate()
        start, parts = time.perf_counter(), []
        for lo in range(0, len(request.prompts), self.batch_size):
            parts.append(
                self._components(request.images[lo : lo + self.batch_size], request.prompts[lo : lo + self.batch_size])
            )
        components = {k: np.concatenate([p[k] for p in parts]) for k in self.reward.weights} if parts else {}
        self.calls += len(request.prompts)
        scores = self.reward.combine(components) if parts else np.zeros(0)
        return ScoreResult(np.asarray(scores, dtype=np.float64), components, time.perf_counter() - start)

    def _components(self, images: np.ndarray, prompts: list[str]) -> dict[str, np.ndarray]:
        """Each reward's scores (N,) of one model call; a reward that raises or returns the wrong
        shape is a RewardFunctionError carrying its traceback."""
        import traceback

        try:
            parts = self.reward.components(images, prompts)
        except Exception as err:
            raise RewardFunctionError(
                f"reward '{self.name}' raised {type(err).__name__}: "
                f"{str(err).strip().splitlines()[0] if str(err).strip() else ''}",
                traceback.format_exc(),
            ) from None
        for name, scores in parts.items():
            if np.shape(scores) != (len(prompts),):
                raise RewardFunctionError(
                    f"reward '{name}' returned scores of shape {np.shape(scores)} for {len(prompts)} images; it must "
                    "return one score per image"
                )
        return parts
