"""The learned reward of the shapes task as a scoring function (shapes/net.py holds the model). It
scores how well an image shows its caption: the mean over the chosen factors (by default colour,
shape, size and position) of the probability a CNN trained on the dataset gives the stated value,
in [0, 1]. `factors` picks the factors, e.g. "colour,shape,size": the shapes presets leave out
position, which the shapes models do not control (the initial noise decides it; docs/shapes.md).
The rewards registry serves it as `shapes_classifier` (rewards/learned_shapes.py)."""

from __future__ import annotations

from typing import Callable

import numpy as np


def scorer(
    device: str = "cpu", weights: str | None = None, factors: str | list[str] | None = None
) -> Callable[[np.ndarray, list[str]], np.ndarray]:
    """score(images uint8 (N, 32, 32, 3), prompts) -> float64 (N,). weights = directory holding
    model.safetensors (default: the committed one); factors = the factors averaged, a list or a
    comma-separated string of colour, shape, size, position (default: all four)."""
    import torch

    from shapes import net

    columns = factor_columns(factors)
    model = net.load(weights or net.DEFAULT_DIR, device)

    def score(images: np.ndarray, prompts: list[str]) -> np.ndarray:
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        with torch.inference_mode():
            probs = net.factor_probabilities(
                model, net.to_pixels(images).to(device), net.targets(prompts).to(device)
            )  # (N, 4)
        return probs[:, columns].mean(dim=1).double().cpu().numpy()

    return score


def factor_columns(factors: str | list[str] | None) -> list[int]:
    """Column indices into shapes.net.FACTORS of the chosen factors (all four for None)."""
    from shapes.net import FACTORS

    names = [name for name, _ in FACTORS]
    if factors is None:
        return list(range(len(names)))
    chosen = [f.strip() for f in factors.split(",")] if isinstance(factors, str) else [str(f).strip() for f in factors]
    unknown = [f for f in chosen if f not in names]
    if unknown or not chosen or len(set(chosen)) != len(chosen):
        raise ValueError(
            f"shapes_classifier option factors: {factors!r} must name distinct factors of {', '.join(names)}"
        )
    return [names.index(f) for f in chosen]
