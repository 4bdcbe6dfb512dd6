"""One small helper per stage of an epoch. The driver loop (``learner.driver.loop``) calls them in
order: publish weights -> roll out pairs (sparse images to the reward pool as they arrive) ->
advantages (dense rewards, returns, stat tracking) -> update -> busy time.

Only small data passes through the driver: the sparse queries' images and similarities, rewards and
advantages. Trajectories (every latent) go from the rollout actor to the learner rank that trains
them by object reference, or never leave the hybrid policy worker that sampled them."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from actors.batch import SparseQueries
from actors.config import RolloutConfig
from actors.flops import mfu
from learner.algo.advantages import SparseRewards, StepStatTracker
from learner.algo.registry import AdvantageSettings, Algorithm
from learner.driver.dispatch import Published, load_weights, run_assigned, run_chunks
from learner.driver.launch import Workers
from learner.worker.batch import ShardAdvantages, UpdateRequest
from learner.worker.config import TrainConfig
from plumbing.errors import RunFailure
from plumbing.remote import get, get_all, is_local
from plumbing.seeds import PROMPTS
from rewards.pool import RewardPool
from rewards.server import ScoreRequest


class TooManyDroppedError(RunFailure):
    """More of an epoch's pairs lack a valid reward than reward.max_dropped_fraction allows."""


def prompts_for_epoch(prompt_list: list[str], seed: int, epoch: int, num_pairs: int) -> list[str]:
    """Prompts drawn uniformly, seeded by (seed, epoch) only."""
    rng = np.random.default_rng([seed, epoch, PROMPTS])
    return [prompt_list[i] for i in rng.integers(0, len(prompt_list), size=num_pairs)]


def publish_weights(workers: Workers, version: int, last: Published | None = None) -> Published:
    """Make policy `version` the one the samplers hold. Disaggregated: learner rank 0's LoRA state goes
    into the object store as the result of its own call, and every rollout actor loads that one object
    (the driver passes the reference, never the tensors; an actor that is down loads it when it is
    back, before it samples: see learner.driver.dispatch). Skipped when `last` already holds
    `version`. Hybrid: nothing to send; the policy workers sample with the UNet they train."""
    if last is not None and last.version == version and not last.stale:
        return last
    if workers.hybrid:
        return Published(version, None)
    ref = workers.learner.ranks[0].get_weights.remote()
    if is_local(ref):
        ref = get(ref)
    return Published(version, ref, load_weights(workers.samplers, ref, workers.names.describe))


@dataclass
class Scored:
    queries: SparseQueries  # the epoch's pairs with valid rewards, ordered by pair index
    trajectories: dict[int, object]  # first pair index of a chunk -> its Trajectories ref (None: held by its sampler)
    sparse_rewards: np.ndarray  # (B, P, K+2) reward of each queried state
    components: dict[str, np.ndarray]  # reward name -> (B, P, K+2) unweighted part (weighted rewards)
    pairs_dropped: int  # pairs without a valid (finite) reward for every queried state
    times: dict  # time_rollout_s (until the last rollout arrived), time_reward_s (after that, until all rewards)


@dataclass(frozen=True)
class ShardPlan:
    """Pairs -> shards -> ranks, the one rule every stage uses. The epoch's pairs are split into
    `num_shards` contiguous blocks (shard s: pairs s * P/N .. (s + 1) * P/N - 1), and learner rank s
    trains shard s (in the hybrid layout also samples it); with one in-process learner (`num_ranks`
    1) rank 0 computes every shard."""

    pairs_per_epoch: int  # P
    num_shards: int  # N
    num_ranks: int  # learner ranks there are: N on Ray, 1 in-process

    @classmethod
    def of(cls, workers: Workers, pairs_per_epoch: int) -> "ShardPlan":
        return cls(pairs_per_epoch, workers.num_shards, len(workers.learner.ranks))

    def shard(self, pair_index) -> np.ndarray:
        """The shard of each pair index."""
        return np.asarray(pair_index) // (self.pairs_per_epoch // self.num_shards)

    def rank(self, shard: int) -> int:
        """The learner rank that trains shard `shard`."""
        return int(shard) if self.num_ranks > 1 else 0

    def rank_of_pair(self, pair_index: int) -> int:
        return self.rank(self.shard(pair_index))


