"""The replication's design and its pure parts (benchmarks/learning.py): each arm's resolved config,
the sweep's selection rule, and the report on hand-made runs (nothing is trained here)."""

from __future__ import annotations

import pytest

from benchmarks.learning import (
    ARMS,
    CONFIG,
    EPOCHS,
    LR_GRID,
    PAIRS_PER_EPOCH,
    SEEDS,
    STEPS,
    SWEEP_SEED,
    chosen_rates,
    overrides,
    report,
    run_name,
    training_score,
)
from learner.config import load_config


def test_the_design_as_stated():
    assert EPOCHS * PAIRS_PER_EPOCH * 2 >= 12_288 and len(SEEDS) >= 5 and SWEEP_SEED not in SEEDS
    cfgs = {arm: load_config(CONFIG, overrides("main", arm, 1e-4, 0)) for arm in ARMS}
    for cfg in cfgs.values():  # the common part: the few-step student, the controllable reward, T = 8 at eta = 1
        assert cfg.model.pretrained == "shapes-turbo" and cfg.sampling.num_steps == 8 and cfg.sampling.eta == 1.0
        assert cfg.reward.name == "shapes_classifier" and cfg.reward.options == {
            "shapes_classifier": {"factors": "colour,shape,size"}
        }
        assert cfg.eval.prompts == "shapes_heldout" and cfg.eval.num_prompts == 24 and not cfg.ray.enabled
        assert (
            cfg.eval.seed not in SEEDS
            and cfg.train.learning_rate == 1e-4
            and cfg.rollout.pairs_per_epoch == PAIRS_PER_EPOCH
        )
    sdpo, ddpo, stepwise = cfgs["sdpo"], cfgs["ddpo"], cfgs["ddpo_stepwise"]
    assert (sdpo.algorithm, sdpo.train.schedule, sdpo.sampling.reward_queries, sdpo.train.skip_last_step) == (
        "sdpo",
        "step_shuffled",
        "anchors",
        True,
    )
    assert (ddpo.algorithm, ddpo.train.schedule, ddpo.sampling.reward_queries, ddpo.train.skip_last_step) == (
        "ddpo",
        "trajectory",
        "final",
        False,
    )
    assert (stepwise.algorithm, stepwise.train.schedule, stepwise.sampling.reward_queries) == (
        "ddpo",
        "step_shuffled",
        "final",
    )
    # ddpo-pytorch's 2 optimizer steps per epoch, each all 8 timesteps of 32 pairs; SDPO's schedule 64 items a step
    assert (
        ddpo.optimizer_steps_per_epoch == 2
        and ddpo.samples_per_optimizer_step == 32 * 8
        and ddpo.train.clip_range == 1e-4
    )
    assert sdpo.samples_per_optimizer_step == stepwise.samples_per_optimizer_step == 64
    assert (
        sdpo.optimizer_steps_per_epoch == 7 and stepwise.optimizer_steps_per_epoch == 8
    )  # 64 pairs x 7 or 8 trained steps / 64
    for cfg in cfgs.values():  # pinned, not the default job's (hybrid, 2 ranks): the recorded runs stay valid
        assert cfg.layout == "disaggregated" and cfg.rollout.num_actors == 2 and cfg.learner.num_workers == 1
    control = load_config(CONFIG, overrides("control", "sdpo", 1e-4, 0))
    assert control.reward.name == "jpeg_compressibility" and control.reward.options == {}


def test_sweep_selects_by_the_training_reward_of_the_final_sample():
    # 8 epochs: the last quarter is epochs 6 and 7, mean final reward (0.4 + 0.6) / 2 = 0.5; the 1-step reward does not
    # count
    history = [{"epoch": e, "reward_final_mean": 0.0, "reward_1step_mean": 9.0} for e in range(6)]
    history += [{"epoch": 6, "reward_final_mean": 0.4}, {"epoch": 7, "reward_final_mean": 0.6}]
    assert training_score(history) == pytest.approx(0.5)
    runs = [
        {
            "phase": "sweep",
            "arm": arm,
            "learning_rate": lr,
            "seed": SWEEP_SEED,
            "history": [{"epoch": 0, "reward_final_mean": score}],
        }
        for arm in ARMS
        for lr, score in zip(LR_GRID, (0.1, 0.3, 0.2, 0.0))
    ]
    assert chosen_rates(runs) == {arm: LR_GRID[1] for arm in ARMS}
    assert chosen_rates(runs[1:]) == {
        arm: LR_GRID[1] for arm in list(ARMS)[1:]
    }  # an arm with a missing grid point has no choice yet


def fake_run(phase, arm, lr, seed, gain, initial):
    evals = {f"eval_{w}_{k}step_mean": initial + gain + 0.001 * seed for w in ("reward", "fidelity") for k in STEPS}
    return {
        "phase": phase,
        "arm": arm,
        "learning_rate": lr,
        "seed": seed,
        "wall_s": 1.0,
        "initial": {f"eval_{w}_{k}step_mean": initial for w in ("reward", "fidelity") for k in STEPS},
        "history": [{"epoch": 0, "reward_final_mean": 0.5}, {"epoch": EPOCHS - 1, "reward_final_mean": 0.6, **evals}],
    }


def test_report_reaches_the_decision_and_lists_missing_runs(tmp_path):
    sweep = [fake_run("sweep", a, lr, SWEEP_SEED, 0.0, 0.5) for a in ARMS for lr in LR_GRID]
    lr = LR_GRID[0]  # every grid point ties: max keeps the first
    gains = {"sdpo": 0.10, "ddpo": 0.02, "ddpo_stepwise": 0.03}
    main = [
        fake_run("main", a, lr, s, gains[a] + (0.004 if a == "sdpo" and s % 2 else 0.0), 0.5)
        for s in SEEDS[:3]
        for a in ARMS
    ]
    control = [
        fake_run("control", a, lr, 0, 1.0, -3.0) for a in ARMS
    ]  # first in the list: its own reward's initial policy
    out = report(control + sweep + main, tmp_path / "fig.png")
    assert out["initial"]["reward_1step"] == 0.5
    assert out["decision"]["per_step_count"][1]["sdpo_gain"] == pytest.approx(
        (0.600 + 0.605 + 0.602) / 3 - 0.5, abs=1e-4
    )
    assert out["control"]["sdpo"]["reward_1step_gain"]["mean"] == pytest.approx(1.0)
    assert out["chosen_learning_rate"] == {a: lr for a in ARMS}
    assert out["paired_seeds"] == list(SEEDS[:3]) and out["decision"]["verdict"].startswith("confirmed")
    assert "provisional" in out["decision"]["verdict"]
    assert (
        run_name("main", "sdpo", lr, 4) in out["missing_runs"]
        and run_name("control", "ddpo", lr, 1) in out["missing_runs"]
    )
    assert out["final"]["sdpo"]["reward_1step"]["per_seed"] == [0.6, 0.605, 0.602]
    assert (tmp_path / "fig.png").stat().st_size > 10_000
    partial = report(sweep[:-1], None)  # an incomplete sweep: no choice for its arm, nothing decided
    assert "decision" not in partial and any("sweep is not complete" in m for m in partial["missing_runs"])
