"""The reward service in real runs of the CLI: missing rewards dropped and counted, too many stopping
the run, and a real reward-server crash in the middle of a real run on Ray losing no pair. (Batching,
retries and a broken reward in-process: tests/unit/rewards/test_pool.py.)"""

from __future__ import annotations

import numpy as np

from learner.run.outputs import read_metrics
from tests.conftest import run_args, run_cli

MODULES = ("tests.fixtures.flaky_rewards",)


SMALL = ["rollout.pairs_per_epoch=8", "rollout.chunk_size=2", "sampling.num_steps=3", "output.tensorboard=false"]


def test_nan_rewards_drop_their_pairs_and_are_counted(tiny_cache, tmp_path):
    res = run_cli(
        *run_args(tmp_path / "run", tiny_cache, 2),
        "ray.enabled=false",
        f"reward.modules=[{MODULES[0]}]",
        "reward.name=nan_for_cats",
        f"prompts.source={_prompt_file(tmp_path)}",
        *SMALL,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = read_metrics(tmp_path / "run")
    assert sum(m["pairs_dropped"] for m in metrics) > 0
    for m in metrics:
        assert m["pairs"] + m["pairs_dropped"] == 8
        assert np.isfinite(m["reward_1step_mean"]) and np.isfinite(m["loss"])


def test_too_many_dropped_pairs_stop_the_run(tiny_cache, tmp_path):
    res = run_cli(
        *run_args(tmp_path / "run", tiny_cache, 1),
        "ray.enabled=false",
        f"reward.modules=[{MODULES[0]}]",
        "reward.name=nan_for_cats",
        "prompts.source=" + str(_prompt_file(tmp_path, cats_only=True)),
        "reward.max_dropped_fraction=0.5",
        *SMALL,
    )
    assert res.returncode != 0
    assert "have no valid reward" in res.stderr and "Traceback" not in res.stderr


def test_reward_server_crash_mid_run_loses_no_pair(tiny_cache, tmp_path):
    import os

    env_marker = tmp_path / "crashed"
    os.environ["SDPO_TEST_CRASH_MARKER"] = str(env_marker)
    try:
        res = run_cli(
            *run_args(tmp_path / "run", tiny_cache, 2),
            "ray.num_cpus=2",
            f"reward.modules=[{MODULES[0]}]",
            "reward.name=crash_once",
            "reward.num_servers=2",
            "reward.batch_size=12",
            *SMALL,
            "eval.enabled=false",  # the crash must hit training's reward calls, not the initial evaluation's
        )
    finally:
        del os.environ["SDPO_TEST_CRASH_MARKER"]
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert env_marker.exists()  # a server really died
    metrics = read_metrics(tmp_path / "run")
    assert sum(m["reward_retries"] for m in metrics) >= 1
    for m in metrics:
        assert m["pairs"] == 8 and m["pairs_dropped"] == 0 and m["reward_queries"] == 6 * 8


def _prompt_file(tmp_path, cats_only: bool = False):
    path = tmp_path / ("cats.txt" if cats_only else "prompts.txt")
    path.write_text("a cat\n" if cats_only else "a cat\na dog\nan owl\na fox\n")
    return path
