"""The reward registry in fresh interpreters: the built-in rewards, and an import that stays light.
(Bad names and options in-process: tests/unit/rewards/test_registry.py.)"""

import subprocess
import sys

from tests.helpers import BUILTIN_REWARDS as ALL


def test_builtin_rewards_are_registered():
    """In a fresh interpreter (other tests register rewards of their own in this one)."""
    code = "import rewards.registry as r; print(','.join(r.reward_names()))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().split(",") == ALL


def test_registry_import_is_light():
    code = (
        "import sys, rewards.registry as r; r.reward_names(); "
        "heavy = [m for m in ('torch', 'transformers', 'open_clip') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
