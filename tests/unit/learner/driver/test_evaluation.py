"""Held-out step-generalization evaluation (learner/evaluation.py, learner/plots.py): the pieces on
the real tiny pipeline in-process, and short real CLI runs for SDPO and DDPO (ray.enabled=false)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from actors.prompts import load_prompts
from learner.config import EvalConfig, load_config
from learner.driver.evaluation import EvalResult, Evaluator, eval_set, evaluate_policy, heldout_seeds
from learner.run.outputs import read_metrics
from learner.run.plots import eval_step_counts, plot_reward_curves
from tests.conftest import run_cli

SMALL = ["rollout.pairs_per_epoch=4", "rollout.chunk_size=2", "sampling.num_steps=4", "ray.enabled=false"]


def test_heldout_prompts_are_in_no_training_list():
    heldout = load_prompts("heldout_animals")
    assert len(heldout) == 8 and len(set(heldout)) == 8
    training_words = {w for src in ("simple_animals", "complex_animals") for p in load_prompts(src) for w in p.split()}
    assert not set(heldout) & training_words


def test_heldout_seeds_depend_on_seed_and_index_only():
    assert heldout_seeds(3, 4) == heldout_seeds(3, 6)[:4]
    assert len(set(heldout_seeds(3, 8))) == 8
    assert heldout_seeds(3, 4) != heldout_seeds(4, 4)


def test_eval_set_takes_the_first_prompts_each_repeated_prompt_major():
    prompts, samples, seeds = eval_set(EvalConfig(num_prompts=2, samples_per_prompt=3, seed=5), ["a", "b", "c"])
    assert prompts == ["a", "b"] and samples == ["a", "a", "a", "b", "b", "b"]
    assert seeds == heldout_seeds(5, 2, 3) and len(set(seeds)) == 6


def test_a_resumed_run_reads_the_initial_fidelity_from_an_older_initial_npz(tmp_path):
    """An eval/initial.npz saved before the pixel metric holds images but no factors: the resumed
    evaluator reads them from the pixels, so the initial fidelity is not lost."""
    from shapes.data import heldout_prompts, sample_images

    prompts = heldout_prompts()[:3]
    images, _ = sample_images(prompts, 1, seed=4)  # ground truth: every factor shown
    images[2] = 40  # a blank grey image: nothing shown
    (tmp_path / "eval").mkdir()
    EvalResult([1], images[None], np.full((1, 3), 0.5)).save(tmp_path / "eval" / "initial.npz")
    ev = Evaluator(EvalConfig(steps=(1,), num_prompts=3, samples_per_prompt=1), 4, None, None, tmp_path, prompts)
    ev.evaluate_initial(fresh=False)
    assert ev.initial_metrics["eval_fidelity_1step_mean"] == pytest.approx(2 / 3)
    assert ev.initial_metrics["eval_reward_1step_mean"] == 0.5


def test_eval_config_defaults_and_schedule():
    cfg = load_config("tiny").eval
    assert cfg.steps == (1, 2, 4, 8) and cfg.prompts == "heldout_animals" and cfg.num_prompts == 8
    ev = Evaluator(EvalConfig(every=3), 7, None, None, "/nonexistent", ["a"])
    assert [e for e in range(7) if ev.due(e)] == [2, 5, 6]  # every 3rd epoch, and the last
    off = Evaluator(EvalConfig(enabled=False), 7, None, None, "/nonexistent", ["a"])
    assert not any(off.due(e) for e in range(7))


@pytest.fixture(scope="module")
def local_workers(tiny_cache):
    from actors.batch import PolicyWeights
    from actors.config import ModelConfig, SamplingConfig
    from actors.policy import lora_state
    from actors.rollout_worker import RolloutWorker
    from plumbing.remote import LocalActor
    from rewards.server import RewardServer

    workers = [RolloutWorker(model=ModelConfig(tiny_cache_dir=tiny_cache), sampling=SamplingConfig(num_steps=4), seed=0) for _ in range(2)]
    for w in workers:
        w.set_weights(PolicyWeights(0, lora_state(w.pipe.unet)))
    return [LocalActor(w) for w in workers], [LocalActor(RewardServer(name="jpeg_compressibility"))]


def test_evaluate_policy_shapes_scores_and_actor_independence(local_workers):
    from rewards.jpeg import jpeg_size_kb
    from rewards.pool import RewardPool

    rollouts, servers = local_workers
    prompts, seeds = ["hedgehog", "walrus", "parrot"], heldout_seeds(0, 3)
    two = evaluate_policy(rollouts, RewardPool(servers, 32, 60, 0), prompts, seeds, [1, 2, 4])
    assert two.images.shape == (3, 3, 64, 64, 3) and two.images.dtype == np.uint8
    assert two.rewards.shape == (3, 3)
    np.testing.assert_allclose(two.rewards, -jpeg_size_kb(two.images.reshape(-1, 64, 64, 3)).reshape(3, 3))
    one = evaluate_policy(rollouts[:1], RewardPool(servers, 2, 60, 0), prompts, seeds, [1, 2, 4])
    assert np.array_equal(one.images, two.images)  # which actor drew which prompt does not matter
    m = two.metrics()
    assert m["eval_reward_2step_mean"] == pytest.approx(two.rewards[1].mean())
    assert m["eval_reward_4step_std"] == pytest.approx(two.rewards[2].std())
    assert m["eval_rewards_missing"] == 0


def test_reward_curves_plot(tmp_path):
    history = [
        {"epoch": 0, "reward_1step_mean": -2.0, "reward_final_mean": -3.0},
        {"epoch": 1, "reward_1step_mean": -1.9, "reward_final_mean": -2.9, "eval_reward_1step_mean": -1.8, "eval_reward_8step_mean": -3.1},
    ]
    assert eval_step_counts(history) == [1, 8]
    path = plot_reward_curves(history, tmp_path / "reward_curves.png")
    assert Image.open(path).size[0] > 400
    assert not list(tmp_path.glob(".*tmp*"))


@pytest.fixture(scope="module")
def sdpo_run(tiny_cache, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("eval") / "run"
    res = run_cli(
        "--epochs", "2", "--run-dir", str(run_dir), f"model.tiny_cache_dir={tiny_cache}", *SMALL,
        "eval.every=1", "eval.steps=[1,2]", "eval.num_prompts=3",
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "held-out eval of v2: 1-step" in res.stdout
    return run_dir


def test_eval_metrics_in_metrics_jsonl(sdpo_run):
    metrics = read_metrics(sdpo_run)
    assert [m["epoch"] for m in metrics] == [0, 1]
    for m in metrics:
        for k in (1, 2):
            assert np.isfinite(m[f"eval_reward_{k}step_mean"]) and m[f"eval_reward_{k}step_std"] >= 0
        assert "eval_reward_4step_mean" not in m
        assert m["eval_policy_version"] == m["weights_version"] + 1  # the policy after this epoch's update
        assert m["eval_rewards_missing"] == 0
    assert metrics[0]["eval_reward_1step_mean"] != metrics[1]["eval_reward_1step_mean"]  # the policy moved


def test_eval_grids_reward_curves_and_tensorboard(sdpo_run):
    grids = sorted((sdpo_run / "eval").glob("epoch_*.png"))
    assert [g.name for g in grids] == ["epoch_0000.png", "epoch_0001.png"]
    width, height = Image.open(grids[0]).size  # labelled; columns: 3 prompts, rows: initial and epoch per step count
    assert 3 * 130 < width < 3 * 130 + 200 and 4 * 130 < height < 4 * 130 + 60  # 64 px images shown at 128 px
    assert (sdpo_run / "eval" / "initial.npz").exists() and (sdpo_run / "eval" / "initial.png").exists()
    assert (sdpo_run / "reward_curves.png").stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(sdpo_run / "tensorboard"))
    events.Reload()
    assert {"eval_reward_1step_mean", "eval_reward_2step_std"} <= set(events.Tags()["scalars"])


def test_ddpo_runs_end_to_end(tiny_cache, tmp_path):
    """algorithm=ddpo through the real CLI: the same actors, rewards and learner; the default eval
    (8 held-out prompts at 1, 2, 4, 8 steps) after the last epoch."""
    run_dir = tmp_path / "ddpo"
    res = run_cli("--epochs", "2", "--run-dir", str(run_dir), f"model.tiny_cache_dir={tiny_cache}", *SMALL, "algorithm=ddpo")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert res.stdout.startswith("DDPO: 2 epochs")
    metrics = read_metrics(run_dir)
    assert [m["epoch"] for m in metrics] == [0, 1]
    for m in metrics:
        assert np.isfinite(m["loss"]) and m["ratio_first_pass"] == pytest.approx(1.0, abs=1e-6)
        assert m["reward_queries"] == 2 * m["pairs"]  # ddpo-pytorch's: the final x_T of each trajectory
        assert "reward_1step_mean" not in m and np.isfinite(m["reward_final_mean"])
    assert "eval_reward_1step_mean" not in metrics[0]  # eval.every = 5: only after the last epoch
    assert all(np.isfinite(metrics[1][f"eval_reward_{k}step_mean"]) for k in (1, 2, 4, 8))
    assert json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])["epoch"] == 1
    assert (run_dir / "reward_curves.png").exists() and (run_dir / "eval" / "epoch_0001.png").exists()


def test_bad_eval_prompts_exit_2(tmp_path):
    res = run_cli("--run-dir", str(tmp_path / "x"), "ray.enabled=false", "eval.prompts=/no/such/file.txt")
    assert res.returncode == 2
    assert "eval.prompts: '/no/such/file.txt' is neither a built-in list" in res.stderr


def test_eval_disabled_runs_without_eval_or_its_prompts(tiny_cache, tmp_path):
    res = run_cli(
        "--epochs", "1", "--run-dir", str(tmp_path / "off"), f"model.tiny_cache_dir={tiny_cache}", *SMALL,
        "eval.enabled=false", "eval.prompts=/no/such/file.txt",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    (m,) = read_metrics(tmp_path / "off")
    assert not any(k.startswith("eval_") for k in m)
    assert not (tmp_path / "off" / "eval").exists() and (tmp_path / "off" / "reward_curves.png").exists()


def test_heldout_seeds_with_several_samples_per_prompt_keep_the_first():
    one, four = heldout_seeds(3, 5), heldout_seeds(3, 5, 4)
    assert len(four) == 20 and len(set(four)) == 20
    assert four[::4] == one  # sample 0 of prompt j: the seed it has with one sample per prompt
    assert four[:8] == heldout_seeds(3, 2, 4)  # prompt-major: more prompts append


def test_eval_grid_shows_the_first_sample_of_each_prompt(tmp_path):
    from learner.driver.evaluation import first_samples, save_eval_grid

    images = np.arange(2 * 6, dtype=np.uint8).reshape(2, 6, 1, 1, 1) * np.ones((1, 1, 8, 8, 3), np.uint8)  # (K=2, 3 prompts x 2, 8, 8, 3)
    assert [int(i[0, 0, 0]) for i in first_samples(images[1], 3)] == [6, 8, 10]
    result = EvalResult([1, 2], images, np.zeros((2, 6)))
    path = save_eval_grid(result, ["a", "b", "c"], tmp_path / "grid.png", "epoch 0", initial=EvalResult([1, 2], images[:, ::2], np.zeros((2, 3))))
    assert Image.open(path).size[0] > 3 * 8


def test_a_damaged_or_mismatched_initial_evaluation_is_left_out_on_resume(tiny_cache, tmp_path):
    """A resumed run reads the initial policy's evaluation back from eval/initial.npz. Damaged (not a
    zip) or made with other eval settings (more or fewer held-out prompts), it is left out with one
    warning line: the run finishes, and no grid row is labelled 'initial' under another prompt."""
    import shutil

    run_dir = tmp_path / "run"
    base = ["--run-dir", str(run_dir), f"model.tiny_cache_dir={tiny_cache}", *SMALL, "eval.every=1", "eval.num_prompts=3",
            "eval.steps=[1]", "output.tensorboard=false"]
    assert run_cli("--epochs", "1", *base).returncode == 0
    initial = run_dir / "eval" / "initial.npz"
    shutil.copy(initial, tmp_path / "initial.npz")
    initial.write_bytes(b"not a zip file")
    res = run_cli("--epochs", "2", *base)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"warning: {initial} is damaged (" in res.stdout and "Traceback" not in res.stderr
    shutil.copy(tmp_path / "initial.npz", initial)
    for prompts in ("5", "2"):  # more held-out prompts, then fewer
        res = run_cli("--epochs", "4" if prompts == "5" else "5", *base, f"eval.num_prompts={prompts}")
        assert res.returncode == 0, res.stderr[-3000:]
        assert "eval settings changed on resume" in res.stdout and "Traceback" not in res.stderr
