"""Score what hpsv2_reference.py wrote with the project's own HPSv2 (rewards/hpsv2.py) and print how
far it is from the original, as JSON. Runs in the project's environment:

    PYTHONPATH=. python scripts/equivalence/hpsv2_compare.py DIR      (DIR: tests/fixtures/hpsv2_tiny, /tmp/hps-full)

Reports: token ids equal (the reference prompts, and for a full-size run the extra tokenizer
prompts), the largest differences of preprocessed-pixel probes, image features, text features and
scores, and the wall time of loading and scoring.
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
    spec = importlib.util.spec_from_file_location("hpsv2_reference", HERE / "hpsv2_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compare(directory: Path) -> dict:
    from rewards.registry import build_reward

    refmod = _reference_module()
    ref = json.loads((directory / "reference.json").read_text())
    t0 = time.perf_counter()
    config = str(directory / "model_config.json") if ref["model_config"] else None
    scorer = build_reward(
        "hpsv2", checkpoint=str(directory / ref["checkpoint"]), config=config, processor=str(directory / "tokenizer")
    )
    load_s = time.perf_counter() - t0

    def same_ids(prompt: str, original: list[int]) -> bool:
        ours = scorer.token_ids([prompt])[0].tolist()
        return ours == original[: len(ours)] and not any(original[len(ours) :])

    result = {"dir": str(directory), "load_s": round(load_s, 1)}
    result["token_ids_equal"] = all(same_ids(p, o) for p, o in zip(ref["prompts"], ref["token_ids"]))
    if "tokenizer_prompts" in ref:
        bad = [p for p, o in zip(ref["tokenizer_prompts"], ref["tokenizer_ids"]) if not same_ids(p, o)]
        result["tokenizer_prompts_equal"] = (
            f"{len(ref['tokenizer_prompts']) - len(bad)}/{len(ref['tokenizer_prompts'])}"
        )
        result["tokenizer_prompts_differing"] = bad
    px_diff, img_diff, txt_diff, ours_scores = 0.0, 0.0, 0.0, []
    t0 = time.perf_counter()
    for i, spec in enumerate(ref["images"]):
        img = refmod.make_image(spec["height"], spec["width"], spec["kind"], spec["seed"])
        assert refmod.image_sha256(img) == spec["sha256"], spec
        flat = scorer.pixel_values(img[None])[0].numpy().reshape(-1)
        probes = np.random.default_rng(0).integers(0, flat.size, size=len(ref["pixels"][i]["probes"]))
        px_diff = max(px_diff, float(np.abs(flat[probes] - ref["pixels"][i]["probes"]).max()))
        img_diff = max(
            img_diff, float(np.abs(scorer.image_features(img[None])[0].numpy() - ref["image_features"][i]).max())
        )
        txt_diff = max(
            txt_diff,
            float(np.abs(scorer.text_features([ref["prompts"][i]])[0].numpy() - ref["text_features"][i]).max()),
        )
        ours_scores.append(float(scorer(img[None], [ref["prompts"][i]])[0]))
    result.update(
        score_s=round(time.perf_counter() - t0, 1),
        pixel_probe_max_abs_diff=px_diff,
        image_feature_max_abs_diff=img_diff,
        text_feature_max_abs_diff=txt_diff,
        score_max_abs_diff=float(np.abs(np.array(ours_scores) - ref["scores"]).max()),
        scores_original=ref["scores"],
        scores_ours=ours_scores,
        reference_versions=ref["versions"],
    )
    return result


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: hpsv2_compare.py DIR (written by hpsv2_reference.py)")
    print(json.dumps(compare(Path(sys.argv[1])), indent=1, ensure_ascii=False))
