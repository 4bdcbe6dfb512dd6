"""Score what hpsv2_reference.py wrote with the project's own HPSv2 (rewards/hpsv2.py) and print how
far it is from the original, as JSON. Runs in the project's environment:

    PYTHONPATH=. python scripts/equivalence/hpsv2_compare.py DIR      (DIR: tests/fixtures/hpsv2_tiny, /tmp/hps-full)

Reports: token ids equal (the reference prompts, and for a full-size run the extra tokenizer
prompts), the largest differences of preprocessed-pixel probes, image features, text features and
scores, and the wall time of loading and scoring.
"""

from __future__ import annotations

import json
from pathlib import Path

from scripts.equivalence import common


def compare(directory: Path) -> dict:
    from rewards.registry import build_reward

    ref = json.loads((directory / "reference.json").read_text())
    elapsed = common.stopwatch()
    config = str(directory / "model_config.json") if ref["model_config"] else None
    scorer = build_reward(
        "hpsv2", checkpoint=str(directory / ref["checkpoint"]), config=config, processor=str(directory / "tokenizer")
    )
    result = {"dir": str(directory), "load_s": elapsed()}

    def same_ids(prompt: str, original: list[int]) -> bool:
        ours = scorer.token_ids([prompt])[0].tolist()
        return ours == original[: len(ours)] and not any(original[len(ours) :])

    result["token_ids_equal"] = all(same_ids(p, o) for p, o in zip(ref["prompts"], ref["token_ids"]))
    if "tokenizer_prompts" in ref:
        differing = [p for p, o in zip(ref["tokenizer_prompts"], ref["tokenizer_ids"]) if not same_ids(p, o)]
        result.update(common.tokenizer_report(ref["tokenizer_prompts"], differing))
    px_diff, img_diff, txt_diff, ours_scores = 0.0, 0.0, 0.0, []
    elapsed = common.stopwatch()
    for i, img in enumerate(common.reference_images(ref)):
        prompt = ref["prompts"][i]
        px_diff = max(px_diff, common.probe_diff(scorer.pixel_values(img[None])[0].numpy(), ref["pixels"][i]))
        img_diff = max(
            img_diff, common.max_abs_diff(scorer.image_features(img[None])[0].numpy(), ref["image_features"][i])
        )
        txt_diff = max(
            txt_diff, common.max_abs_diff(scorer.text_features([prompt])[0].numpy(), ref["text_features"][i])
        )
        ours_scores.append(float(scorer(img[None], [prompt])[0]))
    result.update(
        score_s=elapsed(),
        pixel_probe_max_abs_diff=px_diff,
        image_feature_max_abs_diff=img_diff,
        text_feature_max_abs_diff=txt_diff,
        **common.score_report(ours_scores, ref),
    )
    return result


if __name__ == "__main__":
    common.compare_main(compare, "hpsv2_compare.py DIR (written by hpsv2_reference.py)")
