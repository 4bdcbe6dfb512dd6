"""The held-out pixel metric in the evaluation and the initial policy beside the trained one (labelled
grids, curves from epoch -1). The default job itself (SDPO on the shapes model with the learned reward)
runs in tests/e2e/learner/driver/test_eval_fidelity_e2e.py."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from learner.driver.evaluation import EvalResult, is_shapes_prompt_list, save_eval_grid
from learner.run.grids import write_labelled_grid
from learner.run.plots import plot_reward_curves
from shapes.data import heldout_prompts, sample_images


def _result(images: np.ndarray, steps=(1, 2)) -> EvalResult:
    K, N = len(steps), images.shape[0] // len(steps)
    factors = np.ones((K, N, 4))
    factors[..., 3] = 0  # position never shown: fidelity 0.75 everywhere
    factors[0, 0, 0] = 0  # one 1-step image in the wrong colour
    return EvalResult(list(steps), images.reshape(K, N, 32, 32, 3), np.linspace(0, 1, K * N).reshape(K, N), factors)


def test_fidelity_metrics_and_saved_result_round_trip(tmp_path):
    images, _ = sample_images(heldout_prompts()[:3], 2, seed=0)  # (6, 32, 32, 3)
    result = _result(images)
    m = result.metrics()
    assert (
        m["eval_fidelity_1step_mean"] == pytest.approx((0.5 + 0.75 + 0.75) / 3)
        and m["eval_fidelity_2step_mean"] == 0.75
    )
    assert m["eval_fidelity_2step_std"] == 0.0
    assert m["eval_fidelity_1step_colour"] == pytest.approx(2 / 3) and m["eval_fidelity_1step_shape"] == 1.0
    assert m["eval_fidelity_2step_position"] == 0.0 and m["eval_fidelity_2step_colour"] == 1.0
    assert m["eval_reward_2step_mean"] == pytest.approx(np.linspace(0, 1, 6)[3:].mean())
    result.save(tmp_path / "initial.npz")
    back = EvalResult.load(tmp_path / "initial.npz")
    assert (
        back.steps == [1, 2]
        and np.array_equal(back.images, result.images)
        and np.array_equal(back.fidelity, result.fidelity)
    )
    plain = EvalResult([1], result.images[:1], result.rewards[:1])
    assert not any(k.startswith("eval_fidelity") for k in plain.metrics())
    assert is_shapes_prompt_list(heldout_prompts()) and not is_shapes_prompt_list(["hedgehog", *heldout_prompts()])
    assert not is_shapes_prompt_list([])


def test_labelled_grid_puts_the_initial_row_before_each_trained_row(tmp_path):
    images, _ = sample_images(heldout_prompts()[:3], 2, seed=0)
    trained, initial = _result(images), _result(images[::-1].copy())
    path = save_eval_grid(trained, heldout_prompts()[:3], tmp_path / "grid.png", "epoch 3", initial)
    grid = np.asarray(Image.open(path))
    # 32 px images are shown at 96 px: 4 rows (initial 1, epoch 1, initial 2, epoch 2) of 96 + 2 px under the labels
    assert grid.shape[0] - 4 * 98 in range(6, 60)
    top, left = grid.shape[0] - 4 * 98, grid.shape[1] - 3 * 98
    cell = grid[top : top + 96, left : left + 96]  # row 0, column 0: the initial policy's 1-step image, upscaled x3
    assert np.array_equal(cell[::3, ::3], initial.images[0, 0])
    cell = grid[top + 98 : top + 98 + 96, left : left + 96]  # row 1: the trained policy's
    assert np.array_equal(cell[::3, ::3], trained.images[0, 0])
    assert grid[:top, left:].min() < 100  # column labels are drawn (dark text on white)
    with pytest.raises(ValueError, match="row and"):
        write_labelled_grid(trained.images, ["only one"], ["a", "b", "c"], tmp_path / "bad.png")


def test_reward_curves_with_fidelity_and_the_initial_policy(tmp_path):
    history = [
        {
            "epoch": 0,
            "reward_1step_mean": 0.3,
            "reward_final_mean": 0.4,
            "eval_reward_1step_mean": 0.5,
            "eval_fidelity_1step_mean": 0.6,
        }
    ]
    initial = {"eval_reward_1step_mean": 0.4, "eval_fidelity_1step_mean": 0.5}
    path = plot_reward_curves(history, tmp_path / "curves.png", initial=initial)
    wide = Image.open(path).size[0]
    plain = plot_reward_curves(
        [{"epoch": 0, "reward_1step_mean": 0.3, "reward_final_mean": 0.4}], tmp_path / "plain.png"
    )
    assert wide > Image.open(plain).size[0]  # a third panel: the pixel fidelity
