"""The held-out pixel metric in the evaluation, the initial policy beside the trained one (labelled
grids, curves from epoch -1), and the default job: SDPO on the shapes model with the learned reward."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml
from PIL import Image

from learner.driver.evaluation import EvalResult, is_shapes_prompt_list, save_eval_grid
from learner.run.grids import write_labelled_grid
from learner.run.outputs import read_metrics
from learner.run.plots import plot_reward_curves
from shapes.data import heldout_prompts, sample_images
from shapes.fidelity import CHANCE
from tests.conftest import REPO, cli_env


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
    assert m["eval_fidelity_1step_mean"] == pytest.approx((0.5 + 0.75 + 0.75) / 3) and m["eval_fidelity_2step_mean"] == 0.75
    assert m["eval_fidelity_2step_std"] == 0.0
    assert m["eval_fidelity_1step_colour"] == pytest.approx(2 / 3) and m["eval_fidelity_1step_shape"] == 1.0
    assert m["eval_fidelity_2step_position"] == 0.0 and m["eval_fidelity_2step_colour"] == 1.0
    assert m["eval_reward_2step_mean"] == pytest.approx(np.linspace(0, 1, 6)[3:].mean())
    result.save(tmp_path / "initial.npz")
    back = EvalResult.load(tmp_path / "initial.npz")
    assert back.steps == [1, 2] and np.array_equal(back.images, result.images) and np.array_equal(back.fidelity, result.fidelity)
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
    history = [{"epoch": 0, "reward_1step_mean": 0.3, "reward_final_mean": 0.4, "eval_reward_1step_mean": 0.5, "eval_fidelity_1step_mean": 0.6}]
    initial = {"eval_reward_1step_mean": 0.4, "eval_fidelity_1step_mean": 0.5}
    path = plot_reward_curves(history, tmp_path / "curves.png", initial=initial)
    wide = Image.open(path).size[0]
    plain = plot_reward_curves([{"epoch": 0, "reward_1step_mean": 0.3, "reward_final_mean": 0.4}], tmp_path / "plain.png")
    assert wide > Image.open(plain).size[0]  # a third panel: the pixel fidelity


def test_the_default_config_is_the_shapes_job():
    res = subprocess.run([sys.executable, "-m", "learner.main", "--print-config"], cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    cfg = yaml.safe_load(res.stdout)
    assert cfg["name"] == "shapes" and cfg["algorithm"] == "sdpo" and cfg["model"]["pretrained"] == "shapes-turbo"
    assert cfg["reward"]["name"] == "shapes_classifier" and cfg["prompts"]["source"] == "shapes_train"
    assert cfg["reward"]["options"] == {"shapes_classifier": {"factors": "colour,shape,size"}}
    assert cfg["layout"] == "hybrid" and cfg["learner"]["num_workers"] == 2 and cfg["rollout"]["num_actors"] == 0
    assert cfg["eval"]["prompts"] == "shapes_heldout" and cfg["eval"]["steps"] == [1, 2, 4, 8]


@pytest.mark.e2e
def test_default_job_on_ray_reports_fidelity_beside_the_learned_reward(tmp_path):
    run_dir = tmp_path / "run"
    args = ["--epochs", "1", "--run-dir", str(run_dir), "rollout.pairs_per_epoch=4", "rollout.chunk_size=2", "eval.num_prompts=4",
            "eval.steps=[1,8]", "ray.num_cpus=2"]
    res = subprocess.run([sys.executable, "-m", "learner.main", *args], cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "held-out eval of the initial policy: 1-step" in res.stdout and "fidelity" in res.stdout
    (m,) = read_metrics(run_dir)
    for k in (1, 8):
        assert 0 <= m[f"eval_fidelity_{k}step_mean"] <= 1 and 0 <= m[f"eval_reward_{k}step_mean"] <= 1
    initial = json.loads((run_dir / "eval" / "initial.json").read_text())
    assert initial["eval_fidelity_8step_mean"] > CHANCE  # the pretrained model draws its prompts at 8 steps
    assert Image.open(run_dir / "eval" / "epoch_0000.png").size[1] > 4 * 96

    # python -m learner.evaluate: with the run's own eval settings it reproduces the run's numbers (in
    # one process, from the checkpoint); with another noise seed it measures on other noises.
    recheck = subprocess.run([sys.executable, "-m", "learner.evaluate", str(run_dir)], cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert recheck.returncode == 0, recheck.stdout[-3000:] + recheck.stderr[-3000:]
    report = json.loads((run_dir / "eval" / "recheck-epoch-000001-seed-1234.json").read_text())
    for k in (1, 8):
        for key in (f"eval_fidelity_{k}step_mean", f"eval_reward_{k}step_mean"):
            assert report["trained"][key] == m[key] and report["initial"][key] == initial[key]
    assert f"fidelity {initial['eval_fidelity_1step_mean']:.4f} -> {m['eval_fidelity_1step_mean']:.4f}" in recheck.stdout
    other = subprocess.run([sys.executable, "-m", "learner.evaluate", str(run_dir), "eval.seed=7", "eval.steps=[1]"], cwd=REPO, env=cli_env(),
                           capture_output=True, text=True, timeout=300)
    assert other.returncode == 0, other.stdout[-3000:] + other.stderr[-3000:]
    report7 = json.loads((run_dir / "eval" / "recheck-epoch-000001-seed-7.json").read_text())
    assert report7["eval"]["seed"] == 7 and report7["initial"]["eval_reward_1step_mean"] != initial["eval_reward_1step_mean"]
    assert (run_dir / "eval" / "recheck-epoch-000001-seed-7.png").is_file()
