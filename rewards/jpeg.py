"""JPEG (in)compressibility rewards, as DDPO defines them: encode at JPEG quality 95 and
measure the file size in kB (bytes / 1000); compressibility = -size, incompressibility = +size."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from rewards.registry import register_reward


def jpeg_size_kb(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, 3) -> JPEG file size in kB at quality 95, (N,)."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 images of shape (N, H, W, 3), got {images.dtype} {images.shape}")
    sizes = []
    for img in images:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=95)
        sizes.append(buf.tell() / 1000)
    return np.asarray(sizes, dtype=np.float64)


@register_reward("jpeg_compressibility")
def jpeg_compressibility(device: str = "cpu"):
    return lambda images, prompts: -jpeg_size_kb(images)


@register_reward("jpeg_incompressibility")
def jpeg_incompressibility(device: str = "cpu"):
    return lambda images, prompts: jpeg_size_kb(images)
