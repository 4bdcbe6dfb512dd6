"""Where Ray meets the plain workers: starting or joining a cluster, checking it can ever hold the
requested resources, and launching workers as Ray actors or, with ray.enabled=false, in-process."""

from __future__ import annotations

import os
import socket
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from actors.rollout_worker import RolloutWorker
from learner.config import Config
from learner.driver.faults import WorkerNames
from learner.worker.learner_worker import LearnerWorker
from learner.worker.policy_worker import PolicyWorker
from plumbing.errors import RunFailure, UsageError
from plumbing.remote import GroupRef, LocalActor, get, put
from rewards.server import RewardServer


class ResourceError(UsageError):
    """The cluster can never satisfy the requested resources (exit 2)."""


class RankGroup:
    """The learner's ranks behind one ``group.method.remote(...)``: each call goes to every rank (its
    arguments put in the object store once) and resolves to rank 0's result. `ranks[r]` is rank r."""

    def __init__(self, ranks: list):
        self.ranks = ranks

    def __getattr__(self, name: str) -> "GroupMethod":
        return GroupMethod(self.ranks, name)


@dataclass(frozen=True)
class GroupMethod:
    """One method of every rank: `.remote(...)` calls it on each, the arguments put in the object
    store once, and returns their results as one GroupRef (rank 0's result when resolved)."""

    ranks: list
    name: str

    def remote(self, *args, **kwargs) -> GroupRef:
        if len(self.ranks) > 1:
            args = tuple(put(a) for a in args)  # one object for all ranks (Ray resolves top-level refs)
        return GroupRef([getattr(rank, self.name).remote(*args, **kwargs) for rank in self.ranks])


@dataclass
class Workers:
    """Every worker of a run, by role. In the hybrid layout `samplers` and `learner.ranks` are the same
    policy workers."""

    samplers: list  # handles that sample: rollout actors, or the hybrid policy workers
    learner: RankGroup  # the learner ranks
    reward_servers: list
    hybrid: bool
    num_shards: int  # N: the epoch's pairs are split into N shards, one per learner rank
    device_share: dict[str, tuple[int, float]]  # worker kind -> (workers with devices of their own, device share each)
    placement_group: Any = None  # on Ray: the actors' placement group (the learner group meets on rank 0's node)
    learner_bundle: int = 0  # rank 0's bundle in it
    names: WorkerNames = field(default_factory=WorkerNames)  # actor id -> name, for one-line failure reports

    def named(self) -> list:
        """Each worker once (a hybrid policy worker is both sampler and rank)."""
        return list(self.learner.ranks) + ([] if self.hybrid else list(self.samplers)) + list(self.reward_servers)

    def form_learner_group(self) -> None:
        """Form the ranks' data-parallel group (again, after a lost rank): rank 0 hosts the rendezvous."""
        ranks = self.learner.ranks
        address = get(ranks[0].rendezvous.remote(_bundle_node_ip(self.placement_group, self.learner_bundle)))
        get([rank.join_group.remote(address) for rank in ranks])


ROLES = ("rollout", "reward", "learner")  # the order of the roles' bundles in the placement group


def role_bundles(cfg: Config) -> dict[str, list[dict[str, float]]]:
    """One resource bundle per actor, by role: rollout actors, reward servers, learner ranks."""
    r, w, lrn = cfg.rollout, cfg.reward, cfg.learner

    def bundle(cpus: float, gpus: float) -> dict[str, float]:
        return {"CPU": cpus, "GPU": gpus} if gpus > 0 else {"CPU": cpus}

    return {
        "rollout": [bundle(r.num_cpus, r.num_gpus)] * r.num_actors,
        "reward": [bundle(w.num_cpus, w.num_gpus)] * w.num_servers,
        "learner": [bundle(lrn.num_cpus, lrn.num_gpus)] * lrn.num_workers,
    }


def actor_bundles(cfg: Config) -> list[dict[str, float]]:
    """Every actor's bundle, the roles in ROLES order: the placement group's bundle list."""
    return [b for bundles in role_bundles(cfg).values() for b in bundles]


