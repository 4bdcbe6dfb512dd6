"""Rewards that misbehave on purpose, registered through `reward.modules` (the same way a user
brings their own reward): NaN for some prompts, a reward that raises or returns the wrong shape, a server process that crashes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from rewards.jpeg import jpeg_size_kb
from rewards.registry import register_reward


@register_reward("nan_for_cats", needs="nothing (test reward)")
def nan_for_cats(device: str = "cpu"):
    """-JPEG size, but NaN for every image of a prompt that mentions 'cat'."""

    def score(images, prompts):
        out = -jpeg_size_kb(images)
        out[["cat" in p for p in prompts]] = np.nan
        return out

    return score


@register_reward("one_score_per_batch", needs="nothing (test reward)")
def one_score_per_batch(device: str = "cpu"):
    """A broken reward: one score for the whole batch instead of one per image."""
    return lambda images, prompts: np.array([float(len(images))])


@register_reward("always_fails", needs="nothing (test reward)")
def always_fails(device: str = "cpu"):
    def score(images, prompts):
        raise RuntimeError("reward model is down (on purpose)")

    return score


@register_reward("crash_once", needs="SDPO_TEST_CRASH_MARKER: a file path (test reward)")
def crash_once(device: str = "cpu"):
    """Kills its own process (a real reward-server crash) on the first call anywhere, marked by a file."""
    marker = Path(os.environ["SDPO_TEST_CRASH_MARKER"])

    def score(images, prompts):
        try:
            marker.open("x").close()  # exactly one caller wins
        except FileExistsError:
            return -jpeg_size_kb(images)
        os._exit(17)

    return score
