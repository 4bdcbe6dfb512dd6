"""The learned shapes reward model: a small CNN that reads the four factors of a shapes image
(shapes.data) from its pixels, one softmax head per factor.

    image (N, 3, 32, 32) in [-1, 1]
      -> conv 3x3 3->16, SiLU -> conv 3x3 stride 2 16->32, SiLU -> conv 3x3 stride 2 32->64, SiLU
      -> flatten (64 * 8 * 8) -> linear 4096->64, SiLU -> linear 64->15 logits
    logits split as colour (6) | shape (3) | size (2) | position (4)

score(image, caption) = mean over the 4 factors of p(factor value the caption states | image), in [0, 1].
It is trained on clean dataset images of the training prompts only (scripts/shapes_reward_train.py), so
like any reward model it is a proxy: it has never seen a blurry or malformed sample.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from shapes.data import COLOURS, POSITIONS, SHAPES, SIZES, parse_caption

DEFAULT_DIR = Path(__file__).parent / "assets" / "shapes-classifier"
FACTORS = (("colour", tuple(COLOURS)), ("shape", SHAPES), ("size", tuple(SIZES)), ("position", tuple(POSITIONS)))
WIDTHS = tuple(len(values) for _, values in FACTORS)  # (6, 3, 2, 4)


class FactorClassifier(nn.Module):
    def __init__(self, width: int = 16, hidden: int = 64):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Flatten(),
            nn.Linear(4 * width * 8 * 8, hidden),
            nn.SiLU(),
            nn.Linear(hidden, sum(WIDTHS)),
        )

    def forward(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        """pixels (N, 3, 32, 32) in [-1, 1] -> logits per factor [(N, 6), (N, 3), (N, 2), (N, 4)]."""
        return list(self.features(pixels).split(WIDTHS, dim=1))


def to_pixels(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 32, 32, 3) -> float (N, 3, 32, 32) in [-1, 1]."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise ValueError(f"the shapes reward reads uint8 images (N, 32, 32, 3), got {images.dtype} {images.shape}")
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def targets(prompts: list[str]) -> torch.Tensor:
    """Factor indices (N, 4) of shapes captions; a caption that is not one of the 144 is an error."""
    rows = []
    for prompt in prompts:
        f = parse_caption(prompt)
        if f is None:
            raise ValueError(f"'{prompt}' is not a shapes caption; the shapes reward scores only those")
        rows.append([values.index(getattr(f, name)) for name, values in FACTORS])
    return torch.tensor(rows)


def factor_probabilities(model: FactorClassifier, pixels: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """p(stated value | image) per factor, (N, 4)."""
    logits = model(pixels)
    return torch.stack(
        [logit.softmax(-1).gather(1, target[:, k : k + 1])[:, 0] for k, logit in enumerate(logits)], dim=1
    )


def save(model: FactorClassifier, directory: Path, info: dict) -> None:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")


def load(directory: str | Path = DEFAULT_DIR, device: str = "cpu") -> FactorClassifier:
    from safetensors.torch import load_file

    path = Path(directory) / "model.safetensors"
    if not path.is_file():
        raise ValueError(
            f"shapes reward weights not found at '{path}' (train them with python -m scripts.shapes_reward_train)"
        )
    model = FactorClassifier()
    model.load_state_dict(load_file(str(path)))
    return model.to(device).eval().requires_grad_(False)
