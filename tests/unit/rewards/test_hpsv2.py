"""HPSv2 / HPSv2.1 in the project's environment, checked against the original hpsv2 package.

tests/fixtures/hpsv2_tiny/ was made by scripts/equivalence/hpsv2_reference.py in a side
environment running the original code (hpsv2 1.2.0 and its vendored open_clip, torch 2.14.1,
torchvision 0.29.1, ftfy): a tiny random open_clip CLIP (open_clip's key layout, ViT-H-14's
structure, 224 px), a character-level CLIP BPE vocabulary used by both sides, seeded images of
varied sizes, prompts, and what ``hpsv2.img_score.score`` returned for them, with the token ids,
preprocessed-pixel fingerprints and features along the way.

Tolerance: everything is float32 on both sides and the same operations run in the same order, so
differences are rounding in kernels (BLAS, SDPA) that may block sums differently across torch
builds and CPUs: measured <= 2e-7 here (features and scores), asserted at 1e-5.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rewards import hpsv2 as H
from rewards import open_clip_weights as W
from rewards.clip_features import load_image_processor, pixel_values
from rewards.registry import build_reward, reward_spec
from tests.fixtures.equivalence import equivalence_fixture

FIX = equivalence_fixture("hpsv2")
REF, CKPT, fixture_images = FIX.ref, FIX.checkpoint, FIX.images
CONFIG, TOKENIZER = FIX.file("model_config.json"), FIX.file("tokenizer")

ATOL = 1e-5


@pytest.fixture(scope="module")
def scorer() -> H.HPSv2Scorer:
    return build_reward("hpsv2", checkpoint=CKPT, config=CONFIG, processor=TOKENIZER)


def _state() -> dict[str, torch.Tensor]:
    return torch.load(CKPT, map_location="cpu", weights_only=True)["state_dict"]


# ------------------------------------------------------------------ equivalence with the original


def test_fixture_is_small():
    size = FIX.size()
    assert size < 1.5 * 2**20, size


def test_token_ids_equal_the_original(scorer):
    """open_clip: [sot] BPE(clean(text)) [eot], zero-padded to 77; ours stops at the batch's longest."""
    for prompt, original in zip(REF["prompts"], REF["token_ids"]):
        ours = scorer.token_ids([prompt])[0].tolist()
        assert ours == original[: len(ours)] and not any(original[len(ours) :]), prompt
    assert max(len(scorer.token_ids([p])[0]) for p in REF["prompts"]) == 77  # one prompt is truncated


def test_preprocessing_equals_the_original(scorer):
    for img, original in zip(fixture_images(), REF["pixels"]):
        px = scorer.pixel_values(img[None])[0].numpy()
        assert px.shape == (3, 224, 224)
        flat = px.reshape(-1)
        probes = np.random.default_rng(0).integers(0, flat.size, size=len(original["probes"]))
        np.testing.assert_allclose(flat[probes], original["probes"], atol=1e-6, rtol=0)
        np.testing.assert_allclose(flat.sum(dtype=np.float64), original["sum"], rtol=1e-6)
        np.testing.assert_allclose((flat.astype(np.float64) ** 2).sum(), original["sum_sq"], rtol=1e-6)


def test_features_and_scores_equal_the_original(scorer):
    for i, img in enumerate(fixture_images()):
        prompt = REF["prompts"][i]
        np.testing.assert_allclose(
            scorer.image_features(img[None])[0].numpy(), REF["image_features"][i], atol=ATOL, rtol=0
        )
        np.testing.assert_allclose(
            scorer.text_features([prompt])[0].numpy(), REF["text_features"][i], atol=ATOL, rtol=0
        )
        score = scorer(img[None], [prompt])
        assert score.shape == (1,) and score.dtype == np.float64
        np.testing.assert_allclose(score[0], REF["scores"][i], atol=ATOL, rtol=0)
    assert np.ptp(REF["scores"]) > 0.3  # the reference scores are spread out, not all ~0


