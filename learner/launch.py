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


class GroupRef:
    """The calls of one method on every rank of a learner group; get() waits for all, returns rank 0's."""

    def __init__(self, refs: list):
        self.refs = refs


class LearnerGroup:
    """N data-parallel learner actors behind one ``handle.method.remote(...)``: each call goes to every
    rank (its arguments put in the object store once) and resolves to rank 0's result."""

    def __init__(self, actors: list):
        self.actors = actors

    def __getattr__(self, name: str):
        def remote(*args, **kwargs):
            import ray

            args = tuple(ray.put(a) for a in args)  # one object for all ranks (Ray resolves top-level refs)
            return GroupRef([getattr(actor, name).remote(*args, **kwargs) for actor in self.actors])

        return type("GroupMethod", (), {"remote": staticmethod(remote)})()


def get(refs, timeout: float | None = None):
    """ray.get for Ray refs and in-process results alike (a list or a single one)."""
    if isinstance(refs, list):
        return [get(r, timeout) for r in refs]
    if isinstance(refs, GroupRef):
        return get(refs.refs, timeout)[0]
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


def actor_bundles(cfg: Config) -> list[dict[str, float]]:
    """One resource bundle per actor: rollout actors, reward servers, learner ranks (in that order)."""
    r, w, lrn = cfg.rollout, cfg.reward, cfg.learner

    def bundle(cpus: float, gpus: float) -> dict[str, float]:
        return {"CPU": cpus, "GPU": gpus} if gpus > 0 else {"CPU": cpus}

    return (
        [bundle(r.num_cpus, r.num_gpus)] * r.num_actors
        + [bundle(w.num_cpus, w.num_gpus)] * w.num_servers
        + [bundle(lrn.num_cpus, lrn.num_gpus)] * lrn.num_workers
    )


def check_resources(bundles: list[dict[str, float]], nodes: list[dict[str, float]]) -> None:
    """Raise ResourceError naming the shortfall if the cluster (`nodes`: each alive node's resources)
    can never hold the actors' `bundles`: not in total, or some actor on no single node."""
    short = []
    for key in ("CPU", "GPU"):
        need, have = sum(b.get(key, 0.0) for b in bundles), sum(n.get(key, 0.0) for n in nodes)
        if need > have + 1e-9:
            short.append(f"{key}: need {need:g}, cluster has {have:g}")
    biggest = {key: max((n.get(key, 0.0) for n in nodes), default=0.0) for key in ("CPU", "GPU")}
    for b in {tuple(sorted(b.items())) for b in bundles}:
        for key, amount in b:
            if amount > biggest[key] + 1e-9:
                short.append(f"one actor needs {key}: {amount:g}, the largest node has {biggest[key]:g}")
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
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    check_resources(actor_bundles(cfg), nodes)


def _device(num_gpus: float) -> str:
    return "cuda" if num_gpus > 0 else "cpu"


def launch_workers(cfg: Config) -> tuple[list, list, Any]:
    """(rollout handles, reward-server handles, learner handle). On Ray, every actor gets its own
    bundle of one placement group (strategy `ray.placement_strategy`), placed before any actor starts."""
    r, w, lrn = cfg.rollout, cfg.reward, cfg.learner
    rollout_args = (cfg.model, cfg.sampling, cfg.seed, _device(r.num_gpus), r.torch_threads)
    reward_args = (w.name, _device(w.num_gpus), w.batch_size, w.options, w.weights, w.modules)
    learner_args = (cfg.model, cfg.sampling, cfg.train, cfg.seed, _device(lrn.num_gpus), lrn.torch_threads, cfg.algorithm)
    if not cfg.ray.enabled:
        return (
            [LocalActor(RolloutWorker(*rollout_args)) for _ in range(r.num_actors)],
            [LocalActor(RewardServer(*reward_args)) for _ in range(w.num_servers)],
            LocalActor(LearnerWorker(*learner_args)),
        )
    import ray
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    pg = place_bundles(actor_bundles(cfg), cfg.ray.placement_strategy, cfg.ray.placement_timeout_s)
    slots = iter(range(len(pg.bundle_specs)))

    def on_bundle(cls, cpus: float, gpus: float, **options):
        strategy = PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=next(slots))
        return ray.remote(cls).options(num_cpus=cpus, num_gpus=gpus, scheduling_strategy=strategy, **options)

    rollouts = [  # a crashed actor's chunk is redone by the driver (learner.dispatch), never retried by Ray
        on_bundle(RolloutWorker, r.num_cpus, r.num_gpus, max_restarts=r.max_restarts, max_task_retries=0).remote(*rollout_args)
        for _ in range(r.num_actors)
    ]
    rewards = [
        on_bundle(RewardServer, w.num_cpus, w.num_gpus, max_restarts=w.max_restarts).remote(*reward_args)
        for _ in range(w.num_servers)
    ]
    ranks = [
        on_bundle(LearnerWorker, lrn.num_cpus, lrn.num_gpus).remote(*learner_args, rank=i, world_size=lrn.num_workers)
        for i in range(lrn.num_workers)
    ]
    if lrn.num_workers == 1:
        return rollouts, rewards, ranks[0]
    address = ray.get(ranks[0].rendezvous.remote())
    ray.get([rank.join_group.remote(address) for rank in ranks])
    return rollouts, rewards, LearnerGroup(ranks)


def place_bundles(bundles: list[dict[str, float]], strategy: str, timeout_s: float):
    """A placement group of `bundles`, or ResourceError if Ray cannot place it in `timeout_s`."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    pg = placement_group(bundles, strategy=strategy)
    ready, _ = ray.wait([pg.ready()], timeout=timeout_s)
    if not ready:
        remove_placement_group(pg)
        total = {k: sum(b.get(k, 0.0) for b in bundles) for k in ("CPU", "GPU")}
        raise ResourceError(
            f"Ray could not place the actors' {len(bundles)} resource bundles ({total}) with strategy {strategy} "
            f"within {timeout_s:g}s; the cluster has {ray.available_resources()} free"
        )
    return pg
