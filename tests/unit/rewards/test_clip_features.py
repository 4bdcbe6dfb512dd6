"""CLIP preprocessing must equal the library's CLIPImageProcessor; embeddings are unit vectors."""

import numpy as np
import pytest
import torch
from PIL import Image

from rewards import clip_features


def _reference_pixels(images: np.ndarray, size: int = 224) -> np.ndarray:
    """Independent numpy/PIL rendition of CLIP preprocessing, uint8 (N, H, W, 3) -> (N, 3, size, size)."""
    mean, std = np.array([0.48145466, 0.4578275, 0.40821073]), np.array([0.26862954, 0.26130258, 0.27577711])
    out = []
    for img in images:
        h, w = img.shape[:2]
        short, long = min(h, w), max(h, w)
        new_long = int(size * long / short)  # shortest side -> size, aspect kept (floored, as transformers does)
        new_w, new_h = (new_long, size) if w >= h else (size, new_long)
        resized = np.asarray(Image.fromarray(img).resize((new_w, new_h), Image.BICUBIC))
        top, left = (new_h - size) // 2, (new_w - size) // 2
        crop = resized[top : top + size, left : left + size] / 255.0
        out.append(((crop - mean) / std).transpose(2, 0, 1))
    return np.stack(out).astype(np.float32)


@pytest.mark.parametrize("shape", [(3, 64, 96, 3), (2, 300, 250, 3), (1, 224, 224, 3)])
def test_pixel_values_match_library_processor(tiny_clip_dir, shape):
    from transformers import CLIPImageProcessor  # the library's default backend for this checkpoint

    images = np.random.default_rng(1).integers(0, 256, size=shape, dtype=np.uint8)
    ours = clip_features.pixel_values(clip_features.load_image_processor(tiny_clip_dir), images)
    library_proc = CLIPImageProcessor.from_pretrained(tiny_clip_dir)
    library = library_proc(images=[Image.fromarray(x) for x in images], return_tensors="pt")["pixel_values"]
    assert ours.shape == (shape[0], 3, 224, 224) and ours.dtype == torch.float32
    # Same PIL backend -> identical; the torchvision backend (when torchvision is installed) resizes
    # floats instead of uint8 and may differ by a couple of uint8 levels: 2/255/0.26 ~ 0.03.
    atol = 1e-6 if type(library_proc).__name__.endswith("Pil") else 0.05
    torch.testing.assert_close(ours, library, atol=atol, rtol=0)
    np.testing.assert_allclose(ours.numpy(), _reference_pixels(images), atol=1e-5)


def test_check_batch_rejects_bad_input():
    good = np.zeros((2, 8, 8, 3), np.uint8)
    clip_features.check_batch(good, ["a", "b"])
    for bad in (good.astype(np.float32), good[..., :1], good[0]):
        with pytest.raises(ValueError, match=r"uint8 images of shape \(N, H, W, 3\)"):
            clip_features.check_batch(bad)
    with pytest.raises(ValueError, match="2 images but 1 prompts"):
        clip_features.check_batch(good, ["a"])


def test_embeddings_are_unit_vectors(tiny_clip_dir, images):
    model = clip_features.load_clip_model(str(tiny_clip_dir), "cpu")
    pixels = clip_features.pixel_values(clip_features.load_image_processor(tiny_clip_dir), images)
    img = clip_features.image_embeddings(model, pixels)
    txt = clip_features.text_embeddings(model, clip_features.load_tokenizer(tiny_clip_dir), ["a cat", "dog", "x" * 200])
    assert img.shape == txt.shape == (3, 16)
    torch.testing.assert_close(img.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(txt.norm(dim=-1), torch.ones(3))
