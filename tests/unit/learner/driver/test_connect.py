"""Starting or joining the Ray cluster from the driver (learner/driver/connect.py), in-process: which
cluster ray.init is asked for, Ray's SIGTERM handlers kept out of the driver, and a shutdown that never
imports Ray."""

from __future__ import annotations

import signal

import pytest

from learner.config import load_config


@pytest.mark.parametrize(
    ("overrides", "env", "expected"),
    [
        (["ray.num_cpus=2"], {}, {"address": "local", "num_cpus": 2.0}),  # never a cluster `ray start` left here
        (["ray.num_cpus=2"], {"RAY_ADDRESS": "local"}, {"address": "local", "num_cpus": 2.0}),
        (["ray.address=auto"], {}, {"address": "auto"}),  # joins the one `ray start` made: no num_cpus
    ],
)
def test_without_an_address_the_driver_starts_a_cluster_of_its_own(monkeypatch, overrides, env, expected):
    """Ray's own ray.init() joins a cluster that `ray start` left on the machine (found through its
    temp dir), and then refuses num_cpus with a ValueError; the driver asks for address='local'."""
    import ray

    from learner.driver.connect import init_ray

    calls = []

    class Stop(Exception):
        pass

    def fake_init(**kwargs):
        calls.append(kwargs)
        raise Stop

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(ray, "init", fake_init)
    with pytest.raises(Stop):
        init_ray(load_config("tiny", overrides))
    assert {k: v for k, v in calls[0].items() if k in ("address", "num_cpus")} == expected


def test_ray_init_leaves_the_drivers_sigterm_handler_and_ray_its_crash_handler_off_in_the_driver():
    """ray.init first calls ray._private.utils.set_sigterm_handler (SystemExit wherever the signal
    lands); inside _sigterm_kept_by_the_driver that call changes nothing, and Ray's C++ crash
    handler (which takes SIGTERM and aborts 3 s later) is off for this process. If Ray renames
    these private names, this test says so."""
    from ray._private import ray_constants
    from ray._private import utils as ray_utils

    from learner.driver.connect import _sigterm_kept_by_the_driver

    def mine(signum, frame):
        pass

    install, crash_handler_off = ray_utils.set_sigterm_handler, ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER
    previous = signal.signal(signal.SIGTERM, mine)
    try:
        with _sigterm_kept_by_the_driver():
            ray_utils.set_sigterm_handler(lambda signum, frame: None)  # what ray.init does first
            assert signal.getsignal(signal.SIGTERM) is mine
            assert ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER is True
        assert ray_utils.set_sigterm_handler is install  # put back after ray.init
    finally:
        signal.signal(signal.SIGTERM, previous)
        ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = crash_handler_off


def test_shutdown_ray_never_imports_ray(monkeypatch):
    """A SIGTERM or error during `import ray` must not be followed by a second import in the
    clean-up (a half-imported Ray raises there): without a usable `ray` module it does nothing."""
    import sys
    import types

    from learner.driver.connect import shutdown_ray

    monkeypatch.setitem(sys.modules, "ray", types.ModuleType("ray"))  # half imported: no shutdown yet
    shutdown_ray()
    monkeypatch.delitem(sys.modules, "ray")
    shutdown_ray()
    assert "ray" not in sys.modules
