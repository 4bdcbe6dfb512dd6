"""Score what imagereward_reference.py wrote with the project's own ImageReward (rewards/imagereward.py)
and print how far it is from the original, as JSON. Runs in the project's environment:

    PYTHONPATH=. python scripts/equivalence/imagereward_compare.py DIR   (tests/fixtures/imagereward_tiny, /tmp/ir-full)

Reports: token ids and attention masks equal (the reference prompts, and for a full-size run the extra
tokenizer prompts), the largest differences of preprocessed-pixel probes, first-token features, scores
(``ImageReward.score``, one image at a time) and batch scores (``ImageReward.inference_rank``: one
prompt, every image), and the wall time of loading and scoring.
"""

from __future__ import annotations

import json
from pathlib import Path

from scripts.equivalence import common


def compare(directory: Path) -> dict:
    import torch

    from rewards.registry import build_reward

    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    ref = json.loads((directory / "reference.json").read_text())
    elapsed = common.stopwatch()
    config = str(directory / "model_config.json") if ref["model_config"] else None  # None: the real architecture
    scorer = build_reward(
        "imagereward",
        checkpoint=str(directory / ref["checkpoint"]),
        config=config,
        tokenizer=str(directory / "tokenizer"),
    )
    result = {"dir": str(directory), "load_s": elapsed()}

    def differing(prompts: list[str], ids: list[list[int]]) -> list[str]:
        ours = scorer.tokens(prompts)["input_ids"].tolist()
        return [p for p, a, b in zip(prompts, ours, ids) if a != b]

    masks = scorer.tokens(ref["prompts"])["attention_mask"].tolist()
    result["token_ids_equal"] = not differing(ref["prompts"], ref["token_ids"]) and masks == ref["attention_masks"]
    if "tokenizer_prompts" in ref:
        result.update(
            common.tokenizer_report(ref["tokenizer_prompts"], differing(ref["tokenizer_prompts"], ref["tokenizer_ids"]))
        )
    images = common.reference_images(ref)
    px_diff, px_sha_equal, feat_diff, ours_scores, ours_rank = 0.0, True, 0.0, [], []
    elapsed = common.stopwatch()
    for i, img in enumerate(images):
        prompt = ref["prompts"][i]
        px = scorer.pixel_values(img[None])[0].numpy()  # (3, 224, 224)
        px_sha_equal &= common.pixel_summary(px)["sha256"] == ref["pixels"][i]["sha256"]
        px_diff = max(px_diff, common.probe_diff(px, ref["pixels"][i]))
        feat_diff = max(
            feat_diff, common.max_abs_diff(scorer.features(img[None], [prompt])[0].numpy(), ref["features"][i])
        )
        ours_scores.append(float(scorer(img[None], [prompt])[0]))
        ours_rank.append(float(scorer(img[None], [ref["rank_prompt"]])[0]))
    result.update(
        score_s=elapsed(),
        pixels_bitwise_equal=bool(px_sha_equal),
        pixel_probe_max_abs_diff=px_diff,
        feature_max_abs_diff=feat_diff,
        rank_score_max_abs_diff=common.max_abs_diff(ours_rank, ref["rank_scores"]),
        **common.score_report(ours_scores, ref),
    )
    return result


if __name__ == "__main__":
    common.compare_main(compare, "imagereward_compare.py DIR (written by imagereward_reference.py)")