def test_hpsv2_1_is_the_same_model_with_its_own_checkpoint(scorer):
    v21 = build_reward("hpsv2.1", checkpoint=CKPT, config=CONFIG, processor=TOKENIZER)
    img = fixture_images()[0]
    np.testing.assert_allclose(v21(img[None], REF["prompts"][:1]), REF["scores"][:1], atol=ATOL)
    assert (
        "HPS_v2.1_compressed.pt" in reward_spec("hpsv2.1").needs
        and "HPS_v2_compressed.pt" in reward_spec("hpsv2").needs
    )


def test_batch_equals_one_at_a_time(scorer):
    """Images of one size in a batch, prompts of different lengths padded together: the causal mask
    keeps padding away from the EOT token, so every score equals its single-item score."""
    images = np.stack([fixture_images()[2]] * 3)
    prompts = [REF["prompts"][0], REF["prompts"][4], REF["prompts"][5]]
    single = [scorer(images[i : i + 1], [p])[0] for i, p in enumerate(prompts)]
    np.testing.assert_allclose(scorer(images, prompts), single, atol=1e-6)


# ------------------------------------------------------------------ key mapping and architecture


def test_every_open_clip_key_maps_once():
    config = W.load_clip_config(CONFIG)
    converted = W.convert_state_dict(_state(), config)
    model = W._empty_clip_model(config)
    assert sorted(converted) == sorted(model.state_dict())  # each CLIPModel weight filled exactly once
    state = _state()
    w, b = (
        state["visual.transformer.resblocks.1.attn.in_proj_weight"],
        state["transformer.resblocks.0.attn.in_proj_bias"],
    )
    for j, p in enumerate("qkv"):  # fused [q; k; v] rows split in that order
        torch.testing.assert_close(
            converted[f"vision_model.encoder.layers.1.self_attn.{p}_proj.weight"], w[32 * j : 32 * (j + 1)]
        )
        torch.testing.assert_close(
            converted[f"text_model.encoder.layers.0.self_attn.{p}_proj.bias"], b[32 * j : 32 * (j + 1)]
        )
    torch.testing.assert_close(converted["visual_projection.weight"], state["visual.proj"].t())
    torch.testing.assert_close(converted["text_projection.weight"], state["text_projection"].t())
    torch.testing.assert_close(converted["vision_model.pre_layrnorm.bias"], state["visual.ln_pre.bias"])
    torch.testing.assert_close(converted["text_model.final_layer_norm.weight"], state["ln_final.weight"])
    torch.testing.assert_close(
        converted["text_model.encoder.layers.1.mlp.fc2.weight"], state["transformer.resblocks.1.mlp.c_proj.weight"]
    )


def test_missing_unused_and_misshapen_keys_are_errors_naming_them(tmp_path):
    config = W.load_clip_config(CONFIG)
    state = _state()
    del state["visual.ln_post.bias"]
    state["visual.extra_head.weight"] = torch.zeros(1)
    with pytest.raises(
        ValueError, match=r"missing key\(s\): visual\.ln_post\.bias; unused key\(s\): visual\.extra_head\.weight"
    ):
        W.convert_state_dict(state, config)

    state = {"module." + k: v for k, v in _state().items()}  # a DistributedDataParallel save is fine
    assert len(W.convert_state_dict(state, config)) == len(W._empty_clip_model(config).state_dict())

    state = _state()
    del state["transformer.resblocks.1.attn.in_proj_weight"]
    path = tmp_path / "broken.pt"
    torch.save({"state_dict": state}, path)
    with pytest.raises(ValueError, match=r"missing key\(s\): transformer\.resblocks\.1\.attn\.in_proj_weight"):
        build_reward("hpsv2", checkpoint=str(path), config=CONFIG, processor=TOKENIZER)

    state = _state()
    state["token_embedding.weight"] = torch.zeros(600, 32)  # a different vocabulary size
    torch.save({"state_dict": state}, path)
    with pytest.raises(
        ValueError, match=r"text_model\.embeddings\.token_embedding\.weight \(600, 32\) \(expected \(514, 32\)\)"
    ):
        build_reward("hpsv2", checkpoint=str(path), config=CONFIG, processor=TOKENIZER)


