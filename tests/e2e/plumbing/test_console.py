"""A quiet console: library advisories off, the warnings that remain shown once with their source."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def _run(code: str, **env) -> subprocess.CompletedProcess:
    clean = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", **env}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=clean, capture_output=True, text=True, timeout=120
    )


def test_each_warning_once_with_its_source():
    code = (
        "import warnings\nfrom plumbing.console import show_warnings_once\nshow_warnings_once()\n"
        "def a(): warnings.warn('same text', UserWarning)\n"
        "def b(): warnings.warn('same text', UserWarning)\n"
        "a(); a(); b()\n"
    )
    res = _run(code)
    assert res.returncode == 0, res.stderr
    assert res.stderr.splitlines() == ["warning (<string>): same text"]  # once, though raised from two places


def test_user_warning_options_win():
    res = _run(
        "import warnings\nfrom plumbing.console import show_warnings_once\nshow_warnings_once()\nwarnings.warn('x')",
        PYTHONWARNINGS="ignore",
    )
    assert res.returncode == 0 and res.stderr == ""


def test_diffusers_import_prints_no_transformers_advisories():
    """Importing diffusers' pipelines makes transformers announce image processors no job uses
    (e.g. 'requires torchvision'); after quiet_environment it prints nothing."""
    res = _run(
        "from plumbing.console import quiet_environment\nquiet_environment()\n"
        "import diffusers\nfrom diffusers import StableDiffusionPipeline"
    )
    assert res.returncode == 0, res.stderr
    assert res.stderr == "" and res.stdout == ""
    code = (
        "from plumbing.console import quiet_environment\nquiet_environment()\n"
        "import os\nprint(os.environ['TRANSFORMERS_VERBOSITY'])"
    )
    res = _run(code, TRANSFORMERS_VERBOSITY="info")
    assert res.stdout.strip() == "info"  # a user's own setting wins
