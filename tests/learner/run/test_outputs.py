"""The training sample grid: labelled rows (step counts) and columns (the pairs' prompts)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from learner.run.outputs import RunOutputs


def test_sample_grid_is_labelled_with_step_counts_and_prompts(tmp_path):
    out = RunOutputs(tmp_path, "seed: 0\n", tensorboard=False)
    images = np.zeros((3, 2, 32, 32, 3), np.uint8)  # 3 pairs x (1-step, final)
    images[:, 1] = 255  # the final samples white, the 1-step ones black
    path = out.save_grid(images, 4, ["a red circle", "a blue square", "a green triangle"], 8)
    assert path == tmp_path / "samples" / "epoch_0004.png"
    grid = np.asarray(Image.open(path).convert("L"))
    cell = 96  # 32-pixel images upscaled 3x
    assert grid.shape[0] > 2 * cell and grid.shape[1] > 3 * cell  # room for the labels
    top, left = grid.shape[0] - 2 * (cell + 2), grid.shape[1] - 3 * (cell + 2)
    assert (grid[:top] < 128).any() and (grid[:, :left] < 128).any()  # text above the columns, left of the rows
    assert grid[top + cell // 2, left + cell // 2] == 0  # row 1: 1-step samples
    assert grid[top + cell + 2 + cell // 2, left + cell // 2] == 255  # row 2: the final ones