def bundle_indices(cfg: Config) -> dict[str, list[int]]:
    """Role -> the placement-group bundle index of each of its actors (actor i of a role: index [i])."""
    out, start = {}, 0
    for role, bundles in role_bundles(cfg).items():
        out[role], start = list(range(start, start + len(bundles))), start + len(bundles)
    return out


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


def _device(num_gpus: float) -> str:
    return "cuda" if num_gpus > 0 else "cpu"


def worker_arguments(cfg: Config) -> tuple[dict, dict, dict]:
    """The keyword arguments of the rollout, reward-server and learner (or policy) workers."""
    r, w, lrn = cfg.rollout, cfg.reward, cfg.learner
    rollout = dict(
        model=cfg.model,
        sampling=cfg.sampling,
        seed=cfg.seed,
        device=_device(r.num_gpus),
        torch_threads=r.torch_threads,
        peak_tflops=cfg.train.peak_tflops,
    )
    reward = dict(
        name=w.name,
        device=_device(w.num_gpus),
        batch_size=w.batch_size,
        options=w.options,
        weights=w.weights,
        modules=w.modules,
    )
    learner = dict(
        model=cfg.model,
        sampling=cfg.sampling,
        train=cfg.train,
        seed=cfg.seed,
        algorithm=cfg.algorithm,
        device=_device(lrn.num_gpus),
        torch_threads=lrn.torch_threads,
    )
    if cfg.layout == "hybrid":
        learner["rollout_threads"] = lrn.torch_threads
    return rollout, reward, learner


def device_share(cfg: Config) -> dict[str, tuple[int, float]]:
    """Worker kind -> (workers holding devices of their own, device share per worker), for the busy
    fraction: GPUs on a GPU run; on CPU one device per rollout actor and learner rank (reward servers,
    sized in fractions of a core, are left out there). In the hybrid layout rollout runs on the
    learner ranks' own devices."""
    r, w, lrn = cfg.rollout, cfg.reward, cfg.learner
    per = lambda gpus: gpus if gpus > 0 else 1.0  # noqa: E731
    share = {"learner": (lrn.num_workers, per(lrn.num_gpus)), "reward": (w.num_servers, w.num_gpus)}
    share["rollout"] = (0, per(lrn.num_gpus)) if cfg.layout == "hybrid" else (r.num_actors, per(r.num_gpus))
    if not cfg.ray.enabled:  # one process: one learner holds every shard
        share["learner"] = (1, share["learner"][1])
    return share


