"""Running the real CLI (`python -m learner.main`) from a benchmark: the repository it runs in and
the environment the child process gets (Ray's usage stats and token auth off, the hub offline, this
checkout first on its import path)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cli_env() -> dict[str, str]:
    """This process's environment plus what a benchmark's child CLI run needs."""
    return dict(
        os.environ,
        RAY_USAGE_STATS_ENABLED="0",
        RAY_AUTH_MODE="disabled",
        HF_HUB_OFFLINE="1",
        PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
