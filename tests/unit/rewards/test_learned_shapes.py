"""The learned shapes reward (rewards/learned_shapes.py, shapes/reward.py, shapes/net.py) with its committed weights."""

from __future__ import annotations

import numpy as np
import pytest

from plumbing.remote import LocalActor
from rewards.pool import RewardPool
from rewards.registry import build_reward, reward_spec
from rewards.server import RewardServer, ScoreRequest
from shapes.data import heldout_prompts, sample_images


@pytest.fixture(scope="module")
def heldout_images():
    return sample_images(heldout_prompts(), 4, seed=99)  # (96, 32, 32, 3), captions never trained on as combinations


def test_scores_matching_captions_high_and_wrong_ones_low(heldout_images):
    images, captions = heldout_images
    reward = build_reward("shapes_classifier")
    right = reward(images, captions)
    shuffled = [captions[i] for i in np.random.default_rng(0).permutation(len(captions))]
    wrong = reward(images, shuffled)
    assert right.dtype == np.float64 and right.shape == (96,) and ((right >= 0) & (right <= 1)).all()
    assert right.mean() > 0.85 and wrong.mean() < 0.5 and right.mean() - wrong.mean() > 0.4
    # one factor contradicted: the colour probability drops out of the mean of four
    red = sample_images(["a small red circle on the right"], 1, seed=0)[0]  # a training combination
    as_red, as_blue = (
        reward(red, ["a small red circle on the right"])[0],
        reward(red, ["a small blue circle on the right"])[0],
    )
    assert as_red > 0.9 and as_red - as_blue > 0.2


def test_bad_inputs_are_clear_errors(heldout_images):
    images, captions = heldout_images
    reward = build_reward("shapes_classifier")
    with pytest.raises(ValueError, match="not a shapes caption"):
        reward(images[:1], ["a cat"])
    with pytest.raises(ValueError, match=r"uint8 images \(N, 32, 32, 3\)"):
        reward(np.zeros((1, 64, 64, 3), np.uint8), captions[:1])
    with pytest.raises(ValueError, match="not found"):
        build_reward("shapes_classifier", weights="/nonexistent")
    assert "committed" in reward_spec("shapes_classifier").needs


def test_served_by_a_reward_server_through_the_pool(heldout_images):
    images, captions = heldout_images
    server = RewardServer(name="shapes_classifier", batch_size=32)
    pool = RewardPool([LocalActor(server)], batch_size=32, timeout_s=60, max_retries=0)
    ticket = pool.submit(ScoreRequest(images[:40], captions[:40]))
    result = pool.collect()[ticket]
    np.testing.assert_allclose(result.scores, build_reward("shapes_classifier")(images[:40], captions[:40]), atol=1e-6)


def test_factors_option_averages_only_the_chosen_factors(heldout_images):
    """factors="colour,shape,size": the mean of those three probabilities; a position word changed in
    the caption no longer moves the score (the models cannot act on position), a colour word does."""
    from shapes import net

    images, captions = heldout_images
    probs = (
        net.factor_probabilities(net.load(), net.to_pixels(images[:8]), net.targets(captions[:8])).double().numpy()
    )  # (8, 4): colour, shape, size, position
    three = build_reward("shapes_classifier", factors="colour,shape,size")
    np.testing.assert_allclose(three(images[:8], captions[:8]), probs[:, :3].mean(axis=1), atol=1e-6)
    np.testing.assert_allclose(
        build_reward("shapes_classifier", factors=["position"])(images[:8], captions[:8]), probs[:, 3], atol=1e-6
    )
    red = sample_images(["a small red circle on the right"], 1, seed=0)[0]
    assert three(red, ["a small red circle on the left"])[0] == pytest.approx(
        three(red, ["a small red circle on the right"])[0]
    )
    assert (
        three(red, ["a small blue circle on the right"])[0] < three(red, ["a small red circle on the right"])[0] - 0.2
    )
    for bad in ("colour,hue", "", "size,size"):
        with pytest.raises(ValueError, match="shapes_classifier option factors"):
            build_reward("shapes_classifier", factors=bad)
