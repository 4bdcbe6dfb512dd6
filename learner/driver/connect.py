"""Starting or joining the Ray cluster from the driver: a cluster of the run's own unless ray.address /
RAY_ADDRESS names one (checked reachable first, never the dashboard's address), without Ray's SIGTERM
handlers in the driver, then the check that the cluster can ever hold the actors; and the shutdown."""

from __future__ import annotations

import os
import socket
import sys
from contextlib import contextmanager

from learner.config import Config
from learner.driver.placement import actor_bundles, check_resources
from plumbing.errors import RunFailure, UsageError


class ClusterUnreachableError(RunFailure):
    """The Ray cluster to join did not answer within ray.connect_timeout_s."""


def check_reachable(address: str, timeout_s: float) -> None:
    """ClusterUnreachableError unless a TCP connection to a 'host:port' GCS address opens within
    `timeout_s` (ray.init itself would retry for minutes). Other address forms are left to Ray."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "/" in address:
        return
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s).close()
    except OSError as err:
        raise ClusterUnreachableError(
            f"the Ray cluster at {address} cannot be reached ({err.strerror or err}; "
            f"ray.connect_timeout_s={timeout_s:g}); check RAY_ADDRESS / ray.address and that its head is up"
        ) from None


class DashboardAddressError(UsageError):
    """RAY_ADDRESS / ray.address names the dashboard's HTTP address, which only `ray job submit` takes."""


def init_ray(cfg: Config) -> None:
    import ray

    # No runtime_env here: a job submitted with its own runtime_env would clash with one set by the driver.
    address = cfg.ray.address or os.environ.get("RAY_ADDRESS")
    if address and address.strip().lower().startswith(("http://", "https://")):
        key = "ray.address" if cfg.ray.address else "RAY_ADDRESS"
        raise DashboardAddressError(
            f"{key}: '{address}' is the dashboard's address, which `ray job submit --address` takes; a driver joins "
            "the cluster at its GCS address (e.g. 127.0.0.1:6379 or 'auto'); or submit this command with `ray job "
            "submit`"
        )
    if address and address.strip().lower() != "local":
        check_reachable(address, cfg.ray.connect_timeout_s)
        try:
            with _sigterm_kept_by_the_driver():
                ray.init(address=address, log_to_driver=True)
        except ConnectionError as err:  # e.g. 'auto' with no cluster running
            raise ClusterUnreachableError(
                f"cannot join the Ray cluster at '{address}': {str(err).strip().splitlines()[0]}"
            ) from None
    else:
        with _sigterm_kept_by_the_driver():
            # "local": a cluster of this run's own, never one that `ray start` left on this machine (Ray
            # would join that, found through its temp dir; ray.address=auto does)
            ray.init(address="local", num_cpus=cfg.ray.num_cpus, include_dashboard=False, log_to_driver=True)
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    check_resources(actor_bundles(cfg), nodes)


@contextmanager
def _sigterm_kept_by_the_driver():
    """ray.init in the driver without Ray's two SIGTERM handlers: its Python one raises SystemExit
    wherever the signal lands (ray.init half done), and its C++ crash handler takes the signal from
    Python and aborts the process 3 s later (the alarm it sets). The driver's own handler
    (learner/driver/preemption.py) stays. Both are switched off through private Ray names: where
    those are gone, Ray's defaults stand. Ray's worker processes keep their crash handler."""
    try:
        from ray._private import ray_constants
        from ray._private import utils as ray_utils
    except ImportError:  # Ray's private layout changed: its defaults stand
        ray_constants = ray_utils = None
    install = getattr(ray_utils, "set_sigterm_handler", None)
    if ray_constants is not None:
        ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = True  # read when this driver's core worker starts
    if install is not None:
        ray_utils.set_sigterm_handler = lambda handler: None
    try:
        yield
    finally:
        if install is not None:
            ray_utils.set_sigterm_handler = install


def shutdown_ray() -> None:
    """Disconnect from the Ray cluster, stopping it if this process started it (a no-op where Ray was
    never imported, or its import did not finish)."""
    shutdown = getattr(sys.modules.get("ray"), "shutdown", None)
    if shutdown is not None:
        shutdown()  # also stops what a start-up interrupted half-way had started
