"""The procedural shapes dataset and the held-out pixel metric (shapes.data, shapes.fidelity)."""

from __future__ import annotations

import numpy as np
import pytest

from actors.prompts import load_prompts
from shapes.data import (
    Factors,
    all_factors,
    heldout_prompts,
    is_heldout,
    parse_caption,
    render,
    sample_images,
    shape_mask,
    train_prompts,
)
from shapes.fidelity import CHANCE, factor_hits, fidelity, read_image


def test_captions_and_split():
    assert Factors("red", "circle", "small", "left").caption == "a small red circle on the left"
    assert Factors("cyan", "triangle", "large", "bottom").caption == "a large cyan triangle at the bottom"
    train, held = train_prompts(), heldout_prompts()
    assert len(all_factors()) == 144 and len(train) == 120 and len(held) == 24
    assert not set(train) & set(held)
    # (red 0 + circle 0 + small 0 + left 0) % 6 == 0: held out; (red 0 + circle 0 + small 0 + right 1) is not
    assert is_heldout(Factors("red", "circle", "small", "left")) and not is_heldout(
        Factors("red", "circle", "small", "right")
    )
    # every single factor value and every (colour, shape) pair still occurs in training
    seen = [parse_caption(p) for p in train]
    assert {(f.colour, f.shape) for f in seen} == {(f.colour, f.shape) for f in all_factors()}
    assert {(f.size, f.position) for f in seen} == {(f.size, f.position) for f in all_factors()}
    assert parse_caption("A  small red circle on the LEFT") == Factors("red", "circle", "small", "left")
    assert parse_caption("a red dog") is None
    assert load_prompts("shapes_train") == train and load_prompts("shapes_heldout") == held


def test_shape_masks_by_hand():
    # a square of half-side 2 at (16, 16) covers pixel centres 14.5..17.5: pixels 14..17, a 4 x 4 block
    square = shape_mask("square", 16.0, 16.0, 2.0)
    assert square.sum() == 16 and square[14:18, 14:18].all()
    # a circle of radius 2 at (16, 16): pixel centres within 2 -> the 4 x 4 block minus its 4 corners (dist sqrt(4.5))
    circle = shape_mask("circle", 16.0, 16.0, 2.0)
    assert circle.sum() == 12 and not circle[14, 14] and circle[15, 15]
    # an upward triangle: the apex row is narrower than the base row
    tri = shape_mask("triangle", 16.0, 16.0, 4.0)
    assert tri[12:20].sum(axis=1)[0] < tri[12:20].sum(axis=1)[-1]
    with pytest.raises(ValueError, match="unknown shape 'star'"):
        shape_mask("star", 16.0, 16.0, 2.0)


def test_render_is_deterministic_and_shows_the_factors():
    f = Factors("red", "square", "large", "right")
    a, b = render(f, np.random.default_rng([0, 1])), render(f, np.random.default_rng([0, 1]))
    assert a.dtype == np.uint8 and a.shape == (32, 32, 3) and np.array_equal(a, b)
    # the shape's pixels are red (R high, G and B low), its centre is right of the middle, the corners grey
    assert a[16, 23, 0] > 180 and a[16, 23, 1] < 50 and a[16, 23, 2] < 50
    assert abs(int(a[0, 0, 0]) - int(a[0, 0, 1])) < 20
    images, captions = sample_images(["a small blue circle at the top"], 3, seed=5)
    again, _ = sample_images(["a small blue circle at the top"], 3, seed=5)
    assert images.shape == (3, 32, 32, 3) and captions == ["a small blue circle at the top"] * 3
    assert np.array_equal(images, again) and not np.array_equal(images[0], images[1])
    with pytest.raises(ValueError, match="not a shapes caption"):
        sample_images(["a cat"], 1, seed=0)


def test_metric_reads_ground_truth_images():
    prompts = train_prompts() + heldout_prompts()
    images, captions = sample_images(prompts, 3, seed=11)
    scores = fidelity(images, captions)
    assert scores.shape == (432,) and scores.min() == 1.0
    reading = read_image(sample_images(["a large green triangle on the left"], 1, seed=0)[0][0])
    assert (reading.colour, reading.shape, reading.size, reading.position) == ("green", "triangle", "large", "left")


def test_metric_on_wrong_images_is_low():
    images, captions = sample_images(train_prompts() + heldout_prompts(), 3, seed=12)
    shuffled = [captions[i] for i in np.random.default_rng(0).permutation(len(captions))]
    # images of random other combinations score about the chance level (1/6 + 1/3 + 1/2 + 1/4) / 4
    assert CHANCE == pytest.approx(0.3125)
    assert abs(fidelity(images, shuffled).mean() - CHANCE) < 0.05
    # one factor wrong by construction: 3 of 4 read correctly
    red_circle = sample_images(["a small red circle on the left"], 1, seed=0)[0][0]
    assert factor_hits(red_circle, Factors("blue", "circle", "small", "left")).tolist() == [0.0, 1.0, 1.0, 1.0]
    blank = np.full((2, 32, 32, 3), 40, np.uint8)  # grey: no shape at all
    assert fidelity(blank, ["a small red circle on the left"] * 2).tolist() == [0.0, 0.0]
    noise = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    assert fidelity(noise, ["a small red circle on the left"] * 8).mean() < 0.5
    with pytest.raises(ValueError, match="not a shapes caption"):
        fidelity(blank[:1], ["a cat"])
