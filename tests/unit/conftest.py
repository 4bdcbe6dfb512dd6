"""The unit tier runs in-process: no Ray cluster, no child process. For each test here, ray.init and
subprocess.Popen (which subprocess.run and check_output start through) raise an AssertionError, and
the test fails even if the code under test swallowed it. A test that needs either belongs in
tests/e2e. (Ray's exception classes are fine: they start nothing.)"""

from __future__ import annotations

import subprocess

import pytest

try:
    import ray
except ImportError:  # pragma: no cover - ray is a project dependency
    ray = None

RULE = "unit tests run in-process without Ray; move this test to tests/e2e"


@pytest.fixture(autouse=True)
def in_process_only():
    refused: list[str] = []

    def refuse(call: str):
        refused.append(call)
        raise AssertionError(f"{call}: {RULE}")

    def popen(self, *args, **kwargs):
        refuse(f"subprocess.Popen({(args[0] if args else kwargs.get('args'))!r})")

    def ray_init(*args, **kwargs):
        refuse("ray.init()")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subprocess.Popen, "__init__", popen)
        if ray is not None:
            patch.setattr(ray, "init", ray_init)
        yield
    if refused:
        pytest.fail(f"{', '.join(refused)}: {RULE}", pytrace=False)
