"""The training sample grid: labelled rows (step counts) and columns (the pairs' prompts)."""

from __future__ import annotations

import json

import numpy as np
import pytest
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


def test_wandb_online_without_an_api_key_is_refused_before_any_work(tmp_path):
    """output.wandb online needs WANDB_API_KEY or a ~/.netrc entry for the W&B host; offline does not."""
    pytest.importorskip("wandb")
    from learner.run.config import WandbConfig
    from learner.run.wandb_log import api_key_present, check_wandb
    from plumbing.errors import UsageError

    none = {"NETRC": str(tmp_path / "no-netrc")}
    assert not api_key_present(none) and api_key_present({"WANDB_API_KEY": "k"})
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "a" * 40 + "\n")
    netrc.chmod(0o600)
    assert api_key_present({"NETRC": str(netrc)})
    with pytest.raises(UsageError, match="^output.wandb: no W&B API key"):
        check_wandb(WandbConfig(enabled=True), none)
    check_wandb(WandbConfig(enabled=True, mode="offline"), none)
    check_wandb(WandbConfig(enabled=True), none | {"WANDB_MODE": "offline"})


def test_damaged_or_foreign_metrics_lines_are_skipped_and_reported(tmp_path, capsys):
    """Binary bytes, a torn line, a record with a negative or missing epoch: read_metrics skips them, and
    a resume's rewrite drops them saying how many (and drops, saying so, the epochs it redoes)."""
    from learner.run.outputs import keep_metrics_before, read_metrics

    path = tmp_path / "metrics.jsonl"
    good = [json.dumps({"epoch": e, "loss": 0.5}) for e in range(3)]
    path.write_bytes(
        ("\n".join([good[0], '{"epoch": -3}', good[1], '{"loss": 1}']) + "\n").encode()
        + b"\xff\xfe binary \x00\n"
        + (good[2] + "\n").encode()
        + b'{"epoch": 3, "lo'
    )
    assert [r["epoch"] for r in read_metrics(tmp_path)] == [0, 1, 2]
    keep_metrics_before(path, 2)
    out = capsys.readouterr().out
    assert (
        "dropped 4 line(s) that are not this run's records" in out and "dropped 1 record(s) of epoch 2 or later" in out
    )
    assert path.read_text().splitlines() == good[:2]