def launch_workers(cfg: Config, names: WorkerNames | None = None) -> Workers:
    """Every worker of the run. On Ray, each actor gets its own bundle of one placement group
    (strategy `ray.placement_strategy`), placed before any actor starts; with ray.enabled=false they
    are in-process, and one learner computes all N shards' update."""
    r, w, lrn = cfg.rollout, cfg.reward, cfg.learner
    hybrid = cfg.layout == "hybrid"
    rollout_kw, reward_kw, learner_kw = worker_arguments(cfg)
    learner_cls = PolicyWorker if hybrid else LearnerWorker
    if not cfg.ray.enabled:
        ranks = [LocalActor(learner_cls(**learner_kw))]
        samplers = ranks if hybrid else [LocalActor(RolloutWorker(**rollout_kw)) for _ in range(r.num_actors)]
        servers = [LocalActor(RewardServer(**reward_kw)) for _ in range(w.num_servers)]
        return Workers(
            samplers,
            RankGroup(ranks),
            servers,
            hybrid,
            lrn.num_workers,
            device_share(cfg),
            names=names or WorkerNames(),
        )
    import ray
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    pg = place_bundles(actor_bundles(cfg), cfg.ray.placement_strategy, cfg.ray.placement_timeout_s)
    index = bundle_indices(cfg)

    def on_bundle(cls, role: str, i: int, cpus: float, gpus: float, **options):
        strategy = PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=index[role][i])
        return ray.remote(cls).options(num_cpus=cpus, num_gpus=gpus, scheduling_strategy=strategy, **options)

    samplers = [  # a crashed actor's chunk is redone by the driver (learner.driver.dispatch), never retried by Ray
        on_bundle(
            RolloutWorker, "rollout", i, r.num_cpus, r.num_gpus, max_restarts=r.max_restarts, max_task_retries=0
        ).remote(**rollout_kw)
        for i in range(r.num_actors)
    ]
    env = {"runtime_env": reward_runtime_env(w.runtime_env.to_ray())} if w.runtime_env else {}
    servers = [
        on_bundle(RewardServer, "reward", i, w.num_cpus, w.num_gpus, max_restarts=w.max_restarts, **env).remote(
            **reward_kw
        )
        for i in range(w.num_servers)
    ]
    restarts = lrn.max_restarts if lrn.num_workers > 1 else 0  # one rank: no survivor could hand over its state
    ranks = [  # a lost rank is restarted by Ray and recovered in place by the driver (learner.driver.recovery)
        on_bundle(
            learner_cls, "learner", i, lrn.num_cpus, lrn.num_gpus, max_restarts=restarts, max_task_retries=0
        ).remote(**learner_kw, rank=i, world_size=lrn.num_workers, keep_epoch_states=restarts > 0)
        for i in range(lrn.num_workers)
    ]
    workers = Workers(
        ranks if hybrid else samplers,
        RankGroup(ranks),
        servers,
        hybrid,
        lrn.num_workers,
        device_share(cfg),
        pg,
        index["learner"][0],
        names or WorkerNames(),
    )
    if lrn.num_workers > 1:
        workers.form_learner_group()
    await_reward_servers(servers, w.start_timeout_s)
    return workers


class RewardServersNotStartedError(RunFailure):
    pass


def await_reward_servers(servers: list, timeout_s: float) -> None:
    """Wait until every reward-server actor is up, at most `timeout_s` (reward.start_timeout_s). Ray
    retries a worker process that cannot start (a broken runtime_env interpreter) without end; past
    the bound the servers are killed and the run ends with one line. A server whose constructor
    raised (a bad reward name or option) is ready with that error: it is raised here, as the caller
    would see it at first use."""
    import ray

    refs = [s.identity.remote() for s in servers]
    ready, pending = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
    if pending:
        for s in servers:
            ray.kill(s, no_restart=True)
        raise RewardServersNotStartedError(
            f"{len(pending)} of {len(refs)} reward servers did not start within reward.start_timeout_s={timeout_s:g}s "
            "(with reward.runtime_env: check that its interpreter starts and its packages install on the nodes)"
        )
    ray.get(ready)


def reward_runtime_env(runtime_env: dict) -> dict:
    """reward.runtime_env as Ray takes it for an actor. Below the job level Ray accepts py_modules and
    working_dir only as URIs, so local paths are uploaded to the cluster here, with the packaging
    functions ray.init uses for a job's runtime_env (content-addressed: an unchanged path is sent once)."""
    from ray._private.runtime_env.py_modules import upload_py_modules_if_needed
    from ray._private.runtime_env.working_dir import upload_working_dir_if_needed
    from ray._private.worker import global_worker

    scratch = global_worker.node.get_runtime_env_dir_path()
    env = upload_py_modules_if_needed(dict(runtime_env), include_gitignore=True, scratch_dir=scratch)
    env = upload_working_dir_if_needed(env, include_gitignore=True, scratch_dir=scratch)
    env.pop("excludes", None)  # used by the upload only
    return env


def _bundle_node_ip(pg, bundle: int) -> str:
    """The address of the node that holds bundle `bundle` of placement group `pg`."""
    import ray
    from ray.util.placement_group import placement_group_table

    node_id = placement_group_table(pg)["bundles_to_node_id"][bundle]
    return next(n["NodeManagerAddress"] for n in ray.nodes() if n["NodeID"] == node_id)


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
