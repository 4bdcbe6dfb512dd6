"""Labelled image grids: a label left of every row, a (wrapped) label above every column.

Used for the held-out evaluation grid (rows: policy and step count, columns: prompts)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

CELL = 96  # images are upscaled (nearest) to at least this many pixels a side
LINE = 11  # pixel height of one line of the default bitmap font


def write_labelled_grid(images: np.ndarray, row_labels: list[str], column_labels: list[str], path: str | Path) -> Path:
    """images (R, C, H, W, 3) uint8 -> one PNG at `path` with row and column labels."""
    R, C, H, W, _ = images.shape
    if len(row_labels) != R or len(column_labels) != C:
        raise ValueError(f"{R}x{C} images but {len(row_labels)} row and {len(column_labels)} column labels")
    scale = max(1, -(-CELL // max(H, W)))
    h, w = H * scale, W * scale
    font = ImageFont.load_default()
    chars = max(4, w // 6)  # the default font is about 6 px a character
    wrapped = [textwrap.wrap(label, chars) or [""] for label in column_labels]
    top = LINE * max(len(lines) for lines in wrapped) + 6
    left = 6 * max(len(label) for label in row_labels) + 8
    canvas = Image.new("RGB", (left + C * (w + 2), top + R * (h + 2)), "white")
    draw = ImageDraw.Draw(canvas)
    for c, lines in enumerate(wrapped):
        for i, line in enumerate(lines):
            draw.text((left + c * (w + 2) + 2, 3 + i * LINE), line, fill="black", font=font)
    for r, label in enumerate(row_labels):
        y = top + r * (h + 2)
        draw.text((4, y + h // 2 - LINE // 2), label, fill="black", font=font)
        for c in range(C):
            cell = Image.fromarray(images[r, c]).resize((w, h), Image.NEAREST)
            canvas.paste(cell, (left + c * (w + 2), y))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    canvas.save(tmp, format="PNG")
    os.replace(tmp, path)  # a reader never sees half a PNG
    return path
