"""ImageReward in the project's environment, checked against the original image-reward package.

tests/fixtures/imagereward_tiny/ was made by scripts/equivalence/imagereward_reference.py in a
side environment running the original code (image-reward 1.5, transformers 4.46.3, timm 0.6.13,
fairscale 0.4.13, torch 2.14.1, torchvision 0.29.1): a tiny random ImageReward (the original's key
layout and structure: ViT at 224 px / patch 16, BERT with cross-attention, the reward MLP), a small
WordPiece vocabulary used by both sides, seeded images of varied sizes, prompts, and what
``ImageReward.score`` and ``ImageReward.inference_rank`` returned for them, with the token ids,
preprocessed-pixel fingerprints and first-token features along the way.

Tolerance: both sides run float32 and the same operations in the same order, and the preprocessing is
the same PIL resize: pixels are bitwise equal and features and scores were measured equal (0.0) here;
asserted at 1e-5, room for BLAS / attention kernels that block sums differently on other CPUs and
torch builds. inference_rank runs the MLP on a batch, which rounds differently: measured 1.2e-6.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from plumbing.remote import LocalActor
from rewards import blip_weights as W
from rewards import imagereward as IR
from rewards.pool import RewardPool
from rewards.registry import build_reward
from rewards.server import RewardServer, ScoreRequest
from scripts.equivalence.common import image_sha256, pixel_summary
from tests.fixtures.equivalence import equivalence_fixture

FIX = equivalence_fixture("imagereward")
REF, CKPT = FIX.ref, FIX.checkpoint
CONFIG, TOKENIZER = FIX.file("model_config.json"), FIX.file("tokenizer")
OPTIONS = {"checkpoint": CKPT, "config": CONFIG, "tokenizer": TOKENIZER}
ATOL = 1e-5
IMAGES = FIX.images()  # each checked against its recorded sha256


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model's ops are too small to split: one thread is ~50x faster on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def scorer(one_thread) -> IR.ImageRewardScorer:
    return build_reward("imagereward", **OPTIONS)


def _state() -> dict[str, torch.Tensor]:
    return torch.load(CKPT, map_location="cpu", weights_only=True)


def _configs():
    return W.blip_configs(W.load_arch(CONFIG))


# ------------------------------------------------------------------ equivalence with the original


def test_fixture_is_small_and_images_are_the_originals():
    size = FIX.size()
    assert size < 1.5 * 2**20, size
    assert [image_sha256(img) for img in IMAGES] == [s["sha256"] for s in REF["images"]]


def test_token_ids_and_masks_equal_the_original(scorer):
    tokens = scorer.tokens(REF["prompts"])
    assert tokens["input_ids"].tolist() == REF["token_ids"]
    assert tokens["attention_mask"].tolist() == REF["attention_masks"]
    assert tokens["input_ids"].shape == (len(REF["prompts"]), 35)


def test_preprocessing_is_bitwise_the_original(scorer):
    for img, original in zip(IMAGES, REF["pixels"]):
        px = scorer.pixel_values(img[None])[0].numpy()
        assert px.shape == (3, 224, 224) and px.dtype == np.float32
        assert pixel_summary(px)["sha256"] == original["sha256"], img.shape


def test_features_and_scores_equal_the_original(scorer):
    for i, img in enumerate(IMAGES):
        prompt = REF["prompts"][i]
        np.testing.assert_allclose(
            scorer.features(img[None], [prompt])[0].numpy(), REF["features"][i], atol=ATOL, rtol=0
        )
        score = scorer(img[None], [prompt])
        assert score.shape == (1,) and score.dtype == np.float64
        np.testing.assert_allclose(score[0], REF["scores"][i], atol=ATOL, rtol=0)
    assert np.ptp(REF["scores"]) > 0.5  # the reference scores are spread out, not one constant


def test_inference_rank_scores_equal_the_original(scorer):
    ours = [scorer(img[None], [REF["rank_prompt"]])[0] for img in IMAGES]
    np.testing.assert_allclose(ours, REF["rank_scores"], atol=ATOL, rtol=0)
    assert (np.argsort(np.argsort(-np.array(ours))) + 1).tolist() == REF["ranks"]


def test_batch_equals_one_at_a_time(scorer):
    """Same-size images with prompts of different lengths, all padded to 35: each row its own score."""
    images = np.stack([IMAGES[2], IMAGES[2][::-1].copy(), IMAGES[2][:, ::-1].copy()])
    prompts = [REF["prompts"][0], REF["prompts"][3], REF["prompts"][4]]
    single = [scorer(images[i : i + 1], [p])[0] for i, p in enumerate(prompts)]
    np.testing.assert_allclose(scorer(images, prompts), single, atol=1e-6)
    assert np.ptp(single) > 1e-3


def test_prompt_truncation(scorer):
    """Truncated to 35 tokens: [CLS] + 33 WordPiece tokens + [SEP]; words past the cut change nothing."""
    long_prompt = REF["prompts"][3]
    ids = scorer.tokens([long_prompt])["input_ids"][0].tolist()
    vocab = scorer.tokenizer.get_vocab()
    assert len(ids) == 35 and ids[0] == vocab["[CLS]"] and ids[-1] == vocab["[SEP]"] and vocab["[PAD]"] not in ids
    img = IMAGES[3][None]
    np.testing.assert_array_equal(scorer(img, [long_prompt + ", masterpiece, 4k"]), scorer(img, [long_prompt]))
    assert abs(scorer(img, ["a cat"])[0] - scorer(img, [long_prompt])[0]) > 1e-3


# ------------------------------------------------------------------ key mapping and architecture


def test_every_checkpoint_key_is_consumed():
    vision, text, head_input = _configs()
    state = _state()
    converted = W.convert_state_dict(state, vision, text)
    model = W.image_reward_model(vision, text, head_input)
    assert sorted(converted) == sorted(model.state_dict())  # each weight of ours filled exactly once
    dropped = set(state) - set(W.expected_keys(vision, text))
    assert dropped == {*W.IGNORED, W.POSITION_IDS}  # only BLIP's unused projections and the position buffer
    pairs = {
        "blip.visual_encoder.cls_token": "vision.embeddings.class_embedding",
        "blip.visual_encoder.pos_embed": "vision.embeddings.position_embedding",
        # fused [q; k; v] kept fused
        "blip.visual_encoder.blocks.1.attn.qkv.weight": "vision.encoder.layers.1.self_attn.qkv.weight",
        "blip.visual_encoder.blocks.0.attn.proj.bias": "vision.encoder.layers.0.self_attn.projection.bias",
        "blip.visual_encoder.norm.weight": "vision.post_layernorm.weight",
        "blip.text_encoder.encoder.layer.1.crossattention.self.key.weight": (
            "text.encoder.layer.1.crossattention.self.key.weight"
        ),
        "mlp.layers.4.weight": "head.2.weight",
        "mlp.layers.7.bias": "head.4.bias",
    }
    for original, ours in pairs.items():
        assert converted[ours] is state[original], original


def test_missing_unused_and_misshapen_keys_are_errors_naming_them(tmp_path):
    vision, text, _ = _configs()
    state = _state()
    del state["blip.visual_encoder.norm.bias"]
    state["blip.itm_head.weight"] = torch.zeros(1)
    with pytest.raises(
        ValueError, match=r"missing key\(s\): blip\.visual_encoder\.norm\.bias; unused key\(s\): blip\.itm_head\.weight"
    ):
        W.convert_state_dict(state, vision, text)

    state = {"module." + k: v for k, v in _state().items()}  # a DistributedDataParallel save is fine
    assert len(W.convert_state_dict(state, vision, text)) == len(W.expected_keys(vision, text))

    state = _state()
    state[W.POSITION_IDS] = state[W.POSITION_IDS].flip(-1)
    with pytest.raises(ValueError, match="position_ids is not 0, 1, 2"):
        W.convert_state_dict(state, vision, text)

    state = _state()
    state["blip.text_encoder.embeddings.word_embeddings.weight"] = torch.zeros(30524, 32)  # the real vocabulary size
    path = tmp_path / "other_vocab.pt"
    torch.save(state, path)
    with pytest.raises(
        ValueError, match=r"text\.embeddings\.word_embeddings\.weight \(30524, 32\) \(expected \(136, 32\)\)"
    ):
        build_reward("imagereward", **{**OPTIONS, "checkpoint": str(path)})


def test_wrong_files_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="ImageReward checkpoint file not found: /nonexistent/ImageReward.pt"):
        build_reward("imagereward", **{**OPTIONS, "checkpoint": "/nonexistent/ImageReward.pt"})
    text = tmp_path / "ImageReward.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"cannot read ImageReward checkpoint .*weights_only=True"):
        build_reward("imagereward", **{**OPTIONS, "checkpoint": str(text)})
    hps = equivalence_fixture("hpsv2").checkpoint  # another reward's checkpoint
    with pytest.raises(
        ValueError, match=r"does not match the BLIP ViT \+ BERT.*missing key\(s\): blip\.visual_encoder\.cls_token"
    ):
        build_reward("imagereward", **{**OPTIONS, "checkpoint": str(hps)})
    pickled = tmp_path / "pickled.pt"
    torch.save({"state_dict": _state(), "args": Path("x")}, pickled)
    with pytest.raises(ValueError, match=r"save its .state_dict. alone with torch.save"):
        build_reward("imagereward", **{**OPTIONS, "checkpoint": str(pickled)})
    with pytest.raises(ValueError, match="ImageReward config not found"):
        build_reward("imagereward", **{**OPTIONS, "config": "/nonexistent/model_config.json"})


def test_default_architecture_is_vit_l16_and_bert_base():
    vision, text, head_input = W.blip_configs(W.IMAGEREWARD_V1)
    assert (
        vision.hidden_size,
        vision.num_hidden_layers,
        vision.num_attention_heads,
        vision.patch_size,
        vision.image_size,
    ) == (1024, 24, 16, 16, 224)
    assert (vision.intermediate_size, vision.layer_norm_eps, vision.hidden_act) == (4096, 1e-6, "gelu")
    assert (
        text.hidden_size,
        text.num_hidden_layers,
        text.num_attention_heads,
        text.intermediate_size,
        text.vocab_size,
    ) == (768, 12, 12, 3072, 30524)
    assert (text.encoder_hidden_size, text.layer_norm_eps, head_input) == (1024, 1e-12, 768)
    keys = W.expected_keys(vision, text)
    assert len(keys) == len(set(keys)) == 6 + 24 * 12 + 4 + 12 * 26 + 10


# ------------------------------------------------------------------ options


def test_normalize_option_is_the_published_affine_map(scorer):
    raw = build_reward("imagereward", **OPTIONS, normalize=False)
    img = IMAGES[0][None]
    np.testing.assert_allclose(
        raw(img, REF["prompts"][:1]), np.array(REF["scores"][:1]) * IR.REWARD_STD + IR.REWARD_MEAN, atol=1e-5
    )
    with pytest.raises(ValueError, match="normalize must be true or false"):
        build_reward("imagereward", **OPTIONS, normalize="no")


def test_clip_preprocess_option(tiny_clip_dir, scorer):
    """preprocess="clip": transformers' CLIP processor (OpenAI's config) before the same model, as the SDPO
    reference scores; on a 224 x 224 image both transforms are the identity resize."""
    with pytest.raises(ValueError, match="unknown preprocess 'torchvision'; valid: imagereward, clip"):
        build_reward("imagereward", **OPTIONS, preprocess="torchvision")
    clip_pre = build_reward("imagereward", **OPTIONS, preprocess="clip", processor=str(tiny_clip_dir))
    square = IMAGES[2][None]
    torch.testing.assert_close(clip_pre.pixel_values(square), scorer.pixel_values(square), atol=1e-6, rtol=0)
    wide = IMAGES[4][None]  # 101 x 333: PIL bicubic (ours) vs transformers' resample of the same size
    assert clip_pre.pixel_values(wide).shape == (1, 3, 224, 224)
    assert np.isfinite(clip_pre(wide, ["x"])).all()


def test_bfloat16_is_close(scorer):
    low = build_reward("imagereward", **OPTIONS, dtype="bfloat16")
    np.testing.assert_allclose(low(IMAGES[0][None], REF["prompts"][:1]), REF["scores"][:1], atol=0.1)


# ------------------------------------------------------------------ through the reward server


def test_scores_through_the_reward_server_path(scorer):
    """A RewardServer built by name with options, behind the RewardPool that batches requests: the same
    scores as the reward called directly, and the original's for the fixture's own pair."""
    server = RewardServer(name="imagereward", batch_size=2, options={"imagereward": OPTIONS})
    pool = RewardPool([LocalActor(server)], batch_size=2, timeout_s=120, max_retries=0)
    images = np.stack([IMAGES[2], IMAGES[2][::-1].copy(), IMAGES[2][:, ::-1].copy()])
    prompts = [REF["prompts"][2], REF["prompts"][0], REF["prompts"][6]]
    ticket = pool.submit(ScoreRequest(images, prompts))
    result = pool.collect()[ticket]
    np.testing.assert_allclose(
        result.scores, [scorer(images[i : i + 1], [p])[0] for i, p in enumerate(prompts)], atol=1e-6
    )
    np.testing.assert_allclose(result.scores[0], REF["scores"][2], atol=ATOL)
    assert server.calls == 3 and set(result.components) == {"imagereward"}
