"""Shared plumbing of the CLIP-based rewards (aesthetic, pickscore): loading a transformers CLIP
checkpoint, CLIP preprocessing of uint8 images, and L2-normalized image / text embeddings.

torch and transformers are imported inside the functions, so importing this module stays light.
Shapes: N images, H/W image height/width, S the processor's crop size (224 for the real models),
D the CLIP projection dim (768 for ViT-L/14, 1024 for ViT-H/14).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch


def check_batch(images: np.ndarray, prompts: list[str] | None = None) -> None:
    """Raise ValueError unless images is uint8 (N, H, W, 3) and prompts (if given) has N strings."""
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        got = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
        raise ValueError(f"expected uint8 images of shape (N, H, W, 3), got {got}")
    if prompts is not None and len(prompts) != len(images):
        raise ValueError(f"got {len(images)} images but {len(prompts)} prompts; pass one prompt per image")


def torch_dtype(name: str) -> "torch.dtype":
    import torch

    dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if name not in dtypes:
        raise ValueError(f"unknown dtype '{name}'; valid: {', '.join(dtypes)}")
    return dtypes[name]


def checked_source(name_or_path: str) -> str:
    """`name_or_path` unchanged, unless it is clearly a local path (/, ./, ../, ~) that does not exist."""
    path = os.path.expanduser(str(name_or_path))
    if str(name_or_path).startswith(("/", "./", "../", "~")) and not os.path.isdir(path):
        raise ValueError(f"model directory not found: {name_or_path} (pass an existing directory or a hub id)")
    return path


def load_clip_model(model: str, device: str, dtype: str = "float32") -> Any:
    """A transformers CLIPModel from a hub id or local directory, frozen, in eval mode on `device`."""
    from transformers import CLIPModel

    # Cast after loading: transformers 4.x and 5.x spell the dtype argument of from_pretrained differently.
    return (
        CLIPModel.from_pretrained(checked_source(model))
        .to(device=device, dtype=torch_dtype(dtype))
        .eval()
        .requires_grad_(False)
    )


def load_image_processor(name_or_path: str) -> Any:
    """The PIL backend of CLIPImageProcessor, whatever else is installed.

    transformers >= 5 picks a torchvision backend when torchvision is present; its bicubic resize
    differs slightly from PIL's, so we pin the PIL one (the one LAION, ddpo-pytorch and PickScore used).
    """
    try:
        from transformers import CLIPImageProcessorPil as Processor  # transformers >= 5
    except ImportError:
        from transformers import CLIPImageProcessor as Processor  # 4.x: the PIL ("slow") processor

    return Processor.from_pretrained(checked_source(name_or_path))


def load_tokenizer(name_or_path: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(checked_source(name_or_path))


def pixel_values(processor: Any, images: np.ndarray) -> "torch.Tensor":
    """uint8 (N, H, W, 3) -> float32 (N, 3, S, S): resize shortest side to S (bicubic), center crop,
    rescale by 1/255, normalize with the processor's mean/std, exactly as the processor does."""
    check_batch(images)
    out = processor(images=list(images), return_tensors="pt", input_data_format="channels_last")
    return out["pixel_values"]  # (N, 3, S, S)


def image_embeddings(model: Any, pixels: "torch.Tensor") -> "torch.Tensor":
    """pixels (N, 3, S, S) -> L2-normalized CLIP image embeddings (N, D), float32."""
    import torch

    param = next(model.parameters())
    with torch.inference_mode():
        pooled = model.vision_model(pixel_values=pixels.to(param.device, param.dtype)).pooler_output  # (N, hidden)
        embeds = model.visual_projection(pooled).float()  # (N, D)
    return embeds / torch.linalg.vector_norm(embeds, dim=-1, keepdim=True)


def text_embeddings(model: Any, tokenizer: Any, prompts: list[str]) -> "torch.Tensor":
    """N prompts -> L2-normalized CLIP text embeddings (N, D), float32; prompts truncated to 77 tokens."""
    import torch

    device = next(model.parameters()).device
    tokens = tokenizer(list(prompts), padding=True, truncation=True, max_length=77, return_tensors="pt")
    with torch.inference_mode():
        pooled = model.text_model(
            input_ids=tokens["input_ids"].to(device), attention_mask=tokens["attention_mask"].to(device)
        ).pooler_output  # (N, hidden)
        embeds = model.text_projection(pooled).float()  # (N, D)
    return embeds / torch.linalg.vector_norm(embeds, dim=-1, keepdim=True)
