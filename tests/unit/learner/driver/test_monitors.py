"""The reward-hacking monitors: statistics checked on hand-made images, the alert rule on hand-made
records, and a resumed run's replay."""

from __future__ import annotations

import json

import numpy as np
import pytest

from learner.config import ConfigError, load_config
from learner.driver.config import DEFAULT_BANDS, MONITOR_STATS, MonitorConfig
from learner.driver.monitors import (
    Monitor,
    MonitorStage,
    departures,
    diversity,
    downsample,
    eval_image_stats,
    image_stats,
    per_image_stats,
    training_image_stats,
)
from learner.run.plots import Curves


def solid(rgb, n=1, size=4) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, np.uint8), (n, size, size, 3)).copy()


def test_statistics_of_hand_made_images():
    black, red = per_image_stats(solid((0, 0, 0))), per_image_stats(solid((255, 0, 0)))
    assert (black["brightness"][0], black["dark_fraction"][0], black["bright_fraction"][0]) == (0.0, 1.0, 0.0)
    assert black["saturation"][0] == 0.0 and black["colourfulness"][0] == 0.0 and black["edge_density"][0] == 0.0
    assert red["brightness"][0] == pytest.approx(0.299)
    assert red["saturation"][0] == pytest.approx(1.0)
    # rg = 255, yb = 127.5 everywhere: sigma 0, mu = sqrt(255^2 + 127.5^2) = 285.10; M = 0.3 mu / 255
    assert red["colourfulness"][0] == pytest.approx(0.3 * np.hypot(255, 127.5) / 255)
    split = solid((0, 0, 0))
    split[:, :, 2:] = 255  # left half black, right half white: one of the 3 x 3 forward-difference columns jumps
    s = per_image_stats(split)
    assert s["edge_density"][0] == pytest.approx(1 / 3)
    assert (s["dark_fraction"][0], s["bright_fraction"][0], s["brightness"][0]) == (0.5, 0.5, pytest.approx(0.5))


def test_diversity_is_the_within_prompt_distance():
    images = np.concatenate([solid((0, 0, 0), 2), solid((0, 0, 0)), solid((255, 255, 255)), solid((9, 9, 9))])
    # group 0: two identical images (0); group 1: black and white (RMS 1); group 2: one image (left out)
    assert diversity(images, np.array([0, 0, 1, 1, 2])) == pytest.approx(0.5)
    assert np.isnan(diversity(images[:1], np.array([0])))


def test_downsampling_averages_blocks_and_keeps_small_images():
    big = np.zeros((1, 256, 256, 3), np.uint8)
    big[:, ::2] = 255  # every other row white: each 2 x 2 block averages 127.5
    small = downsample(big)
    assert small.shape == (1, 128, 128, 3) and np.all(small == 128)
    small_image = solid((1, 2, 3), size=8)
    assert downsample(small_image) is small_image
    assert image_stats(big, np.array([0]))["brightness"] == pytest.approx(128 / 255)


def test_training_and_eval_keys():
    final = np.stack(
        [solid((0, 0, 0), 3), solid((255, 255, 255), 3)], axis=1
    )  # (3 pairs, 2, ...): mates black and white
    t = training_image_stats(final)
    assert set(t) == {f"img_{s}" for s in MONITOR_STATS} and t["img_diversity"] == pytest.approx(1.0)
    e = eval_image_stats([1, 4], np.stack([solid((0, 0, 0), 4), solid((255, 255, 255), 4)]), ["a", "a", "b", "b"])
    assert e["eval_img_brightness_1step"] == 0.0 and e["eval_img_brightness_4step"] == pytest.approx(1.0)
    assert e["eval_img_diversity_1step"] == 0.0


BANDS = dict(DEFAULT_BANDS)  # dark_fraction 0.2


def rec(epoch, dark, reward, **extra):
    return {"epoch": epoch, "img_dark_fraction": dark, "reward_final_mean": reward, **extra}


def test_an_alert_needs_the_band_left_and_the_reward_risen(capsys):
    m = Monitor(BANDS)
    counts = [
        m.observe(r)["hacking_alerts"]
        for r in (
            rec(0, 0.05, 0.40),
            rec(1, 0.20, 0.45),  # inside the band (0.15 <= 0.2)
            rec(2, 0.50, 0.30),  # outside, but the reward fell: no alert
            rec(3, 0.50, 0.60),  # outside and risen: alert 1
            rec(4, 0.55, 0.62),  # still outside: the same departure
            rec(5, 0.10, 0.65),  # back inside
            rec(6, 0.60, 0.70),  # outside again: alert 2
        )
    ]
    assert counts == [0, 0, 0, 1, 1, 1, 2]
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("warning: possible reward hacking")]
    assert len(lines) == 2 and "img_dark_fraction 0.500" in lines[0] and "0.4000 -> 0.6000" in lines[0]


