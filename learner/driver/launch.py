"""Launching the plain workers as Ray actors, each on its role's bundle of the placement group
(learner/driver/placement.py), or, with ray.enabled=false, in-process; the workers of a run as one
object, and the learner ranks as one group. Starting or joining the cluster: learner/driver/connect.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from actors.rollout_worker import RolloutWorker
from learner.config import Config
from learner.driver.faults import WorkerNames
from learner.driver.placement import actor_bundles, bundle_indices, bundle_node_ip, place_bundles
from learner.worker.learner_worker import LearnerWorker
from learner.worker.policy_worker import PolicyWorker
from plumbing.errors import RunFailure
from plumbing.remote import GroupRef, LocalActor, get, put
from rewards.server import RewardServer


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
        address = get(ranks[0].rendezvous.remote(bundle_node_ip(self.placement_group, self.learner_bundle)))
        get([rank.join_group.remote(address) for rank in ranks])


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
