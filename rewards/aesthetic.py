"""LAION aesthetic predictor (spec section 7): CLIP image embedding, L2-normalized, into a linear MLP.

    score = MLP(e / |e|),  e = CLIP image embedding (N, D),  MLP: D -> 1024 -> 128 -> 64 -> 16 -> 1

Adapted from christophschuhmann/improved-aesthetic-predictor (simple_inference.py) as ddpo-pytorch
uses it; changed: the input width D follows the loaded CLIP's projection_dim (768 for the real
openai/clip-vit-large-patch14) instead of a hard-coded 768, and the head is loaded from a file.

The head file (option `head`) is the LAION state dict, e.g. ``sac+logos+ava1-l14-linearMSE.pth``
(torch.save of an nn.Sequential kept under ``layers``; its Dropouts sit at indices 1, 3, 5), keys:
    layers.0.weight (1024, D)  layers.2.weight (128, 1024)  layers.4.weight (64, 128)
    layers.6.weight (16, 64)   layers.7.weight (1, 16)      and a ``.bias`` for each.
A ``.safetensors`` file with the same keys also works; other files load with torch.load(weights_only=True).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rewards import clip_features
from rewards.registry import RewardFn, register_reward

DEFAULT_MODEL = "openai/clip-vit-large-patch14"
LINEAR_INDICES = (0, 2, 4, 6, 7)  # the nn.Linear positions inside `layers`


def aesthetic_mlp(input_dim: int) -> Any:
    """The LAION head as nn.Sequential (D -> 1024 -> 128 -> 64 -> 16 -> 1); Dropouts, no activations."""
    from torch import nn

    return nn.Sequential(
        nn.Linear(input_dim, 1024),
        nn.Dropout(0.2),
        nn.Linear(1024, 128),
        nn.Dropout(0.2),
        nn.Linear(128, 64),
        nn.Dropout(0.1),
        nn.Linear(64, 16),
        nn.Linear(16, 1),
    )


def expected_head_keys() -> list[str]:
    return [f"layers.{i}.{p}" for i in LINEAR_INDICES for p in ("weight", "bias")]


def load_head(path: str, input_dim: int) -> Any:
    """Read the LAION MLP head from `path` and check it fits CLIP embeddings of width `input_dim`."""
    import torch

    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or sorted(state) != sorted(expected_head_keys()):
        found = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"aesthetic head '{path}' is not a LAION aesthetic-predictor state dict: "
            f"expected keys {expected_head_keys()}, found {found}"
        )
    width = state["layers.0.weight"].shape[1]
    if width != input_dim:
        raise ValueError(
            f"aesthetic head '{path}' takes {width}-dim embeddings but the CLIP model projects to "
            f"{input_dim}; use the head trained for this CLIP (768 for ViT-L/14)"
        )
    mlp = aesthetic_mlp(input_dim)
    mlp.load_state_dict({k.removeprefix("layers."): v for k, v in state.items()})
    return mlp.eval().requires_grad_(False)


@register_reward(
    "aesthetic",
    needs="transformers; CLIP `model` (default openai/clip-vit-large-patch14) and the LAION MLP `head` file",
)
def aesthetic(
    device: str = "cpu", model: str = DEFAULT_MODEL, head: str | None = None, dtype: str = "float32"
) -> RewardFn:
    """Options: model = CLIP hub id or local dir (with preprocessor_config.json), head = path to the
    LAION MLP weights (required), dtype of the CLIP tower (the head runs in float32)."""
    import torch

    if head is None:
        raise ValueError(
            "the aesthetic reward needs head=PATH to the LAION MLP weights, e.g. sac+logos+ava1-l14-linearMSE.pth "
            "from github.com/christophschuhmann/improved-aesthetic-predictor"
        )
    clip = clip_features.load_clip_model(model, device, dtype)
    processor = clip_features.load_image_processor(model)
    mlp = load_head(head, clip.config.projection_dim).to(device)

    def score(images: np.ndarray, prompts: list[str]) -> np.ndarray:
        embeds = clip_features.image_embeddings(clip, clip_features.pixel_values(processor, images))  # (N, D)
        with torch.inference_mode():
            scores = mlp(embeds)[:, 0]  # (N,)
        return scores.double().cpu().numpy()

    return score