def test_checkpoint_with_python_objects_says_what_to_do(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"state_dict": _state(), "args": Path("x")}, path)  # not loadable with weights_only=True
    with pytest.raises(ValueError, match=r"weights_only=True.*save its .state_dict. alone with torch.save"):
        build_reward("hpsv2", checkpoint=str(path), config=CONFIG, processor=TOKENIZER)
    from safetensors.torch import save_file

    flat, safe = tmp_path / "flat.pt", tmp_path / "hps.safetensors"
    torch.save(_state(), flat)  # a bare state dict also loads, and so does a .safetensors file
    save_file({k: v.contiguous() for k, v in _state().items()}, str(safe))
    for path in (flat, safe):
        fn = build_reward("hpsv2", checkpoint=str(path), config=CONFIG, processor=TOKENIZER)
        np.testing.assert_allclose(fn(fixture_images()[0][None], REF["prompts"][:1]), REF["scores"][:1], atol=ATOL)


def test_default_architecture_is_vit_h_14():
    config = W.load_clip_config(None)
    v, t = config.vision_config, config.text_config
    assert (
        v.hidden_size,
        v.num_hidden_layers,
        v.num_attention_heads,
        v.patch_size,
        v.image_size,
        v.intermediate_size,
    ) == (1280, 32, 16, 14, 224, 5120)
    assert (
        t.hidden_size,
        t.num_hidden_layers,
        t.num_attention_heads,
        t.intermediate_size,
        t.vocab_size,
        t.max_position_embeddings,
    ) == (1024, 24, 16, 4096, 49408, 77)
    assert config.projection_dim == 1024 and v.hidden_act == t.hidden_act == "gelu" and t.eos_token_id == 49407
    keys = W.expected_open_clip_keys(config)
    assert len(keys) == len(set(keys)) == 5 + 32 * 12 + 3 + 2 + 24 * 12 + 4
    assert (
        "visual.transformer.resblocks.31.attn.in_proj_weight" in keys
        and "transformer.resblocks.23.mlp.c_fc.bias" in keys
    )


def test_open_clip_features_without_a_clip_counterpart_are_errors():
    cfg = json.loads(Path(CONFIG).read_text())
    cfg["vision_cfg"]["ls_init_value"] = 1e-5
    with pytest.raises(ValueError, match=r"cannot express: vision_cfg\.ls_init_value=1e-05"):
        W.clip_config_from_open_clip(cfg)
    with pytest.raises(ValueError, match="HPSv2 config not found"):
        W.load_clip_config("/nonexistent/config.json")


def test_text_pooling_at_eot_is_what_transformers_pools(scorer):
    """open_clip pools at argmax(token ids); transformers' CLIPTextModel pools at the first
    <|endoftext|> (eos_token_id = vocab - 1, the highest id): the same token, padding or not."""
    ids = scorer.token_ids(REF["prompts"])  # padded with <|endoftext|> to the longest
    with torch.no_grad():
        out = scorer.clip.text_model(input_ids=ids)
    ours = out.last_hidden_state[torch.arange(len(ids)), ids.argmax(-1)]
    torch.testing.assert_close(ours, out.pooler_output, atol=0, rtol=0)


# ------------------------------------------------------------------ options