def rollout_and_score(
    workers: Workers,
    pool: RewardPool,
    plan: ShardPlan,
    epoch: int,
    prompts: list[str],
    rollout: RolloutConfig,
    weights: Published,
) -> Scored:
    """Roll out all pairs in chunks and send each chunk's sparse images to the reward pool as soon as
    it arrives. Disaggregated: an idle actor takes the next chunk, a failed actor's chunk is sampled
    again (learner.driver.dispatch). Hybrid: worker r samples the chunks of its own shard."""
    size = rollout.chunk_size
    chunks = [list(range(s, min(s + size, len(prompts)))) for s in range(0, len(prompts), size)]

    def call(actor, idx: list[int]):
        return actor.rollout.options(num_returns=2).remote(epoch, idx, [prompts[i] for i in idx], weights.version)

    if workers.hybrid:
        assignment = [[] for _ in workers.samplers]  # the chunks each policy worker samples: its shards'
        for chunk in chunks:
            assignment[plan.rank_of_pair(chunk[0])].append(chunk)
        stream = run_assigned(workers.samplers, assignment, call, workers.names.describe)
    else:
        stream = run_chunks(workers.samplers, chunks, call, weights, rollout.restart_timeout_s, workers.names.describe)
    start, arrived, trajectories = time.perf_counter(), [], {}
    for queries, traj_ref in stream:
        B, P, Q = queries.images.shape[:3]
        flat = queries.images.reshape(B * P * Q, *queries.images.shape[3:])  # (B*P*Q, H, W, 3), pair-major
        arrived.append((queries, pool.submit(ScoreRequest(flat, [p for p in queries.prompts for _ in range(P * Q)]))))
        trajectories[int(queries.pair_index[0])] = None if workers.hybrid else traj_ref  # hybrid: held by the sampler
    rollout_done = time.perf_counter()
    results = pool.collect()
    times = {
        "time_rollout_s": round(rollout_done - start, 4),
        "time_reward_s": round(time.perf_counter() - rollout_done, 4),
    }
    arrived.sort(key=lambda qt: int(qt[0].pair_index[0]))
    queries = SparseQueries.concat([q for q, _ in arrived])
    shape = queries.images.shape[:3]  # (B, P, K+2)
    sparse = np.concatenate([results[t].scores for _, t in arrived]).reshape(shape)
    names = set.intersection(*(set(results[t].components) for _, t in arrived))
    components = {
        k: np.concatenate([results[t].components[k] for _, t in arrived]).reshape(shape) for k in sorted(names)
    }
    valid = np.isfinite(sparse).all(axis=(1, 2))  # (B,)
    times["busy_rollout_s"] = round(sum(q.busy_s for q, _ in arrived), 4)
    if (util := mfu(sum(q.flops for q, _ in arrived), sum(q.busy_s * q.peak_flops for q, _ in arrived))) is not None:
        times["mfu_rollout"] = round(util, 4)  # only where every sampler's peak is known (actors/flops.py)
    return Scored(
        queries.select(np.flatnonzero(valid)),
        trajectories,
        sparse[valid],
        {k: v[valid] for k, v in components.items()},
        int((~valid).sum()),
        times,
    )


def check_dropped(scored: Scored, requested: int, max_fraction: float) -> None:
    if scored.pairs_dropped > max_fraction * requested or scored.queries.num_pairs == 0:
        raise TooManyDroppedError(
            f"{scored.pairs_dropped} of {requested} pairs have no valid reward this epoch "
            f"(reward.max_dropped_fraction={max_fraction}); check the reward servers' logs"
        )


def advantages(
    algorithm: Algorithm,
    scored: Scored,
    plan: ShardPlan,
    train: TrainConfig,
    similarity_floor: float,
    tracker: StepStatTracker | None,
) -> torch.Tensor:
    """Clipped advantages (B, P, T) of the valid pairs by the configured algorithm."""
    q = scored.queries
    sparse = SparseRewards(
        scored.sparse_rewards, q.query_steps, q.similarities, q.prompts, plan.shard(q.pair_index.numpy())
    )
    adv = algorithm.advantages(sparse, tracker, AdvantageSettings(train.gamma, train.adv_clip_max, similarity_floor))
    return torch.as_tensor(adv, dtype=torch.float32)  # (B, P, T)


def update(workers: Workers, plan: ShardPlan, scored: Scored, adv: torch.Tensor, epoch: int, version: int) -> dict:
    """Send every learner rank the advantages of its shard (and, disaggregated, the references of its
    shard's trajectories, straight from the rollout actors); run the update on all ranks at once.
    Returns rank 0's metrics (averaged over ranks), with the ranks' busy seconds summed as `busy_learner_s`."""
    n, ranks = plan.num_shards, workers.learner.ranks
    pair_index = scored.queries.pair_index  # (B,)
    shard = plan.shard(pair_index.numpy())  # (B,)
    shards = []
    for s in range(n):
        rows = torch.from_numpy(np.flatnonzero(shard == s))  # (B_s,)
        if not len(rows):  # every rank must take the same optimizer steps; an empty shard cannot
            raise TooManyDroppedError(f"every pair of shard {s} (learner rank {s}) lacks a valid reward this epoch")
        shards.append(ShardAdvantages(s, pair_index[rows], adv[rows]))
    max_pairs = max(len(x.pair_index) for x in shards)
    calls = []
    for r, rank in enumerate(ranks):
        request = UpdateRequest(version, epoch, n, max_pairs, [x for x in shards if plan.rank(x.shard) == r])
        chunks = [
            ref
            for first, ref in sorted(scored.trajectories.items())
            if ref is not None and plan.rank_of_pair(first) == r
        ]
        calls.append(rank.update.remote(request, *chunks))
    results = get_all(calls)  # a lost rank's death before the survivors' broken collectives
    work = {"busy_learner_s": round(sum(m["busy_s"] for m in results), 4)}
    peak_flop_seconds = sum(m.get("peak_flop_seconds", float("nan")) for m in results)
    if (util := mfu(sum(m["flops"] for m in results), peak_flop_seconds)) is not None:
        work["mfu_update"] = round(util, 4)
    return {k: v for k, v in results[0].items() if k not in ("flops", "peak_flop_seconds")} | work


def busy_metrics(busy: dict[str, float], devices: dict[str, tuple[int, float]], wall_s: float) -> dict[str, float]:
    """gpu_busy_fraction: busy device-seconds over (devices x the epoch's wall time). `busy`: seconds
    each worker kind spent working, summed over its workers; `devices`: kind -> (workers that hold
    devices of their own, device share per worker) (launch.device_share)."""
    used = sum(seconds * devices[kind][1] for kind, seconds in busy.items() if kind in devices)
    total = sum(n * share for n, share in devices.values())
    return {"gpu_busy_fraction": round(used / (total * wall_s), 4) if total and wall_s else float("nan")}
