"""Tiny random CLIP checkpoints saved the way the real ones are published, so the rewards load them
through exactly the path a real hub checkpoint takes (from_pretrained on a directory). Offline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

PROJECTION_DIM = 16

# openai/clip-vit-large-patch14's preprocessor_config.json (legacy keys, size as an int), verbatim.
OPENAI_PREPROCESSOR_CONFIG = {
    "crop_size": 224,
    "do_center_crop": True,
    "do_normalize": True,
    "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor",
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,
    "size": 224,
}


def _bytes_to_unicode() -> list[str]:
    """CLIP's byte -> printable-unicode table (the BPE alphabet), in CLIP's order."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs, n = bs[:], 0
    for b in range(256):  # printable bytes map to themselves, the others to 256, 257, ...
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def write_char_tokenizer(path: Path) -> tuple[int, int, int]:
    """A character-level CLIP BPE tokenizer (no merges): 256 byte chars, their `</w>` forms, 2 specials.
    Returns (vocab_size, bos_id, eos_id)."""
    chars = _bytes_to_unicode()
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    (path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (path / "merges.txt").write_text("#version: 0.2\n")
    (path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "CLIPTokenizer", "model_max_length": 77}))
    return len(tokens), len(tokens) - 2, len(tokens) - 1


def save_tiny_clip(path: Path, seed: int = 0) -> Path:
    """A random CLIPModel (hidden 32, 2 layers, 224 px, patch 32, projection 16) + processor + tokenizer."""
    from transformers import CLIPConfig, CLIPModel

    path.mkdir(parents=True, exist_ok=True)
    vocab_size, bos, eos = write_char_tokenizer(path)
    tower = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4)
    config = CLIPConfig(
        text_config=dict(**tower, vocab_size=vocab_size, max_position_embeddings=77,
                         bos_token_id=bos, eos_token_id=eos, pad_token_id=eos),
        vision_config=dict(**tower, image_size=224, patch_size=32),
        projection_dim=PROJECTION_DIM,
    )
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(path)
    (path / "preprocessor_config.json").write_text(json.dumps(OPENAI_PREPROCESSOR_CONFIG))
    return path


def save_random_head(path: Path, input_dim: int = PROJECTION_DIM, seed: int = 0) -> Path:
    """A LAION-layout aesthetic head (layers.{0,2,4,6,7}) with random weights, via torch.save like the .pth."""
    from rewards.aesthetic import aesthetic_mlp

    torch.manual_seed(seed)
    state = {f"layers.{k}": v for k, v in aesthetic_mlp(input_dim).state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture(scope="session")
def aesthetic_head(tmp_path_factory) -> Path:
    return save_random_head(tmp_path_factory.mktemp("head") / "sac+logos+ava1-l14-linearMSE.pth")


@pytest.fixture
def make_head():
    """save_random_head, for tests that need a head of another width or format."""
    return save_random_head


@pytest.fixture
def images() -> np.ndarray:
    """Random uint8 (3, 64, 96, 3): non-square, so the shortest-side resize and the crop both matter."""
    return np.random.default_rng(0).integers(0, 256, size=(3, 64, 96, 3), dtype=np.uint8)