def test_preprocess_option(tiny_clip_dir):
    """preprocess="clip" is transformers' CLIP processor (shortest side, center crop) on the same model;
    tiny_clip_dir has the same character vocabulary plus OpenAI's preprocessor_config.json."""
    with pytest.raises(ValueError, match="unknown preprocess 'torchvision'; valid: hpsv2, clip"):
        build_reward("hpsv2", checkpoint=CKPT, config=CONFIG, processor=TOKENIZER, preprocess="torchvision")
    clip_pre = build_reward("hpsv2", checkpoint=CKPT, config=CONFIG, processor=str(tiny_clip_dir), preprocess="clip")
    own_pre = build_reward("hpsv2", checkpoint=CKPT, config=CONFIG, processor=str(tiny_clip_dir))
    wide = fixture_images()[4][None]  # 101 x 333: cropped by one, padded by the other
    torch.testing.assert_close(clip_pre.pixel_values(wide), pixel_values(load_image_processor(tiny_clip_dir), wide))
    assert abs(clip_pre(wide, ["x"])[0] - own_pre(wide, ["x"])[0]) > 1e-3
    square = fixture_images()[2][None]  # 224 x 224: neither resizes, crops nor pads
    torch.testing.assert_close(clip_pre.pixel_values(square), own_pre.pixel_values(square), atol=1e-6, rtol=0)
    np.testing.assert_allclose(clip_pre(square, ["x"]), own_pre(square, ["x"]), atol=1e-6)


def _pil_resize_max_size(img: np.ndarray, size: int = 224) -> np.ndarray:
    """Independent rendition with PIL's float ("F") bicubic, which is antialiased like torch's."""
    h, w = img.shape[:2]
    scale = size / max(h, w)
    nh, nw = round(h * scale), round(w * scale)
    chans = [
        np.asarray(Image.fromarray(img[..., c].astype(np.float32) / 255).resize((nw, nh), Image.BICUBIC))
        for c in range(3)
    ]
    out = np.zeros((3, size, size), np.float32)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[:, top : top + nh, left : left + nw] = np.stack(chans)
    mean, std = np.array(H.OPENAI_MEAN, np.float32)[:, None, None], np.array(H.OPENAI_STD, np.float32)[:, None, None]
    return (out - mean) / std


@pytest.mark.parametrize("shape", [(300, 200), (64, 96), (101, 333), (50, 31), (700, 40)])
def test_hpsv2_transform_matches_pil(shape):
    img = np.random.default_rng(3).integers(0, 256, size=(*shape, 3), dtype=np.uint8)
    ours = H.hpsv2_pixel_values(img[None])[0].numpy()
    # PIL sums in float64 and torch in float32: ~1e-5 of a [0, 1] pixel, /std ~0.27 after normalizing
    np.testing.assert_allclose(ours, _pil_resize_max_size(img), atol=1e-4, rtol=0)


def test_hpsv2_transform_pads_every_non_square_image():
    """The original leaves a 224 x 160 image unpadded (its resize-and-pad only runs when scale != 1),
    and the model then fails on it; here it is padded like any other."""
    img = np.full((1, 224, 160, 3), 255, np.uint8)
    px = H.hpsv2_pixel_values(img)[0]
    assert px.shape == (3, 224, 224)
    mean, std = torch.tensor(H.OPENAI_MEAN).view(3, 1, 1), torch.tensor(H.OPENAI_STD).view(3, 1, 1)
    for cols, value in ((slice(0, 32), 0.0), (slice(32, 192), 1.0), (slice(192, 224), 0.0)):  # pad | image | pad
        torch.testing.assert_close(px[:, :, cols], ((value - mean) / std).expand(3, 224, cols.stop - cols.start))


def test_prompt_cleaning_without_ftfy():
    assert H.clean_prompt("  “Smart”\u00a0QUOTES &amp;amp; ﬁsh\tＡＢ  ") == '"smart" quotes & fish ab'


def test_bfloat16_is_close(scorer):
    low = build_reward("hpsv2", checkpoint=CKPT, config=CONFIG, processor=TOKENIZER, dtype="bfloat16")
    img = fixture_images()[0][None]
    np.testing.assert_allclose(low(img, REF["prompts"][:1]), REF["scores"][:1], atol=0.05)


def test_missing_checkpoint_file_is_an_error():
    with pytest.raises(ValueError, match="HPSv2 checkpoint file not found: /nonexistent/HPS_v2_compressed.pt"):
        build_reward("hpsv2", checkpoint="/nonexistent/HPS_v2_compressed.pt", config=CONFIG, processor=TOKENIZER)
