"""The weighted sum of rewards equals the hand-computed combination; parts are kept for logging."""

import numpy as np
import pytest

from rewards.combined import build_weighted_reward
from rewards.jpeg import jpeg_size_kb
from rewards.registry import UnknownRewardError, build_reward


def test_hand_worked_jpeg_example(images):
    # compressibility = -s, incompressibility = +s  =>  2 * (-s) + 3 * s = s
    fn = build_weighted_reward({"jpeg_compressibility": 2.0, "jpeg_incompressibility": 3.0})
    s = jpeg_size_kb(images)
    np.testing.assert_allclose(fn(images, [""] * 3), s)
    parts = fn.components(images, [""] * 3)
    assert sorted(parts) == ["jpeg_compressibility", "jpeg_incompressibility"]
    np.testing.assert_allclose(parts["jpeg_compressibility"], -s)
    np.testing.assert_allclose(fn.combine(parts), s)


def test_weighted_model_rewards(tiny_clip_dir, aesthetic_head, images):
    d = str(tiny_clip_dir)
    options = {"aesthetic": {"model": d, "head": str(aesthetic_head)}, "pickscore": {"model": d, "processor": d}}
    weights = {"aesthetic": 0.5, "pickscore": -2.0, "jpeg_compressibility": 0.1}
    fn = build_weighted_reward(weights, device="cpu", options=options)
    prompts = ["a cat", "a dog", "a fox"]
    total = fn(images, prompts)
    expected = (
        0.5 * build_reward("aesthetic", **options["aesthetic"])(images, prompts)
        - 2.0 * build_reward("pickscore", **options["pickscore"])(images, prompts)
        + 0.1 * -jpeg_size_kb(images)
    )
    assert total.shape == (3,) and total.dtype == np.float64
    np.testing.assert_allclose(total, expected, rtol=1e-6)


def test_bad_specs_fail_before_loading_models():
    with pytest.raises(UnknownRewardError, match="valid rewards: aesthetic, hpsv2"):
        build_weighted_reward({"jpeg_compressibility": 1.0, "pickscor": 1.0})
    with pytest.raises(ValueError, match=r"options given for rewards without a weight: \['aesthetic'\]"):
        build_weighted_reward({"jpeg_compressibility": 1.0}, options={"aesthetic": {"head": "x"}})
    with pytest.raises(ValueError, match="at least one reward"):
        build_weighted_reward({})
