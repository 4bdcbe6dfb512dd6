"""The procedural shapes dataset: one coloured shape on a dark grey background, 32 x 32 RGB, with a
caption that states its four factors, e.g. "a small red circle on the left".

    colour   red, green, blue, yellow, magenta, cyan     (6)
    shape    circle, square, triangle                    (3)
    size     small (radius 3.5-4.5 px), large (6-7.5 px) (2)
    position left, right, top, bottom                    (4)

144 prompts in all, split into 120 training prompts and 24 held-out prompts by a fixed rule on the
factor indices (a combination is held out when the sum of its indices is divisible by 6). Every
single factor value and every pair of values still occurs in training, so the held-out prompts ask
for new combinations of known words. Images are deterministic: image i of a prompt under a seed is
drawn from ``numpy.random.default_rng([seed, prompt_index, i])`` (jittered centre, radius, colour
brightness, background grey and noise).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

IMAGE_SIZE = 32
COLOURS = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
    "magenta": (1.0, 0.0, 1.0),
    "cyan": (0.0, 1.0, 1.0),
}
SHAPES = ("circle", "square", "triangle")
SIZES = {"small": (3.5, 4.5), "large": (6.0, 7.5)}  # radius range in pixels (half the bounding box side)
POSITIONS = {"left": (9.0, 16.0), "right": (23.0, 16.0), "top": (16.0, 9.0), "bottom": (16.0, 23.0)}  # centre (x, y)
PHRASES = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom"}
HELDOUT_MODULUS = 6


@dataclass(frozen=True)
class Factors:
    colour: str
    shape: str
    size: str
    position: str

    @property
    def caption(self) -> str:
        return f"a {self.size} {self.colour} {self.shape} {PHRASES[self.position]}"


def all_factors() -> list[Factors]:
    """The 144 combinations in a fixed order (colour, shape, size, position)."""
    return [Factors(*combo) for combo in itertools.product(COLOURS, SHAPES, SIZES, POSITIONS)]


def _index_sum(f: Factors) -> int:
    return (
        list(COLOURS).index(f.colour)
        + SHAPES.index(f.shape)
        + list(SIZES).index(f.size)
        + list(POSITIONS).index(f.position)
    )


def is_heldout(f: Factors) -> bool:
    return _index_sum(f) % HELDOUT_MODULUS == 0


def train_prompts() -> list[str]:
    return [f.caption for f in all_factors() if not is_heldout(f)]


def heldout_prompts() -> list[str]:
    """The 24 held-out captions, colours interleaved (red, green, ..., cyan, red, ...) so that any
    first few of them, as an evaluation takes, span the colours."""
    held = [f for f in all_factors() if is_heldout(f)]
    rank = {f: sum(g.colour == f.colour for g in held[:i]) for i, f in enumerate(held)}
    return [f.caption for f in sorted(held, key=lambda f: (rank[f], list(COLOURS).index(f.colour)))]


_BY_CAPTION = {f.caption: f for f in all_factors()}


def parse_caption(caption: str) -> Factors | None:
    """The factors a caption states, or None for a caption that is not one of the 144."""
    return _BY_CAPTION.get(" ".join(caption.lower().split()))


def shape_mask(shape: str, cx: float, cy: float, r: float, size: int = IMAGE_SIZE) -> np.ndarray:
    """Boolean (size, size) mask of a shape with centre (cx, cy) and half-side / radius r, tested at
    pixel centres (x + 0.5, y + 0.5). The triangle points up: apex (cx, cy - r), base y = cy + r, width 2r."""
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    dx, dy = xs - cx, ys - cy
    if shape == "circle":
        return dx**2 + dy**2 <= r**2
    if shape == "square":
        return (np.abs(dx) <= r) & (np.abs(dy) <= r)
    if shape == "triangle":
        depth = (dy + r) / (2 * r)  # 0 at the apex, 1 at the base
        return (depth >= 0) & (depth <= 1) & (np.abs(dx) <= r * depth)
    raise ValueError(f"unknown shape '{shape}'; shapes: {', '.join(SHAPES)}")


def render(f: Factors, rng: np.random.Generator) -> np.ndarray:
    """One uint8 image (32, 32, 3) of factors f with jitter from rng."""
    cx, cy = POSITIONS[f.position]
    along = rng.uniform(-1.0, 1.0)  # small jitter toward / away from the centre, larger along the edge
    across = rng.uniform(-3.0, 3.0)
    if f.position in ("left", "right"):
        cx, cy = cx + along, cy + across
    else:
        cx, cy = cx + across, cy + along
    r = rng.uniform(*SIZES[f.size])
    grey = rng.uniform(0.05, 0.2)
    image = np.full((IMAGE_SIZE, IMAGE_SIZE, 3), grey) + rng.normal(0.0, 0.02, (IMAGE_SIZE, IMAGE_SIZE, 1))
    base = np.array(COLOURS[f.colour])
    colour = base * rng.uniform(0.75, 1.0) + (1 - base) * rng.uniform(0.0, 0.15)
    image[shape_mask(f.shape, cx, cy, r)] = colour
    return (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)


def sample_images(prompts: list[str], per_prompt: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """per_prompt images of every prompt: uint8 (len(prompts) * per_prompt, 32, 32, 3) and their captions."""
    index = {f.caption: i for i, f in enumerate(all_factors())}
    images, captions = [], []
    for prompt in prompts:
        f = parse_caption(prompt)
        if f is None:
            raise ValueError(f"'{prompt}' is not a shapes caption")
        for i in range(per_prompt):
            images.append(render(f, np.random.default_rng([seed, index[f.caption], i])))
            captions.append(f.caption)
    return np.stack(images), captions
