"""`reward.runtime_env`: the reward servers in an environment of their own, in-process: the config is
checked (keys, types, combinations, Ray required), and an environment Ray cannot build is exit 2.
(The driver's checks, which start the interpreter they check, and a real local Ray cluster: in
tests/e2e/rewards/test_runtime_env_e2e.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from learner.config import ConfigError, build_config
from tests.helpers import runtime_env_config as _cfg

# --- the config ------------------------------------------------------------------------------------


def test_runtime_env_is_passed_to_ray_as_written():
    cfg = build_config(
        {},
        [
            "reward.runtime_env.pip=[image-reward==1.5, timm==0.6.13]",
            'reward.runtime_env.env_vars.HF_HOME="/models"',
            "reward.runtime_env.py_modules=[/srv/my_rewards]",
            "reward.runtime_env.config.setup_timeout_seconds=1800",
        ],
    )
    assert cfg.reward.runtime_env.to_ray() == {
        "pip": ["image-reward==1.5", "timm==0.6.13"],
        "py_modules": ["/srv/my_rewards"],
        "env_vars": {"HF_HOME": "/models"},
        "config": {"setup_timeout_seconds": 1800},
    }
    assert build_config({}).reward.runtime_env is None  # unset: the servers run in the job's environment


@pytest.mark.parametrize(
    "override, message",
    [
        ("reward.runtime_env.pips=[a]", "reward.runtime_env.pips: unknown key"),
        ("reward.runtime_env.pip.packages=[a]", None),  # Ray's dict form is accepted
        ("reward.runtime_env.pip={packages: [a], check: true}", "reward.runtime_env.pip: check: unknown key"),
        (
            "reward.runtime_env.env_vars.SEED=1",
            'reward.runtime_env.env_vars: SEED: environment values are strings, not int (quote it: SEED: "1")',
        ),
        ("reward.runtime_env.pip=[a, 2]", "reward.runtime_env.pip: requirements are strings, not 2"),
        (
            "reward.runtime_env.pip=3",
            "reward.runtime_env.pip: must be a list of requirements, a requirements-file path, "
            "or {packages: [...]}, not int",
        ),
        ("reward.runtime_env.py_modules=/srv/x", "reward.runtime_env.py_modules: Input should be a valid list"),
        (
            "reward.runtime_env.config.setup_timeout_seconds=0",
            "reward.runtime_env.config: setup_timeout_seconds must be positive, or -1 for no limit",
        ),
        ("reward.runtime_env={}", "reward.runtime_env: set at least one field"),
    ],
)
def test_bad_keys_and_types_are_one_line_errors(override, message):
    if message is None:
        assert build_config({}, [override]).reward.runtime_env.to_ray()["pip"] == {
            "packages": ["a"],
            "pip_check": False,
        }
        return
    with pytest.raises(ConfigError) as err:
        build_config({}, [override])
    assert str(err.value).startswith(message), str(err.value)


@pytest.mark.parametrize(
    "runtime_env, message",
    [
        ({"pip": ["a"], "conda": "env"}, "conda and pip cannot be combined"),
        (
            {"py_executable": "/envs/x/bin/python", "uv": ["a"]},
            "py_executable names a prepared interpreter; uv builds one",
        ),
        (
            {"image_uri": "reg/img:1", "pip": ["a"]},
            "image_uri runs the servers in a container and combines only with env_vars and config, not ['pip']",
        ),
        ({"excludes": ["*.pt"], "env_vars": {"A": "b"}}, "excludes applies to the uploaded py_modules and working_dir"),
    ],
)
def test_fields_ray_cannot_combine_are_refused(runtime_env, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        _cfg(**runtime_env)


def test_a_runtime_env_without_ray_is_an_error_not_ignored():
    with pytest.raises(ConfigError, match=r"reward.runtime_env: .* with ray.enabled=false .* cannot be honoured"):
        build_config({}, ["ray.enabled=false", 'reward.runtime_env.env_vars.A="b"'])


def test_a_run_resumes_with_another_runtime_env():
    """The environment says where the reward runs, not which reward: a resume may change it."""
    from learner.run.checkpoint import incompatible_keys

    saved = build_config({}).model_dump(mode="json")
    moved = build_config({}, ["reward.runtime_env.py_executable=/envs/new/bin/python"]).model_dump(mode="json")
    assert incompatible_keys(saved, moved) == []
    assert incompatible_keys(
        saved, build_config({}, ["reward.name=jpeg_incompressibility"]).model_dump(mode="json")
    ) == ["reward.name"]


# --- the driver's checks ---------------------------------------------------------------------------


def test_a_runtime_env_that_ray_cannot_build_is_exit_2_with_the_installers_reason():
    from ray.exceptions import RuntimeEnvSetupError

    from learner.driver.faults import failure

    err = RuntimeEnvSetupError(
        "Failed to set up runtime environment.\nTraceback (most recent call last):\n"
        "ray._private.runtime_env.utils.SubprocessCalledProcessError: Run cmd[9] failed with the following details.\n"
        "Last 50 lines of stdout:\n    ERROR: Could not find a version that satisfies the requirement nope==0.1\n"
        "    ERROR: No matching distribution found for nope==0.1\n"
    )
    fail = failure(err, None, Path("/nonexistent"))
    message = (
        "reward.runtime_env: Ray could not set up the reward servers' environment: "
        "No matching distribution found for nope==0.1"
    )
    assert (fail.code, fail.message) == (2, message)
