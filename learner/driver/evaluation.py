"""Held-out step-generalization evaluation (spec section 8: the paper's measure).

After every `eval.every` epochs and after the last, the updated policy is published to the rollout
actors, which sample a fixed held-out prompt set from fixed initial noises with the deterministic
(eta = 0) DDIM sampler at each step count k of `eval.steps`, through the same pipeline and DDIM
arithmetic as training. The reward servers score the images. Each image is the decoded predicted
clean state of the chain's last step, x0_{k-1}: the state training scores as its k-step sample.

Outputs: eval_reward_{k}step_mean / _std in the epoch's metrics (metrics.jsonl and TensorBoard),
eval/epoch_XXXX.png (rows: step counts in `eval.steps` order; columns: prompts), and
reward_curves.png, redrawn every epoch. Legend: K step counts, N held-out prompts, H/W image.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from actors.remote import get
from actors.seeds import HELDOUT, mixed_seed
from learner.config import EvalConfig
from learner.driver.dispatch import Published
from learner.driver.launch import Workers
from learner.driver.stages import publish_weights
from learner.run.outputs import read_metrics, write_grid
from learner.run.plots import plot_reward_curves
from rewards.pool import RewardPool
from rewards.server import ScoreRequest


def heldout_seeds(seed: int, num_prompts: int) -> list[int]:
    """One fixed noise seed per held-out prompt, from (eval seed, prompt index) only."""
    return [mixed_seed(seed, j, HELDOUT) for j in range(num_prompts)]


@dataclass
class EvalResult:
    steps: list[int]  # the K step counts
    images: np.ndarray  # (K, N, H, W, 3) uint8
    rewards: np.ndarray  # (K, N) float64; NaN where the reward call failed for good

    def metrics(self) -> dict[str, float]:
        out = {}
        for k, r in zip(self.steps, self.rewards):
            ok = r[np.isfinite(r)]
            out[f"eval_reward_{k}step_mean"] = float(ok.mean()) if ok.size else float("nan")
            out[f"eval_reward_{k}step_std"] = float(ok.std()) if ok.size else float("nan")
        out["eval_rewards_missing"] = int((~np.isfinite(self.rewards)).sum())
        return out


def evaluate_policy(rollouts: list, pool: RewardPool, prompts: list[str], seeds: list[int], steps: list[int]) -> EvalResult:
    """Sample every (step count, prompt) with the policy the rollout actors hold, and score it.

    For each k the prompts are split into one contiguous chunk per actor, so every actor gets an
    equal share of every step count; results do not depend on which actor drew what."""
    chunks = [c for c in np.array_split(np.arange(len(prompts)), len(rollouts)) if c.size]
    calls = [  # (k position, prompt indices, ref); all sent at once, Ray queues them per actor
        (qi, idx, rollouts[c].evaluate.remote([prompts[i] for i in idx], [seeds[i] for i in idx], k))
        for qi, k in enumerate(steps)
        for c, idx in enumerate(chunks)
    ]
    parts = []  # (k position, prompt indices, images (n, H, W, 3), ticket)
    for qi, idx, ref in calls:
        images = get(ref)
        parts.append((qi, idx, images, pool.submit(ScoreRequest(images, [prompts[i] for i in idx]))))
    results = pool.collect()
    H, W = parts[0][2].shape[1:3]
    images = np.zeros((len(steps), len(prompts), H, W, 3), np.uint8)  # (K, N, H, W, 3)
    rewards = np.full((len(steps), len(prompts)), np.nan)  # (K, N)
    for qi, idx, imgs, ticket in parts:
        images[qi, idx], rewards[qi, idx] = imgs, results[ticket].scores
    return EvalResult(list(steps), images, rewards)


def save_eval_grid(images: np.ndarray, path: Path) -> Path:
    """images (K, N, H, W, 3) -> one PNG, rows: step counts, columns: prompts."""
    return write_grid(images, path)


class Evaluator:
    """The driver's evaluation stage; one call per epoch (`after_epoch`)."""

    def __init__(self, cfg: EvalConfig, epochs: int, workers: Workers, pool: RewardPool, run_dir: str | Path, prompts: list[str]):
        self.cfg, self.epochs, self.workers, self.pool = cfg, epochs, workers, pool
        self.dir = Path(run_dir)
        self.prompts = prompts[: cfg.num_prompts]
        self.seeds = heldout_seeds(cfg.seed, len(self.prompts))
        self.history = read_metrics(self.dir)  # earlier epochs' records (a resumed run), for the curves

    @classmethod
    def from_config(cls, cfg, workers: Workers, run_dir: str | Path) -> "Evaluator":
        """An evaluator with its own client of the reward servers (its calls never mix into training's stats)."""
        from actors.prompts import load_prompts

        r = cfg.reward
        pool = RewardPool(workers.reward_servers, r.batch_size, r.timeout_s, r.max_retries)
        prompts = load_prompts(cfg.eval.prompts, "eval.prompts") if cfg.eval.enabled else []
        return cls(cfg.eval, cfg.epochs, workers, pool, run_dir, prompts)

    def due(self, epoch: int) -> bool:
        return self.cfg.enabled and ((epoch + 1) % self.cfg.every == 0 or epoch + 1 == self.epochs)

    def after_epoch(self, epoch: int, metrics: dict, version: int, published: Published) -> tuple[dict, Published]:
        """After epoch `epoch`'s update (policy `version`): when due, publish that version to the
        samplers and evaluate it; then redraw reward_curves.png with this epoch. Returns the eval
        metrics ({} when not due) and what the samplers now hold (the next epoch reuses it)."""
        out: dict = {}
        if self.due(epoch):
            start = time.perf_counter()
            published = weights = publish_weights(self.workers, version, published)
            live = [a for i, a in enumerate(self.workers.samplers) if i not in weights.stale]
            result = evaluate_policy(live, self.pool, self.prompts, self.seeds, list(self.cfg.steps))
            save_eval_grid(result.images, self.dir / "eval" / f"epoch_{epoch:04d}.png")
            out = {"eval_policy_version": version} | result.metrics() | {"time_eval_s": round(time.perf_counter() - start, 4)}
            scores = "  ".join(f"{k}-step {out[f'eval_reward_{k}step_mean']:.4f}" for k in self.cfg.steps)
            print(f"held-out eval of v{version}: {scores}  ({out['time_eval_s']:.1f}s)", flush=True)
        self.history.append(metrics | out)
        plot_reward_curves(self.history, self.dir / "reward_curves.png")
        return out, published
