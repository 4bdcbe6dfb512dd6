"""`reward.runtime_env` on real processes: the driver checks local paths and the interpreter (which it
starts) and leaves reward names to the servers' environment (the real CLI); on a real local Ray
cluster a reward that exists only in that environment (its module shipped with `py_modules`, a
package only a second virtualenv has, run by that virtualenv's interpreter as `py_executable`, a
setting from `env_vars`) scores a short training run of the tiny job, and bad names and options
found by the servers are exit 2. (The config's checks in-process: tests/unit/rewards/test_runtime_env.py.)"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from learner.config import build_config
from learner.run.outputs import read_metrics
from plumbing.errors import UsageError
from rewards.runtime_env import RuntimeEnvError, check_runtime_env
from tests.conftest import run_args, run_cli
from tests.helpers import runtime_env_config as _cfg

RAY_VERSION = importlib.metadata.version("ray")

SMALL = [
    "rollout.pairs_per_epoch=4",
    "rollout.chunk_size=2",
    "sampling.num_steps=4",
    "eval.enabled=false",
    "output.tensorboard=false",
]


SHIPPED_REWARD = '''"""A reward that exists only in the reward servers' environment."""
import os
import sys
import time
from pathlib import Path

import renv_extra_only  # installed only in the servers' virtualenv
from rewards.jpeg import jpeg_size_kb
from rewards.registry import register_reward


@register_reward("env_offset_jpeg", needs="the test's reward-server environment")
def env_offset_jpeg(device="cpu", scale=1.0):
    offset = float(os.environ["SDPO_TEST_REWARD_OFFSET"])
    Path(os.environ["SDPO_TEST_REWARD_MARKER"]).write_text(sys.executable)
    return lambda images, prompts: offset + renv_extra_only.BONUS - scale * jpeg_size_kb(images)
