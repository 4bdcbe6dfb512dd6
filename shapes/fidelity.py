"""The held-out pixel metric: how well an image shows what its shapes caption states, measured from
the pixels with the dataset's known factors (no learned model; the policy never trains on it).

For one image (H, W, 3) uint8 and its caption's factors:
  1. foreground = saturated pixels (max - min channel >= 0.3 of full scale; the background is grey),
     reduced to its largest 4-connected component; fewer than MIN_PIXELS pixels: no shape, score 0.
  2. colour   = the palette colour nearest the component's mean chroma (colour minus its min channel,
                scaled to max 1).
  3. position = the side of the image centre the component's centroid lies on (the larger offset wins).
  4. size     = small when the bounding box's longer side is < 10.5 px (small shapes span 7-9, large 12-15).
  5. shape    = triangle when less than TOP_SHARE of the component lies in the upper half of its
                bounding box (an upward triangle holds about 1/4 there, circles and squares 1/2);
                otherwise square when at least 3 of the box's 4 corner pixels are foreground (a
                circle's are empty), else circle.
The image's fidelity is the fraction of the four factors read correctly (0, 0.25, ..., 1).

Chance level: an image that shows a random one of the 144 combinations scores on average
(1/6 + 1/3 + 1/2 + 1/4) / 4 = 0.3125 against a given caption (CHANCE); a blank image scores 0.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from shapes.data import COLOURS, SIZES, Factors, parse_caption

SATURATION = 0.3
MIN_PIXELS = 4
SIZE_SPLIT = 10.5
TOP_SHARE = 0.37
CHANCE = (1 / len(COLOURS) + 1 / 3 + 1 / len(SIZES) + 1 / 4) / 4  # 0.3125
FACTOR_NAMES = ("colour", "shape", "size", "position")


@dataclass(frozen=True)
class Reading:
    """What the pixels show (None: no shape found)."""

    colour: str
    shape: str
    size: str
    position: str


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected component of a boolean mask (H, W), as a mask."""
    seen = np.zeros_like(mask, dtype=bool)
    best: list[tuple[int, int]] = []
    h, w = mask.shape
    for y0, x0 in zip(*np.nonzero(mask)):
        if seen[y0, x0]:
            continue
        seen[y0, x0] = True
        component, queue = [], deque([(y0, x0)])
        while queue:
            y, x = queue.popleft()
            component.append((y, x))
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    queue.append((ny, nx))
        if len(component) > len(best):
            best = component
    out = np.zeros_like(mask, dtype=bool)
    if best:
        ys, xs = zip(*best)
        out[list(ys), list(xs)] = True
    return out


def read_image(image: np.ndarray) -> Reading | None:
    """The factors an image (H, W, 3) uint8 shows, or None when it shows no shape."""
    pixels = image.astype(np.float64) / 255.0  # (H, W, 3)
    saturation = pixels.max(axis=-1) - pixels.min(axis=-1)  # (H, W)
    mask = largest_component(saturation >= SATURATION)
    if mask.sum() < MIN_PIXELS:
        return None
    chroma = pixels[mask].mean(axis=0)  # (3,)
    chroma = chroma - chroma.min()
    chroma = chroma / max(chroma.max(), 1e-6)
    colour = min(COLOURS, key=lambda c: float(np.sum((chroma - np.array(COLOURS[c])) ** 2)))
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    dx, dy = xs.mean() + 0.5 - w / 2, ys.mean() + 0.5 - h / 2
    position = ("left" if dx < 0 else "right") if abs(dx) > abs(dy) else ("top" if dy < 0 else "bottom")
    box_w, box_h = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    size = "small" if max(box_w, box_h) < SIZE_SPLIT else "large"
    middle = (ys.min() + ys.max()) / 2
    top_share = ((ys < middle).sum() + 0.5 * (ys == middle).sum()) / mask.sum()  # the middle row counts half
    corners = (
        int(mask[ys.min(), xs.min()])
        + int(mask[ys.min(), xs.max()])
        + int(mask[ys.max(), xs.min()])
        + int(mask[ys.max(), xs.max()])
    )
    shape = "triangle" if top_share < TOP_SHARE else "square" if corners >= 3 else "circle"
    return Reading(colour, shape, size, position)


def factor_hits(image: np.ndarray, factors: Factors) -> np.ndarray:
    """(4,) 0/1: colour, shape, size, position read correctly."""
    reading = read_image(image)
    if reading is None:
        return np.zeros(len(FACTOR_NAMES))
    return np.array([float(getattr(reading, name) == getattr(factors, name)) for name in FACTOR_NAMES])


def factor_table(images: np.ndarray, prompts: list[str]) -> np.ndarray:
    """(N, 4) 0/1 per image (N, H, W, 3) uint8 and shapes caption (N): which factors (FACTOR_NAMES) it shows."""
    if len(images) != len(prompts):
        raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
    rows = []
    for image, prompt in zip(images, prompts):
        factors = parse_caption(prompt)
        if factors is None:
            raise ValueError(f"'{prompt}' is not a shapes caption; the fidelity metric reads only those")
        rows.append(factor_hits(image, factors))
    return np.array(rows).reshape(len(prompts), len(FACTOR_NAMES))


def fidelity(images: np.ndarray, prompts: list[str]) -> np.ndarray:
    """Per-image fidelity (N,) in [0, 1] of images (N, H, W, 3) uint8 against shapes captions (N)."""
    return factor_table(images, prompts).mean(axis=1)
