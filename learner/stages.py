"""One small helper per stage of an SDPO epoch. The driver loop in ``learner.main`` calls them in
order: publish weights -> roll out pairs (sparse images to the reward pool as they arrive) ->
dense rewards -> advantages -> update."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import numpy as np
import torch

from actors.batch import RolloutBatch
from learner.advantages import StepStatTracker, batch_normalize, clip_advantages, discounted_returns
from learner.batch import TrainBatch
from learner.config import TrainConfig
from learner.launch import get, put, wait_one
from rewards.server import ScoreRequest
from rewards.similarity import dense_rewards


def prompts_for_epoch(prompt_list: list[str], seed: int, epoch: int, num_pairs: int) -> list[str]:
    """Prompts drawn uniformly, seeded by (seed, epoch) only."""
    rng = np.random.default_rng([seed, epoch, 0x9E37])
    return [prompt_list[i] for i in rng.integers(0, len(prompt_list), size=num_pairs)]


def publish_weights(learner, rollouts: list) -> int:
    """Put the learner's LoRA state in the object store ONCE and load it on every rollout actor."""
    weights = get(learner.get_weights.remote())
    ref = put(weights)
    get([actor.set_weights.remote(ref) for actor in rollouts])
    return weights.version


@dataclass
class Scored:
    rollout: RolloutBatch  # all B pairs of the epoch, ordered by pair index
    sparse_rewards: np.ndarray  # (B, P, K+2) reward of each queried state; NaN where missing
    reward_queries: int  # real reward-model calls (one per image)
    times: dict  # time_rollout_s (until the last rollout arrived), time_reward_s (after that, until all rewards)


def rollout_and_score(rollouts: list, reward_pool: list, epoch: int, prompts: list[str], chunk_size: int, version: int) -> Scored:
    """Roll out all pairs in chunks (an idle actor takes the next chunk) and send each chunk's
    sparse images to the reward pool as soon as it arrives."""
    chunks = [list(range(s, min(s + chunk_size, len(prompts)))) for s in range(0, len(prompts), chunk_size)]
    todo, servers = iter(chunks), itertools.cycle(reward_pool)
    inflight = {}  # ref -> actor
    for actor in rollouts:
        idx = next(todo, None)
        if idx is not None:
            inflight[actor.rollout.remote(epoch, idx, [prompts[i] for i in idx], version)] = actor
    batches, reward_refs = [], []
    start = time.perf_counter()
    while inflight:
        ref, _ = wait_one(list(inflight))
        actor = inflight.pop(ref)
        batch = get(ref)
        B, P, Q = batch.images.shape[:3]
        request = ScoreRequest(batch.images.reshape(B * P * Q, *batch.images.shape[3:]), [p for p in batch.prompts for _ in range(P * Q)])
        reward_refs.append(next(servers).score.remote(request))
        batches.append(batch)
        idx = next(todo, None)
        if idx is not None:
            inflight[actor.rollout.remote(epoch, idx, [prompts[i] for i in idx], version)] = actor
    rollout_done = time.perf_counter()
    scores = [np.asarray(s, dtype=np.float64).reshape(b.images.shape[:3]) for b, s in zip(batches, get(reward_refs))]
    order = np.argsort([int(b.pair_index[0]) for b in batches])
    rollout = RolloutBatch.concat(batches)
    sparse = np.concatenate([scores[i] for i in order])  # (B, P, K+2)
    times = {"time_rollout_s": round(rollout_done - start, 4), "time_reward_s": round(time.perf_counter() - rollout_done, 4)}
    return Scored(rollout, sparse, int(sparse.size), times)


def fill_dense_rewards(scored: Scored, similarity_floor: float) -> torch.Tensor:
    """Sparse (B, P, K+2) -> dense (B, P, T) rewards by latent similarity."""
    r = scored.rollout
    B, P, Q, T = r.similarities.shape
    dense = dense_rewards(
        torch.as_tensor(scored.sparse_rewards).flatten(0, 1),  # (B*P, K+2)
        r.query_steps.flatten(0, 1),  # (B*P, K+2)
        r.similarities.flatten(0, 1),  # (B*P, K+2, T)
        similarity_floor,
    )
    return dense.view(B, P, T)


def compute_advantages(dense: torch.Tensor, prompts: list[str], train: TrainConfig, tracker: StepStatTracker | None) -> torch.Tensor:
    """Dense rewards (B, P, T) -> clipped advantages (B, P, T) via discounted returns and
    per-(prompt, step) normalization (both trajectories of a pair count for its prompt)."""
    B, P, T = dense.shape
    returns = discounted_returns(dense.reshape(B * P, T).double().numpy(), train.gamma)  # (B*P, T), pair-major
    if tracker is not None:
        adv = tracker.update([p for p in prompts for _ in range(P)], returns)
    else:
        adv = batch_normalize(returns)
    return torch.as_tensor(clip_advantages(adv, train.adv_clip_max), dtype=torch.float32).view(B, P, T)


def train_batch(rollout: RolloutBatch, advantages: torch.Tensor) -> TrainBatch:
    return TrainBatch(
        rollout.policy_version, rollout.epoch, rollout.prompts, rollout.timesteps, rollout.latents, rollout.log_probs, advantages
    ).validate()
