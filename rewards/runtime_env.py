"""Driver-side checks of `reward.runtime_env` (rewards/config.py), run before any cluster starts: what
can be known on the driver's machine to be wrong is a one-line UsageError here, not a failure (or, for
an interpreter that cannot start a Ray worker, a hang) once the reward servers start.

Checked: the local paths Ray uploads from the driver (py_modules, working_dir, requirements files)
exist; and, when the driver starts Ray itself (every node is this machine), that `py_executable`
starts, imports Ray and the project's reward server, and has the driver's Ray version. On a cluster
it joins, `py_executable` names a path on its nodes, which only they can check.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

from plumbing.errors import UsageError
from rewards.config import RuntimeEnvConfig


class RuntimeEnvError(UsageError):
    """A reward.runtime_env that cannot work (exit 2)."""


# What a reward-server worker needs to start under the interpreter: Ray, and the request/result types.
_PROBE = "import ray, numpy, rewards.server; print(ray.__version__)"


def check_runtime_env(env: RuntimeEnvConfig, local_cluster: bool, ray_version: str, timeout_s: float = 120.0) -> None:
    """RuntimeEnvError for a missing local path, or (local_cluster) a py_executable that cannot run
    the reward servers with Ray `ray_version`."""
    for field, path in env.local_paths():
        if not Path(path).expanduser().exists():
            raise RuntimeEnvError(
                f"reward.runtime_env.{field}: '{path}' does not exist on the driver's machine (local paths are "
                "uploaded from here)"
            )
    if env.py_executable and local_cluster and not env.working_dir:  # with working_dir it may name a file inside it
        check_py_executable(env.py_executable, env.env_vars, ray_version, timeout_s)


def check_py_executable(command: str, env_vars: dict[str, str], ray_version: str, timeout_s: float) -> None:
    """RuntimeEnvError unless `command` (an interpreter, maybe with arguments) imports Ray
    `ray_version` and rewards.server with this process's working directory on its path, as Ray's
    workers of a locally started cluster have it."""
    argv = shlex.split(command)
    where = f"reward.runtime_env.py_executable: '{command}'"
    if not argv or shutil.which(argv[0]) is None:
        raise RuntimeEnvError(f"{where} is not an executable on this machine")
    env = dict(os.environ) | env_vars
    env["PYTHONPATH"] = os.pathsep.join(p for p in (os.getcwd(), env.get("PYTHONPATH", "")) if p)
    try:
        done = subprocess.run([*argv, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise RuntimeEnvError(f"{where} did not import Ray within {timeout_s:g}s") from None
    except OSError as err:
        raise RuntimeEnvError(f"{where} cannot be started: {err.strerror or err}") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        raise RuntimeEnvError(
            f"{where} cannot start a reward server: {lines[-1].strip() if lines else f'exit code {done.returncode}'}"
        )
    version = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "?"
    if version != ray_version:
        raise RuntimeEnvError(
            f"{where} has Ray {version}, the driver Ray {ray_version}: a cluster runs one Ray version"
        )