'''


# --- the driver's checks ---------------------------------------------------------------------------


def test_driver_checks_local_paths_and_the_interpreter(tmp_path):
    check_runtime_env(
        _cfg(py_modules=[str(tmp_path)], py_executable=sys.executable).reward.runtime_env, True, RAY_VERSION
    )
    check_runtime_env(
        _cfg(py_executable="/envs/on/the/nodes/python").reward.runtime_env, False, RAY_VERSION
    )  # a joined cluster's path
    cases = [
        (
            dict(py_modules=[str(tmp_path / "missing")]),
            RAY_VERSION,
            "py_modules: '.*missing' does not exist on the driver's machine",
        ),
        (dict(pip=str(tmp_path / "requirements.txt")), RAY_VERSION, "pip: '.*requirements.txt' does not exist"),
        (
            dict(py_executable=str(tmp_path / "python")),
            RAY_VERSION,
            "py_executable: '.*python' is not an executable on this machine",
        ),
        (
            dict(py_executable="/bin/false"),
            RAY_VERSION,
            "py_executable: '/bin/false' cannot start a reward server: exit code 1",
        ),
        (dict(py_executable=sys.executable), "0.0.1", f"has Ray {RAY_VERSION}, the driver Ray 0.0.1"),
    ]
    for runtime_env, version, message in cases:
        with pytest.raises(RuntimeEnvError, match=message):
            check_runtime_env(_cfg(**runtime_env).reward.runtime_env, True, version)


def test_with_a_runtime_env_the_driver_leaves_reward_names_to_the_servers(tmp_path):
    """Without runtime_env a module the driver cannot import is exit 2 before any actor; with one
    that brings code, the driver does not import it (it may exist only in the servers' environment);
    with env_vars alone the servers run the driver's code, which the driver still checks."""
    args = [
        "--print-config",
        "reward.modules=[only_in_the_servers_env]",
        "reward.name=shipped",
        "reward.options.shipped.x=1",
    ]
    assert run_cli(*args, timeout=60).returncode == 0  # --print-config checks the config only
    res = run_cli("--run-dir", str(tmp_path / "a"), *args[1:], timeout=60)
    assert res.returncode == 2 and "error: reward.modules: cannot import 'only_in_the_servers_env'" in res.stderr
    from learner.main import _check_rewards

    _check_rewards(
        build_config({}, [*args[1:], f"reward.runtime_env.py_modules=[{tmp_path}]"])
    )  # nothing to import here: no error
    with pytest.raises(
        UsageError, match="cannot import 'only_in_the_servers_env'"
    ):  # env_vars alone: the same code, checked here
        _check_rewards(build_config({}, [*args[1:], 'reward.runtime_env.env_vars.A="b"']))


# --- on Ray ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def servers_env(tmp_path_factory) -> dict[str, Path]:
    """A reward package (not on the driver's path) and a second virtualenv that reaches the project's
    packages through a .pth file and alone has the module `renv_extra_only`."""
    root = tmp_path_factory.mktemp("renv")
    package = root / "ship" / "renv_test_reward"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(SHIPPED_REWARD)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    site = Path(purelib.stdout.strip())
    (site / "project_env.pth").write_text(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    (site / "renv_extra_only.py").write_text("BONUS = 0.5\n")
    return {"package": package, "python": python, "marker": root / "marker.txt"}


def _runtime_env_args(env: dict[str, Path], *extra: str, ship: str = "py_modules") -> list[str]:
    """The reward's module shipped as a py_modules package, or (ship='working_dir') in the servers' working_dir."""
    shipped = f"py_modules=[{env['package']}]" if ship == "py_modules" else f"working_dir={env['package'].parent}"
    return [
        "reward.modules=[renv_test_reward]",
        "reward.name=env_offset_jpeg",
        "ray.num_cpus=2",
        *SMALL,
        f"reward.runtime_env.{shipped}",
        f"reward.runtime_env.py_executable={env['python']}",
        'reward.runtime_env.env_vars.SDPO_TEST_REWARD_OFFSET="1000"',
        f"reward.runtime_env.env_vars.SDPO_TEST_REWARD_MARKER={env['marker']}",
        *extra,
    ]


def test_a_reward_only_in_its_runtime_env_scores_a_training_run(servers_env, tiny_cache, tmp_path):
    assert importlib.util.find_spec("renv_test_reward") is None and importlib.util.find_spec("renv_extra_only") is None
    run_dir = tmp_path / "run"
    res = run_cli(
        *run_args(run_dir, tiny_cache, 1),
        *_runtime_env_args(servers_env),
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    [m] = read_metrics(run_dir)
    assert m["pairs"] == 4 and m["pairs_dropped"] == 0 and m["reward_queries"] == 6 * 4  # all scored by the pool
    # offset 1000 (env_vars) + 0.5 (the second virtualenv's module) - a few kB of JPEG per 64 x 64 image
    for key in ("reward_1step_mean", "reward_final_mean"):
        assert 990.0 < m[key] < 1000.5, (key, m[key])
    assert servers_env["marker"].read_text() == str(servers_env["python"])  # built by py_executable's interpreter


@pytest.mark.usefixtures("ray_cluster")
def test_bad_names_and_options_found_by_the_servers_are_exit_2(servers_env):
    """The driver cannot check a reward that exists only in the servers' environment: the servers'
    own RewardOptionError / UnknownRewardError end the run as exit 2 with one line, as on the driver;
    servers whose interpreter cannot start end it as exit 1 within reward.start_timeout_s.
    (Reward servers only, launched as learner.driver.launch does: no rollout or learner actors. The
    second server finds the module in an uploaded working_dir.)"""
    import ray

    from learner.driver.faults import WorkerNames, failure
    from learner.driver.launch import (
        RewardServersNotStartedError,
        await_reward_servers,
        reward_runtime_env,
        worker_arguments,
    )
    from rewards.server import RewardServer

    cases = [  # (override, how the module is shipped, the error)
        (
            "reward.options.env_offset_jpeg.bogus=1",
            "py_modules",
            "reward 'env_offset_jpeg' has no option(s) ['bogus']; its options: ['scale']",
        ),
        ("reward.name=env_offset_jpge", "working_dir", "unknown reward 'env_offset_jpge'; valid rewards: "),
    ]
    for override, ship, message in cases:
        cfg = build_config({}, _runtime_env_args(servers_env, override, ship=ship))
        env = reward_runtime_env(cfg.reward.runtime_env.to_ray())
        server = ray.remote(RewardServer).options(num_cpus=0.25, runtime_env=env).remote(**worker_arguments(cfg)[1])
        with pytest.raises(Exception) as err:
            WorkerNames().record([server])
        fail = failure(err.value, None, Path("/nonexistent"))
        assert fail is not None and fail.code == 2 and fail.message.startswith(message), (fail, str(err.value)[-2000:])
        assert (
            "env_offset_jpeg" in fail.message
        )  # registered in the servers' environment (imported from py_modules / working_dir)
    # An interpreter that cannot start: Ray would retry the worker without end; reward.start_timeout_s bounds it.
    cfg = build_config({}, ["reward.runtime_env.py_executable=/bin/false", "reward.start_timeout_s=10"])
    server = (
        ray.remote(RewardServer)
        .options(num_cpus=0.25, runtime_env=cfg.reward.runtime_env.to_ray())
        .remote(**worker_arguments(cfg)[1])
    )
    start = time.monotonic()
    with pytest.raises(RewardServersNotStartedError) as err:
        await_reward_servers([server], cfg.reward.start_timeout_s)
    assert time.monotonic() - start < 40
    fail = failure(err.value, None, Path("/nonexistent"))
    assert fail.code == 1 and fail.message.startswith(
        "1 of 1 reward servers did not start within reward.start_timeout_s=10s"
    ), fail
