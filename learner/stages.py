"""One small helper per stage of an SDPO epoch. The driver loop in ``learner.main`` calls them in
order: publish weights -> roll out pairs (sparse images to the reward pool as they arrive) ->
dense rewards -> advantages -> update."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from actors.batch import RolloutBatch
from learner.advantages import StepStatTracker, batch_normalize, clip_advantages, discounted_returns
from learner.batch import TrainBatch
from learner.config import TrainConfig
from learner.ddpo import final_reward_advantages
from learner.dispatch import Published, load_weights, run_chunks
from learner.launch import get, put
from learner.reward_pool import RewardPool
from rewards.server import ScoreRequest
from rewards.similarity import dense_rewards


class TooManyDroppedError(RuntimeError):
    """More of an epoch's pairs lack a valid reward than reward.max_dropped_fraction allows."""


def prompts_for_epoch(prompt_list: list[str], seed: int, epoch: int, num_pairs: int) -> list[str]:
    """Prompts drawn uniformly, seeded by (seed, epoch) only."""
    rng = np.random.default_rng([seed, epoch, 0x9E37])
    return [prompt_list[i] for i in rng.integers(0, len(prompt_list), size=num_pairs)]


def publish_weights(learner, rollouts: list) -> Published:
    """Put the learner's LoRA state in the object store ONCE and load it on every rollout actor
    (an actor that is down loads it when it is back, before it samples: see learner.dispatch)."""
    weights = get(learner.get_weights.remote())
    ref = put(weights)
    return Published(weights.version, ref, load_weights(rollouts, ref))


@dataclass
class Scored:
    rollout: RolloutBatch  # the epoch's pairs with valid rewards, ordered by pair index
    sparse_rewards: np.ndarray  # (B, P, K+2) reward of each queried state
    components: dict[str, np.ndarray]  # reward name -> (B, P, K+2) unweighted part (weighted rewards)
    pairs_dropped: int  # pairs without a valid (finite) reward for every queried state
    times: dict  # time_rollout_s (until the last rollout arrived), time_reward_s (after that, until all rewards)


def rollout_and_score(
    rollouts: list, pool: RewardPool, epoch: int, prompts: list[str], chunk_size: int, weights: Published, restart_timeout_s: float = 600.0
) -> Scored:
    """Roll out all pairs in chunks (an idle actor takes the next chunk; a failed actor's chunk is
    sampled again, see learner.dispatch) and send each chunk's sparse images to the reward pool as
    soon as it arrives."""
    chunks = [list(range(s, min(s + chunk_size, len(prompts)))) for s in range(0, len(prompts), chunk_size)]
    arrived = []  # (batch, ticket)

    def call(actor, idx: list[int]):
        return actor.rollout.remote(epoch, idx, [prompts[i] for i in idx], weights.version)

    start = time.perf_counter()
    for batch in run_chunks(rollouts, chunks, call, weights, restart_timeout_s):
        B, P, Q = batch.images.shape[:3]
        flat = batch.images.reshape(B * P * Q, *batch.images.shape[3:])  # (B*P*Q, H, W, 3), pair-major
        arrived.append((batch, pool.submit(ScoreRequest(flat, [p for p in batch.prompts for _ in range(P * Q)]))))
    rollout_done = time.perf_counter()
    results = pool.collect()
    times = {"time_rollout_s": round(rollout_done - start, 4), "time_reward_s": round(time.perf_counter() - rollout_done, 4)}
    arrived.sort(key=lambda bt: int(bt[0].pair_index[0]))
    rollout = RolloutBatch.concat([b for b, _ in arrived])
    shape = rollout.images.shape[:3]  # (B, P, K+2)
    sparse = np.concatenate([results[t].scores for _, t in arrived]).reshape(shape)
    names = set.intersection(*(set(results[t].components) for _, t in arrived))
    components = {k: np.concatenate([results[t].components[k] for _, t in arrived]).reshape(shape) for k in sorted(names)}
    valid = np.isfinite(sparse).all(axis=(1, 2))  # (B,)
    keep = torch.from_numpy(np.flatnonzero(valid))
    return Scored(
        rollout.select(keep), sparse[valid], {k: v[valid] for k, v in components.items()}, int((~valid).sum()), times
    )


def check_dropped(scored: Scored, requested: int, max_fraction: float) -> None:
    if scored.pairs_dropped > max_fraction * requested or scored.rollout.num_pairs == 0:
        raise TooManyDroppedError(
            f"{scored.pairs_dropped} of {requested} pairs have no valid reward this epoch "
            f"(reward.max_dropped_fraction={max_fraction}); check the reward servers' logs"
        )


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


def algorithm_advantages(
    algorithm: str, scored: Scored, similarity_floor: float, train: TrainConfig, tracker: StepStatTracker | None
) -> torch.Tensor:
    """Advantages (B, P, T) of the configured algorithm: SDPO's stepwise ones from the dense rewards,
    or DDPO's from the final reward alone (sparse_rewards[..., -1]; the other queries only feed metrics)."""
    if algorithm == "ddpo":
        T = scored.rollout.timesteps.shape[0]
        adv = final_reward_advantages(scored.sparse_rewards[:, :, -1], scored.rollout.prompts, T, train.adv_clip_max, tracker)
        return torch.as_tensor(adv, dtype=torch.float32)  # (B, P, T)
    dense = fill_dense_rewards(scored, similarity_floor)  # (B, P, T)
    return compute_advantages(dense, scored.rollout.prompts, train, tracker)


def train_batch(rollout: RolloutBatch, advantages: torch.Tensor) -> TrainBatch:
    return TrainBatch(
        rollout.policy_version, rollout.epoch, rollout.prompts, rollout.timesteps, rollout.latents, rollout.log_probs, advantages
    ).validate()
