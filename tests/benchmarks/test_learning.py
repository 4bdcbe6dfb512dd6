"""The pure parts of the shapes learning benchmark (benchmarks/learning.py)."""

from __future__ import annotations

import json

import pytest

from benchmarks.learning import (ADAPTERS, BUDGET, CONFIG, EPOCHS, QUERIES_PER_TRAJECTORY, REPO, SWEEP, as_record, at_epoch, summarize,
                                 training_score)
from learner.config import load_config


def test_sweep_selects_by_training_reward_over_the_last_quarter():
    # 8 epochs: the last quarter is epochs 6 and 7; mean of (1-step + final) / 2 = ((0.2 + 0.4) / 2 + (0.4 + 0.6) / 2) / 2 = 0.4
    history = [{"epoch": e, "reward_1step_mean": 0.0, "reward_final_mean": 0.0} for e in range(6)]
    history += [{"epoch": 6, "reward_1step_mean": 0.2, "reward_final_mean": 0.4}, {"epoch": 7, "reward_1step_mean": 0.4, "reward_final_mean": 0.6}]
    assert training_score(history) == pytest.approx(0.4)
    assert at_epoch(history, 6)["reward_1step_mean"] == 0.2
    assert summarize([0.5, 0.7]) == {"mean": 0.6, "std": 0.1, "per_seed": [0.5, 0.7]}


def test_each_algorithm_has_its_own_grid_and_sdpo_queries_three_times_per_trajectory():
    assert set(SWEEP) == {"sdpo", "ddpo"} and all(len(grid) >= 2 for grid in SWEEP.values())
    assert SWEEP["sdpo"] != SWEEP["ddpo"]
    for grid in SWEEP.values():  # every LoRA placement at every learning rate, one clip range per algorithm
        assert {a for _, _, a in grid} == set(ADAPTERS) and len({c for _, c, _ in grid}) == 1
        assert len(set(grid)) == len({lr for lr, _, _ in grid}) * len(ADAPTERS)
    assert as_record(SWEEP["sdpo"][0]) == {"learning_rate": 1e-3, "clip_range": 1e-2, "lora_adapters": "attention"}
    assert QUERIES_PER_TRAJECTORY == {"sdpo": 3, "ddpo": 1}  # so DDPO runs 3x the epochs for equal queries


def test_the_budget_is_the_committed_results_not_the_default_jobs():
    cfg, default_job = load_config(CONFIG, BUDGET), load_config(CONFIG)
    assert (cfg.rollout.pairs_per_epoch, cfg.train.batch_size * cfg.train.gradient_accumulation_steps) == (32, 32)
    assert cfg.train.micro_batch_size == 32 and not cfg.train.skip_last_step and cfg.sampling.num_steps == 8
    assert default_job.train.skip_last_step and default_job.rollout.pairs_per_epoch != cfg.rollout.pairs_per_epoch
    committed = json.loads((REPO / "benchmarks" / "results" / "learning_shapes.json").read_text())
    assert committed["epochs_sdpo"] == EPOCHS and committed["epochs_ddpo"] == 3 * EPOCHS
