"""HPSv3 in the project's environment, checked against the original hpsv3 package.

tests/fixtures/hpsv3_tiny/ was made by scripts/equivalence/hpsv3_reference.py in a side
environment running the original code (hpsv3 1.0.0's HPSv3RewardInferencer on transformers 4.45.2,
torch 2.14.1): a tiny random Qwen2-VL with HPSv3's reward head (the package's own model and key
layout, bfloat16 safetensors like the release), a base directory with the real Qwen2-VL-7B-Instruct
processor settings and chat template and a small byte-level BPE tokenizer trained on the instruction
text, seeded images of varied sizes, prompts, and what the inferencer returned for them (mu, sigma),
with the token ids, pixel fingerprints and the decoder's output at <|Reward|> along the way.

Tolerance: float32 on both sides, the same operations; differences are rounding in kernels (BLAS,
SDPA) that may block sums differently across torch builds and CPUs, and the original runs its head on
every token while we run it at <|Reward|> only: measured <= 1e-6 here, asserted at 1e-5.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rewards import hpsv3 as H
from rewards import hpsv3_model as M
from rewards.registry import build_reward
from tests.fixtures.equivalence import equivalence_fixture

FIX = equivalence_fixture("hpsv3")
REF, CKPT, BASE, fixture_images = FIX.ref, FIX.checkpoint, FIX.file("base"), FIX.images

ATOL = 1e-5


@pytest.fixture(scope="module")
def scorer() -> H.HPSv3Scorer:
    return build_reward("hpsv3", checkpoint=CKPT, base=BASE, dtype="float32")


def _state() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(CKPT)


# ------------------------------------------------------------------ equivalence with the original


def test_fixture_is_small():
    size = FIX.size()
    assert size < 2**20, size


def test_inputs_equal_the_original(scorer):
    """Token ids (chat template, instruction, <|Reward|>, one <|image_pad|> per 2 x 2 patches), the
    resized image's patch grid, and the preprocessed pixels, for each image on its own."""
    for img, prompt, item in zip(fixture_images(), REF["prompts"], REF["items"]):
        inputs = scorer.inputs(img[None], [prompt])
        assert inputs["input_ids"][0].tolist() == item["input_ids"], prompt
        assert inputs["image_grid_thw"][0].tolist() == item["image_grid_thw"]
        px = inputs["pixel_values"].numpy()
        assert list(px.shape) == item["pixels"]["shape"]
        flat = px.reshape(-1)
        probes = np.random.default_rng(0).integers(0, flat.size, size=len(item["pixels"]["probes"]))
        # equal up to float rounding: the resize's float path may round differently once other tests have run in
        # the process
        np.testing.assert_allclose(flat[probes], np.float32(item["pixels"]["probes"]), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(flat.sum(dtype=np.float64), item["pixels"]["sum"], rtol=1e-7)
        np.testing.assert_allclose((flat.astype(np.float64) ** 2).sum(), item["pixels"]["sum_sq"], rtol=1e-7)
    assert REF["items"][0]["image_grid_thw"] == [1, 32, 32]  # SD-Turbo's 512 x 512 -> 448 x 448: 256 image tokens


def test_features_and_scores_equal_the_original(scorer):
    """All seven items in one padded batch, images of different sizes, as the original's one call of
    HPSv3RewardInferencer.reward(paths, prompts); then one item through the RewardFn itself."""
    batch = scorer.mixed_size_inputs(fixture_images(), REF["prompts"])
    features = scorer.features_of(batch, REF["prompts"])  # (7, D)
    with torch.inference_mode():
        logits = scorer.model.head(features)  # (7, 2)
    cols = (batch["input_ids"] == scorer.reward_token_id).nonzero(as_tuple=True)[1]
    assert cols.tolist() == [item["reward_position"] for item in REF["items"]]
    np.testing.assert_allclose(features.numpy(), [it["feature"] for it in REF["items"]], atol=ATOL, rtol=0)
    np.testing.assert_allclose(logits.numpy(), [it["logits"] for it in REF["items"]], atol=ATOL, rtol=0)
    np.testing.assert_allclose(logits[:, 0].numpy(), REF["scores"], atol=ATOL, rtol=0)  # the score is mu

    img, prompt, item = fixture_images()[0], REF["prompts"][0], REF["items"][0]
    score = scorer(img[None], [prompt])
    assert score.shape == (1,) and score.dtype == np.float64
    np.testing.assert_allclose(score[0], item["logits_single"][0], atol=ATOL, rtol=0)
    assert np.ptp(REF["scores"]) > 0.1  # the reference scores are spread out


def test_batch_equals_one_at_a_time(scorer):
    """Prompts of different lengths right-padded together: causal attention keeps the padding after
    every <|Reward|> token, and positions start at 0 in every row, so each score is its own."""
    img = fixture_images()[0]
    prompts = [REF["prompts"][0], REF["prompts"][3]]  # 1085 and 1173 tokens: 88 of padding
    together = scorer(np.stack([img] * 2), prompts)
    np.testing.assert_allclose(together[0], REF["items"][0]["logits_single"][0], atol=ATOL)
    np.testing.assert_allclose(together[1], scorer(img[None], prompts[1:])[0], atol=1e-6)


def test_prompt_with_the_reward_token_is_an_error(scorer):
    with pytest.raises(ValueError, match=r"prompt 1 \('rate <\|Reward\|> high'\) contains the text of a special token"):
        scorer(np.stack([fixture_images()[0]] * 2), ["a cat", "rate <|Reward|> high"])


def test_image_size_is_hpsv3s_smart_resize():
    """About 256 * 28 * 28 pixels in multiples of 28, as hpsv3/dataset/utils.py smart_resize."""
    assert H.hpsv3_size(512, 512) == (448, 448)  # 504 x 504 rounded is too large: floor(512 / 1.1429 / 28) * 28
    assert H.hpsv3_size(448, 448) == (448, 448)
    assert H.hpsv3_size(700, 40) == (1876, 112)  # too small: ceil
    for item, spec in zip(REF["items"], REF["images"]):
        assert [14 * g for g in item["image_grid_thw"][1:]] == list(H.hpsv3_size(spec["height"], spec["width"]))
    with pytest.raises(ValueError, match="aspect ratio must be at most 200"):
        H.hpsv3_size(10, 2010)


# ------------------------------------------------------------------ checkpoint keys


def test_every_checkpoint_key_maps_once(scorer):
    converted = M.convert_state_dict(_state(), scorer.model)
    assert sorted(converted) == sorted(scorer.model.state_dict())  # each weight of ours filled exactly once
    assert sorted(REF["checkpoint_keys"]) == sorted(_state())  # the package's own key layout
    state = _state()
    torch.testing.assert_close(
        converted["language_model.layers.1.self_attn.k_proj.bias"], state["model.layers.1.self_attn.k_proj.bias"]
    )
    torch.testing.assert_close(converted["visual.merger.mlp.2.weight"], state["visual.merger.mlp.2.weight"])
    torch.testing.assert_close(converted["head.5.weight"], state["rm_head.5.weight"])
    newer = {
        k.replace("model.", "model.language_model.", 1)
        if k.startswith("model.")
        else "model." + k
        if k.startswith("visual.")
        else k: v
        for k, v in state.items()
    }  # transformers >= 4.52's layout of the same model
    assert sorted(M.convert_state_dict(newer, scorer.model)) == sorted(converted)


def test_missing_unused_and_misshapen_keys_are_errors_naming_them(scorer, tmp_path):
    state = _state()
    del state["visual.blocks.1.attn.qkv.bias"]
    state["rm_head.7.weight"] = torch.zeros(1)
    with pytest.raises(
        ValueError, match=r"missing key\(s\): visual\.blocks\.1\.attn\.qkv\.bias; unused key\(s\): rm_head\.7\.weight"
    ):
        M.convert_state_dict(state, scorer.model)
    state = _state()
    state["rm_head.0.weight"] = torch.zeros(512, 32)
    with pytest.raises(ValueError, match=r"head\.0\.weight \(512, 32\) \(expected \(1024, 32\)\)"):
        M.convert_state_dict(state, scorer.model)
    state = _state()
    state["lm_head.weight"] = torch.zeros(5, 32)
    with pytest.raises(ValueError, match=r"lm_head\.weight \(5, 32\) \(expected \(671, 32\)\)"):
        M.convert_state_dict(state, scorer.model)
    del state["lm_head.weight"]  # a checkpoint without the (unused) language-model head loads
    path = tmp_path / "HPSv3.pt"
    torch.save({"model": state}, path)  # and a torch.save'd one under "model", as inference.py unwraps it
    fn = build_reward("hpsv3", checkpoint=str(path), base=BASE, dtype="float32")
    np.testing.assert_allclose(
        fn(fixture_images()[0][None], REF["prompts"][:1]), [REF["items"][0]["logits_single"][0]], atol=ATOL
    )


def test_bfloat16_backbone_is_close():
    """The default dtype, as HPSv3 runs it: backbone bfloat16, head float32."""
    low = build_reward("hpsv3", checkpoint=CKPT, base=BASE)
    assert (
        low.model.language_model.embed_tokens.weight.dtype == torch.bfloat16
        and low.model.head[0].weight.dtype == torch.float32
    )
    np.testing.assert_allclose(low(fixture_images()[0][None], REF["prompts"][:1]), REF["scores"][:1], atol=0.05)


# ------------------------------------------------------ options, errors (the CLI: tests/e2e/rewards/test_hpsv3_e2e.py)


def test_missing_checkpoint_file_is_an_error():
    with pytest.raises(ValueError, match="HPSv3 checkpoint file not found: /nonexistent/HPSv3.safetensors"):
        build_reward("hpsv3", checkpoint="/nonexistent/HPSv3.safetensors", base=BASE)
    with pytest.raises(ValueError, match="model directory not found: /nonexistent/Qwen2-VL"):
        build_reward("hpsv3", checkpoint=CKPT, base="/nonexistent/Qwen2-VL")


def test_base_without_processor_files_is_one_line_error(tmp_path):
    (tmp_path / "config.json").write_text((FIX.dir / "base" / "config.json").read_text())
    with pytest.raises(
        ValueError,
        match=r"needs the config and processor files \(not the weights\) of its Qwen2-VL base .* pass base=DIR",
    ):
        build_reward("hpsv3", checkpoint=CKPT, base=str(tmp_path))
