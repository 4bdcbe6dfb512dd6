"""The console's epoch line: throughput and ETA, from hand-worked values."""

from __future__ import annotations

import math

import pytest

from learner.run.progress import Progress, TimeBreakdown, eta_seconds, format_duration


@pytest.mark.parametrize(
    "seconds, text",
    [
        (0, "0:00"),
        (59.4, "0:59"),
        (59.6, "1:00"),
        (61, "1:01"),
        (3599, "59:59"),
        (3600, "1:00:00"),
        (7384, "2:03:04"),
        (-5, "0:00"),
    ],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_eta_is_the_mean_epoch_time_times_the_epochs_left():
    assert eta_seconds(30.0, 3, 7) == pytest.approx(70.0)  # 10 s per epoch, 7 to go
    assert eta_seconds(12.0, 4, 0) == 0.0
    assert math.isnan(eta_seconds(0.0, 0, 5))


def test_epoch_line_of_a_resumed_run_counts_only_this_attempts_epochs():
    now = [100.0]
    progress = Progress(first_epoch=4, epochs=10, clock=lambda: now[0])
    metrics = {
        "weights_version": 5,
        "reward_1step_mean": 0.5,
        "reward_final_mean": 0.75,
        "loss": -0.125,
        "time_epoch_s": 4.0,
        "pairs": 8,
    }
    now[0] = 112.0  # epochs 4 and 5 took 12 s together: 6 s each, 4 epochs (6..9) left
    line = progress.epoch_line(5, metrics)
    assert line.startswith("epoch 6/10  v5  reward 1-step 0.5000  final 0.7500  loss -0.1250  4.0s")
    assert "2.00 pairs/s" in line  # 8 pairs in the epoch's 4.0 s
    assert line.endswith("ETA 0:24")


def test_time_breakdown_hand_worked():
    """A 100 s run: 12 s start-up, 5 + 3 s evaluations, two epochs of 30 s (rollout 10, reward 2,
    update 15, 3 s else each), a 1 s checkpoint; the remaining 19 s are 'other'."""
    now = [0.0]
    breakdown = TimeBreakdown(clock=lambda: now[0])
    now[0] = 12.0
    breakdown.add("start-up", breakdown.elapsed())
    breakdown.add("evaluation", 5.0)
    for _ in range(2):
        breakdown.add_epoch({"time_rollout_s": 10.0, "time_reward_s": 2.0, "time_update_s": 15.0, "time_epoch_s": 30.0})
    breakdown.add("evaluation", 3.0)
    breakdown.add("checkpoints", 1.0)
    now[0] = 100.0
    assert breakdown.line() == (
        "time: 1:40 in all: start-up 12 s, evaluation 8 s, rollout 20 s, reward 4 s, update 30 s, epoch other 6 s, "
        "checkpoints 1 s, other 19 s"
    )
