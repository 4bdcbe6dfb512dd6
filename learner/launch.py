"""Where Ray meets the plain workers: starting or joining a cluster, checking it can ever hold the
requested resources, and launching workers as Ray actors or, with ray.enabled=false, in-process."""

from __future__ import annotations

import os
from typing import Any

from actors.rollout_worker import RolloutWorker
from learner.config import Config
from learner.learner_worker import LearnerWorker
from rewards.server import RewardServer


class ResourceError(RuntimeError):
    """The cluster can never satisfy the requested resources."""


class _Done:
    """The already-computed result of an in-process call (what ObjectRef is for Ray)."""

    def __init__(self, fn, *args, **kwargs):
        try:
            self.value, self.error = fn(*args, **kwargs), None
        except Exception as err:  # re-raised by get(), as ray.get would
            self.value, self.error = None, err


class LocalActor:
    """A worker in this process, called with the same ``handle.method.remote(...)`` shape as a Ray actor."""

    def __init__(self, worker: Any):
        self._worker = worker

    def __getattr__(self, name: str):
        method = getattr(self._worker, name)
        return type("LocalMethod", (), {"remote": staticmethod(lambda *a, **k: _Done(method, *a, **k))})()


def get(refs, timeout: float | None = None):
    """ray.get for Ray refs and in-process results alike (a list or a single one)."""
    if isinstance(refs, list):
        return [get(r, timeout) for r in refs]
    if isinstance(refs, _Done):
        if refs.error is not None:
            raise refs.error
        return refs.value
    import ray

    return ray.get(refs, timeout=timeout)


def is_local(ref) -> bool:
    return isinstance(ref, _Done)


def wait_one(pending: list) -> tuple[Any, list]:
    """The first finished of `pending` and the rest."""
    if isinstance(pending[0], _Done):
        return pending[0], pending[1:]
    import ray

    done, rest = ray.wait(pending, num_returns=1)
    return done[0], rest


def put(value: Any) -> Any:
    """One object for all actors (ray.put), or the value itself in-process."""
    if _ray_running():
        import ray

        return ray.put(value)
    return value


def _ray_running() -> bool:
    try:
        import ray

        return ray.is_initialized()
    except ImportError:
        return False


def requested_resources(cfg: Config) -> dict[str, float]:
    r, w, lrn = cfg.rollout, cfg.reward, cfg.learner
    return {
        "CPU": r.num_actors * r.num_cpus + w.num_servers * w.num_cpus + lrn.num_cpus,
        "GPU": r.num_actors * r.num_gpus + w.num_servers * w.num_gpus + lrn.num_gpus,
    }


def check_resources(requested: dict[str, float], available: dict[str, float], per_node_gpus: list[float]) -> None:
    """Raise ResourceError naming the shortfall if the cluster can never hold the request."""
    short = [
        f"{k}: need {v:g}, cluster has {available.get(k, 0):g}"
        for k, v in requested.items()
        if v > available.get(k, 0) + 1e-9
    ]
    if short:
        raise ResourceError("the Ray cluster can never satisfy the requested resources (" + "; ".join(short) + ")")


def init_ray(cfg: Config) -> None:
    import ray

    # No runtime_env here: a job submitted with its own runtime_env would clash with one set by the driver.
    address = cfg.ray.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        ray.init(num_cpus=cfg.ray.num_cpus, include_dashboard=False, log_to_driver=True)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    check_resources(requested_resources(cfg), ray.cluster_resources(), [n["Resources"].get("GPU", 0) for n in nodes])


def _device(num_gpus: float) -> str:
    return "cuda" if num_gpus > 0 else "cpu"


def launch_workers(cfg: Config) -> tuple[list, list, Any]:
    """(rollout handles, reward-server handles, learner handle)."""
    r, w, lrn = cfg.rollout, cfg.reward, cfg.learner
    rollout_args = (cfg.model, cfg.sampling, cfg.seed, _device(r.num_gpus), r.torch_threads)
    reward_args = (w.name, _device(w.num_gpus), w.batch_size, w.options, w.weights)
    learner_args = (cfg.model, cfg.sampling, cfg.train, cfg.seed, _device(lrn.num_gpus), lrn.torch_threads, cfg.algorithm)
    if not cfg.ray.enabled:
        return (
            [LocalActor(RolloutWorker(*rollout_args)) for _ in range(r.num_actors)],
            [LocalActor(RewardServer(*reward_args)) for _ in range(w.num_servers)],
            LocalActor(LearnerWorker(*learner_args)),
        )
    import ray

    rollout_cls = ray.remote(RolloutWorker).options(num_cpus=r.num_cpus, num_gpus=r.num_gpus)
    reward_cls = ray.remote(RewardServer).options(num_cpus=w.num_cpus, num_gpus=w.num_gpus, max_restarts=w.max_restarts)
    learner_cls = ray.remote(LearnerWorker).options(num_cpus=lrn.num_cpus, num_gpus=lrn.num_gpus)
    rollouts = [rollout_cls.remote(*rollout_args) for _ in range(r.num_actors)]
    rewards = [reward_cls.remote(*reward_args) for _ in range(w.num_servers)]
    return rollouts, rewards, learner_cls.remote(*learner_args)
