"""Score what hpsv3_reference.py wrote with the project's own HPSv3 (rewards/hpsv3.py) and print how
far it is from the original, as JSON. Runs in the project's environment:

    PYTHONPATH=. python scripts/equivalence/hpsv3_compare.py DIR [DTYPE]   (DIR: tests/fixtures/hpsv3_tiny, /tmp/hpsv3-full)

Reports: token ids equal, image grids equal, the largest differences of preprocessed-pixel probes,
features (the decoder's output at <|Reward|>), (mu, sigma) and scores, batched and one item at a time,
and the wall time of loading and scoring. DTYPE (default float32, the reference's) is the backbone's.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _reference_module():
    spec = importlib.util.spec_from_file_location("hpsv3_reference", HERE / "hpsv3_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compare(directory: Path, dtype: str = "float32") -> dict:
    from rewards.registry import build_reward

    refmod = _reference_module()
    ref = json.loads((directory / "reference.json").read_text())
    t0 = time.perf_counter()
    scorer = build_reward(
        "hpsv3", checkpoint=str(directory / ref["checkpoint"]), base=str(directory / "base"), dtype=dtype
    )
    load_s = time.perf_counter() - t0

    images = []
    for spec in ref["images"]:
        img = refmod.make_image(spec["height"], spec["width"], spec["kind"], spec["seed"])
        assert refmod.image_sha256(img) == spec["sha256"], spec
        images.append(img)
    prompts, items = ref["prompts"], ref["items"]
    ids_equal, grids_equal, px_diff, single_logits, single_feats = True, True, 0.0, [], []
    t0 = time.perf_counter()
    for img, prompt, item in zip(images, prompts, items):
        inputs = scorer.inputs(img[None], [prompt])
        ids_equal &= inputs["input_ids"][0].tolist() == item["input_ids"]
        grids_equal &= inputs["image_grid_thw"][0].tolist() == item["image_grid_thw"]
        flat = inputs["pixel_values"].numpy().reshape(-1)
        probes = np.random.default_rng(0).integers(0, flat.size, size=len(item["pixels"]["probes"]))
        px_diff = max(px_diff, float(np.abs(flat[probes] - item["pixels"]["probes"]).max()))
        single_feats.append(scorer.features(img[None], [prompt])[0].numpy())
        single_logits.append(scorer.logits(img[None], [prompt])[0].numpy())
    single_s = time.perf_counter() - t0
    # the original scores the whole list in one padded batch: so do we (images of different sizes, one call)
    t0 = time.perf_counter()
    batched = _batched(scorer, images, prompts)
    batch_s = time.perf_counter() - t0

    def diff(ours, key) -> float:
        return float(
            np.abs(np.asarray(ours, dtype=np.float64) - np.asarray([it[key] for it in items], dtype=np.float64)).max()
        )

    return {
        "dir": str(directory),
        "dtype": dtype,
        "load_s": round(load_s, 1),
        "score_single_s": round(single_s, 1),
        "score_batch_s": round(batch_s, 1),
        "token_ids_equal": ids_equal,
        "image_grids_equal": grids_equal,
        "pixel_probe_max_abs_diff": px_diff,
        "feature_single_max_abs_diff": diff(single_feats, "feature_single"),
        "logits_single_max_abs_diff": diff(single_logits, "logits_single"),
        "feature_batch_max_abs_diff": diff(batched["features"], "feature"),
        "logits_batch_max_abs_diff": diff(batched["logits"], "logits"),
        "score_max_abs_diff": float(np.abs(batched["logits"][:, 0] - np.asarray(ref["scores"])).max()),
        "scores_original": ref["scores"],
        "scores_ours": batched["logits"][:, 0].tolist(),
        "reference_versions": ref["versions"],
        "reference_mode": ref["mode"],
    }


def _batched(scorer, images: list[np.ndarray], prompts: list[str]) -> dict:
    """Features and logits of all items in one padded batch, images of different sizes included, as
    the reference's single call of HPSv3RewardInferencer.reward (our RewardFn takes one image size per
    call, so the inputs are built per image and joined as the Qwen2-VL processor joins them)."""
    import torch

    from rewards.hpsv3_model import decoder_hidden_states

    parts = [scorer.inputs(img[None], [p]) for img, p in zip(images, prompts)]
    length = max(p["input_ids"].shape[1] for p in parts)
    pad = scorer.tokenizer.pad_token_id
    inputs = {
        "input_ids": torch.cat(
            [torch.nn.functional.pad(p["input_ids"], (0, length - p["input_ids"].shape[1]), value=pad) for p in parts]
        ),
        "attention_mask": torch.cat(
            [torch.nn.functional.pad(p["attention_mask"], (0, length - p["attention_mask"].shape[1])) for p in parts]
        ),
        "pixel_values": torch.cat([p["pixel_values"] for p in parts]),
        "image_grid_thw": torch.cat([p["image_grid_thw"] for p in parts]),
    }
    with torch.inference_mode():
        hidden = decoder_hidden_states(scorer.model, **inputs)
        rows, cols = (inputs["input_ids"] == scorer.reward_token_id).nonzero(as_tuple=True)
        feats = hidden[rows, cols].float()
        logits = scorer.model.head(feats)
    return {"features": feats.numpy(), "logits": logits.numpy()}


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: hpsv3_compare.py DIR [DTYPE] (DIR written by hpsv3_reference.py)")
    print(json.dumps(compare(Path(sys.argv[1]), *(sys.argv[2:])), indent=1, ensure_ascii=False))
