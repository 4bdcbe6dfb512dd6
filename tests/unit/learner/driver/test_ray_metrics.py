"""The mapping from an epoch's metrics record to the Ray metrics the driver records (the scrape of a
real node's endpoint is in tests/e2e/cluster/test_job_submit.py)."""

from __future__ import annotations

import math

from learner.driver.ray_metrics import METRICS, metric_updates

RECORD = {
    "epoch": 3,
    "pairs": 8,
    "reward_queries": 48,
    "reward_1step_mean": 0.25,
    "reward_final_mean": float("nan"),
    "time_publish_s": 0.5,
    "time_rollout_s": 2.0,
    "time_reward_s": 1.5,
    "time_update_s": 3.0,
    "time_epoch_s": 6.0,
    "gpu_busy_fraction": 0.75,
    "loss": 1.0,
    "img_dark_fraction": 0.125,
    "img_diversity": float("nan"),
    "hacking_alerts": 2,
    "mfu_update": 0.375,
}


def test_updates_of_one_epoch():
    updates = metric_updates(RECORD, [0.125, 0.25], policy_version=4)
    by_name: dict[str, list] = {}
    for u in updates:
        by_name.setdefault(u.name, []).append((u.value, u.tags))
    assert by_name["sdpo_pairs_sampled"] == [(8, {})]
    assert by_name["sdpo_reward_queries"] == [(48, {})]
    assert by_name["sdpo_epochs"] == [(1, {})]
    assert by_name["sdpo_policy_version"] == [(4, {})]
    assert by_name["sdpo_reward_call_seconds"] == [(0.125, {}), (0.25, {})]
    assert by_name["sdpo_phase_seconds"] == [
        (0.5, {"phase": "publish"}),
        (2.0, {"phase": "rollout"}),
        (1.5, {"phase": "reward"}),
        (3.0, {"phase": "update"}),
        (6.0, {"phase": "epoch"}),
    ]  # no eval phase this epoch
    assert by_name["sdpo_busy_fraction"] == [(0.75, {})]
    assert by_name["sdpo_reward_mean"] == [(0.25, {"step": "1step"})]  # the NaN final mean is not exported
    assert by_name["sdpo_image_stat"] == [(0.125, {"stat": "dark_fraction"})]  # NaN statistics are not exported
    assert by_name["sdpo_hacking_alerts"] == [(2, {})]
    assert by_name["sdpo_mfu"] == [(0.375, {"phase": "update"})]  # no rollout MFU this epoch (peak unknown)
    assert set(by_name) <= set(METRICS)


def test_every_tag_used_is_declared():
    for u in metric_updates(RECORD | {"time_eval_s": 1.0, "reward_final_mean": 0.5}, [0.1], 1):
        assert set(u.tags) <= set(METRICS[u.name][1]), u
        assert math.isfinite(u.value)
