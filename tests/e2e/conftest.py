"""The end-to-end tier: tests that start a real Ray cluster or real processes (the CLIs, `ray job
submit`, the benchmarks and training scripts, fresh interpreters). Every test under tests/e2e is
marked `e2e` here, so `-m e2e` and `-m "not e2e"` select by tier."""

from __future__ import annotations

from pathlib import Path

import pytest

E2E = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config, items):
    for item in items:
        if E2E in item.path.parents:
            item.add_marker(pytest.mark.e2e)

