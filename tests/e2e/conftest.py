"""The end-to-end tier: tests that start a real Ray cluster or real processes (the CLIs, `ray job
submit`, the benchmarks and training scripts, fresh interpreters). Every test under tests/e2e is
marked `e2e` here, so `-m e2e` and `-m "not e2e"` select by tier.

`ray_cluster`: one local Ray cluster in this process, shared by the tests that use Ray here directly
(started at the first such test, shut down at the end of the session). The CLI tests do not use it:
each driver they run starts its own local cluster (or joins the one the test names), by design; nor
do the tests whose subject is a cluster's own life (learner/test_node_loss.py builds a two-node
cluster to lose a node of it; cluster/test_job_submit.py runs `ray start --head` and `ray job submit`)."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

E2E = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config, items):
    for item in items:
        if E2E in item.path.parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def _ray_session():
    import ray

    # address="local": always a new cluster of this session's own, never one found on the machine.
    # 4 logical CPUs: the users ask for fractions (test_distributed: 2 x 0.5, test_runtime_env_e2e: 0.25 a server).
    # ray.init exports RAY_ADDRESS (and PYTHONBREAKPOINT) to this process's environment: put back, so
    # that the CLIs later tests start do not join this cluster instead of starting their own.
    environ = dict(os.environ)
    ray.init(address="local", num_cpus=4, include_dashboard=False)
    os.environ.clear()
    os.environ.update(environ)
    yield
    ray.shutdown()


@pytest.fixture
def ray_cluster(_ray_session):
    """The session's local Ray cluster. Afterwards the test's unreachable actor handles are collected,
    so the actors it started end before the next test (a reference cycle, e.g. through pytest.raises'
    traceback, would otherwise keep them, and their CPUs, until a later garbage collection)."""
    yield
    gc.collect()
