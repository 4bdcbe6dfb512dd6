"""Score what imagereward_reference.py wrote with the project's own ImageReward (rewards/imagereward.py)
and print how far it is from the original, as JSON. Runs in the project's environment:

    PYTHONPATH=. python scripts/equivalence/imagereward_compare.py DIR   (tests/fixtures/imagereward_tiny, /tmp/ir-full)

Reports: token ids and attention masks equal (the reference prompts, and for a full-size run the extra
tokenizer prompts), the largest differences of preprocessed-pixel probes, first-token features, scores
(``ImageReward.score``, one image at a time) and batch scores (``ImageReward.inference_rank``: one
prompt, every image), and the wall time of loading and scoring.
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
    spec = importlib.util.spec_from_file_location("imagereward_reference", HERE / "imagereward_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compare(directory: Path) -> dict:
    import torch

    from rewards.registry import build_reward

    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    refmod = _reference_module()
    ref = json.loads((directory / "reference.json").read_text())
    t0 = time.perf_counter()
    config = str(directory / "model_config.json") if ref["model_config"] else None  # None: the real architecture
    scorer = build_reward(
        "imagereward",
        checkpoint=str(directory / ref["checkpoint"]),
        config=config,
        tokenizer=str(directory / "tokenizer"),
    )
    load_s = time.perf_counter() - t0

    def same_tokens(prompts: list[str], ids: list[list[int]]) -> list[str]:
        ours = scorer.tokens(prompts)["input_ids"].tolist()
        return [p for p, a, b in zip(prompts, ours, ids) if a != b]

    result = {"dir": str(directory), "load_s": round(load_s, 1)}
    masks = scorer.tokens(ref["prompts"])["attention_mask"].tolist()
    result["token_ids_equal"] = not same_tokens(ref["prompts"], ref["token_ids"]) and masks == ref["attention_masks"]
    if "tokenizer_prompts" in ref:
        bad = same_tokens(ref["tokenizer_prompts"], ref["tokenizer_ids"])
        result["tokenizer_prompts_equal"] = (
            f"{len(ref['tokenizer_prompts']) - len(bad)}/{len(ref['tokenizer_prompts'])}"
        )
        result["tokenizer_prompts_differing"] = bad
    images = []
    for spec in ref["images"]:
        img = refmod.make_image(spec["height"], spec["width"], spec["kind"], spec["seed"])
        assert refmod.image_sha256(img) == spec["sha256"], spec
        images.append(img)
    px_diff, px_sha_equal, feat_diff, ours_scores, ours_rank = 0.0, True, 0.0, [], []
    t0 = time.perf_counter()
    for i, img in enumerate(images):
        flat = scorer.pixel_values(img[None])[0].numpy().reshape(-1)
        px_sha_equal &= refmod.pixel_summary(flat.reshape(3, 224, 224))["sha256"] == ref["pixels"][i]["sha256"]
        probes = np.random.default_rng(0).integers(0, flat.size, size=len(ref["pixels"][i]["probes"]))
        px_diff = max(px_diff, float(np.abs(flat[probes] - ref["pixels"][i]["probes"]).max()))
        feat_diff = max(
            feat_diff,
            float(np.abs(scorer.features(img[None], [ref["prompts"][i]])[0].numpy() - ref["features"][i]).max()),
        )
        ours_scores.append(float(scorer(img[None], [ref["prompts"][i]])[0]))
        ours_rank.append(float(scorer(img[None], [ref["rank_prompt"]])[0]))
    result.update(
        score_s=round(time.perf_counter() - t0, 1),
        pixels_bitwise_equal=bool(px_sha_equal),
        pixel_probe_max_abs_diff=px_diff,
        feature_max_abs_diff=feat_diff,
        score_max_abs_diff=float(np.abs(np.array(ours_scores) - ref["scores"]).max()),
        rank_score_max_abs_diff=float(np.abs(np.array(ours_rank) - ref["rank_scores"]).max()),
        scores_original=ref["scores"],
        scores_ours=ours_scores,
        reference_versions=ref["versions"],
    )
    return result


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: imagereward_compare.py DIR (written by imagereward_reference.py)")
    print(json.dumps(compare(Path(sys.argv[1])), indent=1, ensure_ascii=False))
