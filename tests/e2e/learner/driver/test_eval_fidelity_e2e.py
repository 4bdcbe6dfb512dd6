"""The default job (SDPO on the shapes model with the learned reward) through the real CLI: its config,
and one epoch on Ray with the held-out pixel metric beside the reward, rechecked by learner.evaluate.
(The metric, the labelled grids and the curves in-process: tests/unit/learner/driver/test_eval_fidelity.py.)"""

from __future__ import annotations

import json
import subprocess
import sys

import yaml
from PIL import Image

from learner.run.outputs import read_metrics
from shapes.fidelity import CHANCE
from tests.conftest import REPO, cli_env


def test_the_default_config_is_the_shapes_job():
    res = subprocess.run(
        [sys.executable, "-m", "learner.main", "--print-config"],
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    cfg = yaml.safe_load(res.stdout)
    assert cfg["name"] == "shapes" and cfg["algorithm"] == "sdpo" and cfg["model"]["pretrained"] == "shapes-turbo"
    assert cfg["reward"]["name"] == "shapes_classifier" and cfg["prompts"]["source"] == "shapes_train"
    assert cfg["reward"]["options"] == {"shapes_classifier": {"factors": "colour,shape,size"}}
    assert cfg["layout"] == "hybrid" and cfg["learner"]["num_workers"] == 2 and cfg["rollout"]["num_actors"] == 0
    assert cfg["eval"]["prompts"] == "shapes_heldout" and cfg["eval"]["steps"] == [1, 2, 4, 8]


def test_default_job_on_ray_reports_fidelity_beside_the_learned_reward(tmp_path):
    run_dir = tmp_path / "run"
    args = [
        "--epochs",
        "1",
        "--run-dir",
        str(run_dir),
        "rollout.pairs_per_epoch=4",
        "rollout.chunk_size=2",
        "eval.num_prompts=4",
        "eval.steps=[1,8]",
        "ray.num_cpus=2",
    ]
    res = subprocess.run(
        [sys.executable, "-m", "learner.main", *args],
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
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
    recheck = subprocess.run(
        [sys.executable, "-m", "learner.evaluate", str(run_dir)],
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert recheck.returncode == 0, recheck.stdout[-3000:] + recheck.stderr[-3000:]
    report = json.loads((run_dir / "eval" / "recheck-epoch-000001-seed-1234.json").read_text())
    for k in (1, 8):
        for key in (f"eval_fidelity_{k}step_mean", f"eval_reward_{k}step_mean"):
            assert report["trained"][key] == m[key] and report["initial"][key] == initial[key]
    assert (
        f"fidelity {initial['eval_fidelity_1step_mean']:.4f} -> {m['eval_fidelity_1step_mean']:.4f}" in recheck.stdout
    )
    other = subprocess.run(
        [sys.executable, "-m", "learner.evaluate", str(run_dir), "eval.seed=7", "eval.steps=[1]"],
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert other.returncode == 0, other.stdout[-3000:] + other.stderr[-3000:]
    report7 = json.loads((run_dir / "eval" / "recheck-epoch-000001-seed-7.json").read_text())
    assert (
        report7["eval"]["seed"] == 7
        and report7["initial"]["eval_reward_1step_mean"] != initial["eval_reward_1step_mean"]
    )
    assert (run_dir / "eval" / "recheck-epoch-000001-seed-7.png").is_file()