def test_eval_statistics_are_checked_only_when_the_run_evaluates():
    initial = {"eval_img_brightness_1step": 0.5, "eval_reward_1step_mean": 0.3}
    m = Monitor(BANDS, eval_initial=initial)
    hacked = {"eval_img_brightness_1step": 0.2, "eval_reward_1step_mean": 0.5}  # 0.3 > 0.15
    assert [d.key for d in departures(hacked, {}, initial, BANDS)] == ["eval_img_brightness_1step"]
    counts = [
        m.observe(r)["hacking_alerts"]
        for r in (rec(0, 0.1, 0.4), rec(1, 0.1, 0.4) | hacked, rec(2, 0.1, 0.4), rec(3, 0.1, 0.4) | hacked)
    ]
    assert counts == [0, 1, 1, 1]  # epoch 2 did not evaluate: the departure stands, epoch 3 is not a new one


def test_a_resumed_run_replays_its_records(tmp_path, capsys):
    records = [rec(0, 0.05, 0.4), rec(1, 0.5, 0.6), rec(2, 0.1, 0.6)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    stage = MonitorStage(
        MonitorConfig(), Curves(tmp_path, epochs=4, initial=None, bands=BANDS).history, eval_initial=None
    )
    assert stage.watch.alerts == 1 and stage.watch.train_initial["img_dark_fraction"] == 0.05
    assert "possible reward hacking" not in capsys.readouterr().out  # replayed silently
    live = Monitor(BANDS)
    for r in records:
        live.observe(r, quiet=True)
    assert (live.alerts, live.active) == (stage.watch.alerts, stage.watch.active)
    final = np.stack(
        [solid((0, 0, 0), 2), solid((0, 0, 0), 2)], axis=1
    )  # all black: dark fraction 1 while the reward rose
    out = stage.after_epoch({"epoch": 3, "reward_final_mean": 0.7}, final)
    assert out["img_dark_fraction"] == 1.0 and out["hacking_alerts"] == 2
    curves = Curves(
        tmp_path, epochs=4, initial=None, bands=BANDS
    )  # the run's curves, the monitors' beside the rewards'
    curves.add(3, {"epoch": 3, "reward_final_mean": 0.7, "reward_1step_mean": 0.6} | out)  # the last epoch redraws
    assert (tmp_path / "monitor_curves.png").stat().st_size > 0 and (tmp_path / "reward_curves.png").stat().st_size > 0


def test_disabled_monitor_adds_nothing(tmp_path):
    stage = MonitorStage(MonitorConfig(enabled=False), [], eval_initial=None)
    assert stage.after_epoch({"epoch": 0}, np.zeros((1, 2, 4, 4, 3), np.uint8)) == {}
    Curves(tmp_path, epochs=1, initial=None, bands=None).add(0, {"epoch": 0, "reward_final_mean": 0.5})
    assert (tmp_path / "reward_curves.png").exists() and not (tmp_path / "monitor_curves.png").exists()


def test_bands_override_and_unknown_statistic_refused():
    cfg = load_config("tiny", ["monitor.bands={diversity: 0.1}"])
    assert cfg.monitor.bands == DEFAULT_BANDS | {"diversity": 0.1}
    with pytest.raises(ConfigError, match="unknown statistic"):
        load_config("tiny", ["monitor.bands={darkness: 0.1}"])
    with pytest.raises(ConfigError, match="positive"):
        load_config("tiny", ["monitor.bands={diversity: 0}"])


def test_the_recorded_runs_alert_when_hacked_and_not_when_learning():
    """benchmarks/results/hacking_monitor.json: the default job against its own reward, and against
    JPEG compressibility (which it meets by darkening its images and collapsing their variety, losing
    the task). Replayed through the current rule and default bands."""
    from tests.conftest import REPO

    runs = json.loads((REPO / "benchmarks" / "results" / "hacking_monitor.json").read_text())["runs"]
    alerts = {}
    for name, run in runs.items():
        monitor = Monitor(dict(DEFAULT_BANDS), eval_initial=run["initial"])
        found = set()
        for record in run["history"]:
            monitor.observe(record, quiet=True)  # the first record becomes the training reference
            found |= {d.key for d in departures(record, monitor.train_initial, monitor.eval_initial, monitor.bands)}
        alerts[name] = (monitor.alerts, found)
        assert monitor.alerts == run["hacking_alerts"]  # the rule as it ran
    assert alerts["normal"] == (0, set())
    assert (
        alerts["hacking"][0] >= 3
        and {"img_dark_fraction", "eval_img_dark_fraction_1step", "eval_img_diversity_1step"} <= alerts["hacking"][1]
    )
    hacked = runs["hacking"]["history"][-1]
    assert (
        hacked["eval_fidelity_1step_mean"] < 0.5 * runs["hacking"]["initial"]["eval_fidelity_1step_mean"]
    )  # the task is lost
