"""Held-out step-generalization evaluation (learner/evaluation.py, learner/plots.py): the pieces on
the real tiny pipeline in-process (short real CLI runs for SDPO and DDPO:
tests/e2e/learner/driver/test_evaluation_e2e.py)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from actors.prompts import load_prompts
from learner.config import load_config
from learner.driver.config import EvalConfig
from learner.driver.evaluation import EvalResult, Evaluator, eval_set, evaluate_policy, heldout_seeds
from learner.run.plots import eval_step_counts, plot_reward_curves


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

    workers = [
        RolloutWorker(model=ModelConfig(tiny_cache_dir=tiny_cache), sampling=SamplingConfig(num_steps=4), seed=0)
        for _ in range(2)
    ]
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
        {
            "epoch": 1,
            "reward_1step_mean": -1.9,
            "reward_final_mean": -2.9,
            "eval_reward_1step_mean": -1.8,
            "eval_reward_8step_mean": -3.1,
        },
    ]
    assert eval_step_counts(history) == [1, 8]
    path = plot_reward_curves(history, tmp_path / "reward_curves.png")
    assert Image.open(path).size[0] > 400
    assert not list(tmp_path.glob(".*tmp*"))


def test_heldout_seeds_with_several_samples_per_prompt_keep_the_first():
    one, four = heldout_seeds(3, 5), heldout_seeds(3, 5, 4)
    assert len(four) == 20 and len(set(four)) == 20
    assert four[::4] == one  # sample 0 of prompt j: the seed it has with one sample per prompt
    assert four[:8] == heldout_seeds(3, 2, 4)  # prompt-major: more prompts append


def test_eval_grid_shows_the_first_sample_of_each_prompt(tmp_path):
    from learner.driver.evaluation import first_samples, save_eval_grid

    images = np.arange(2 * 6, dtype=np.uint8).reshape(2, 6, 1, 1, 1) * np.ones(
        (1, 1, 8, 8, 3), np.uint8
    )  # (K=2, 3 prompts x 2, 8, 8, 3)
    assert [int(i[0, 0, 0]) for i in first_samples(images[1], 3)] == [6, 8, 10]
    result = EvalResult([1, 2], images, np.zeros((2, 6)))
    path = save_eval_grid(
        result,
        ["a", "b", "c"],
        tmp_path / "grid.png",
        "epoch 0",
        initial=EvalResult([1, 2], images[:, ::2], np.zeros((2, 3))),
    )
    assert Image.open(path).size[0] > 3 * 8
