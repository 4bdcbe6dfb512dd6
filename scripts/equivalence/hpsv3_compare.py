"""Score what hpsv3_reference.py wrote with the project's own HPSv3 (rewards/hpsv3.py) and print how
far it is from the original, as JSON. Runs in the project's environment:

    PYTHONPATH=. python scripts/equivalence/hpsv3_compare.py DIR [DTYPE]
        (DIR: tests/fixtures/hpsv3_tiny, /tmp/hpsv3-full)

Reports: token ids equal, image grids equal, the largest differences of preprocessed-pixel probes,
features (the decoder's output at <|Reward|>), (mu, sigma) and scores, batched and one item at a time,
and the wall time of loading and scoring. DTYPE (default float32, the reference's) is the backbone's.
"""

from __future__ import annotations

import json
from pathlib import Path

from scripts.equivalence import common


def compare(directory: Path, dtype: str = "float32") -> dict:
    import torch

    from rewards.registry import build_reward

    ref = json.loads((directory / "reference.json").read_text())
    elapsed = common.stopwatch()
    scorer = build_reward(
        "hpsv3", checkpoint=str(directory / ref["checkpoint"]), base=str(directory / "base"), dtype=dtype
    )
    load_s = elapsed()

    images = common.reference_images(ref)
    prompts, items = ref["prompts"], ref["items"]
    ids_equal, grids_equal, px_diff, single_logits, single_feats = True, True, 0.0, [], []
    elapsed = common.stopwatch()
    for img, prompt, item in zip(images, prompts, items):
        inputs = scorer.inputs(img[None], [prompt])
        ids_equal &= inputs["input_ids"][0].tolist() == item["input_ids"]
        grids_equal &= inputs["image_grid_thw"][0].tolist() == item["image_grid_thw"]
        px_diff = max(px_diff, common.probe_diff(inputs["pixel_values"].numpy(), item["pixels"]))
        single_feats.append(scorer.features(img[None], [prompt])[0].numpy())
        single_logits.append(scorer.logits(img[None], [prompt])[0].numpy())
    single_s = elapsed()
    # the original scores the whole list in one padded batch: so do we (images of different sizes, one call)
    elapsed = common.stopwatch()
    feats = scorer.features_of(scorer.mixed_size_inputs(images, prompts), prompts)  # (N, D)
    with torch.inference_mode():
        logits = scorer.model.head(feats).numpy()  # (N, 2): mu, sigma
    batch_s = elapsed()

    def diff(ours, key) -> float:
        return common.max_abs_diff(ours, [item[key] for item in items])

    return {
        "dir": str(directory),
        "dtype": dtype,
        "load_s": load_s,
        "score_single_s": single_s,
        "score_batch_s": batch_s,
        "token_ids_equal": ids_equal,
        "image_grids_equal": grids_equal,
        "pixel_probe_max_abs_diff": px_diff,
        "feature_single_max_abs_diff": diff(single_feats, "feature_single"),
        "logits_single_max_abs_diff": diff(single_logits, "logits_single"),
        "feature_batch_max_abs_diff": diff(feats.numpy(), "feature"),
        "logits_batch_max_abs_diff": diff(logits, "logits"),
        **common.score_report(logits[:, 0].tolist(), ref),
        "reference_mode": ref["mode"],
    }


if __name__ == "__main__":
    common.compare_main(compare, "hpsv3_compare.py DIR [DTYPE] (DIR written by hpsv3_reference.py)", max_args=2)
