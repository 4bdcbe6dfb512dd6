"""Held-out step-generalization evaluation (spec section 8: the paper's measure).

After every `eval.every` epochs and after the last, the updated policy is published to the rollout
actors, which sample a fixed held-out prompt set from fixed initial noises with the deterministic
(eta = 0) DDIM sampler at each step count k of `eval.steps`, through the same pipeline and DDIM
arithmetic as training. The reward servers score the images. Each image is the decoded predicted
clean state of the chain's last step, x0_{k-1}: the state training scores as its k-step sample.

When every held-out prompt is a caption of the shapes task (the ``shapes`` package), the images are also
measured by its held-out pixel metric (shapes.fidelity), which no reward model and no
training sees: a learned reward that rises while this falls is reward hacking.

A new run first evaluates the initial policy the same way (eval/initial.json, eval/initial.npz), so
every grid and curve can put the trained policy beside it.

Outputs: eval_reward_{k}step_mean / _std (and eval_fidelity_{k}step_mean / _std, and the fraction of
images showing each factor, eval_fidelity_{k}step_{colour,shape,size,position}) in the epoch's
metrics (metrics.jsonl and TensorBoard), eval/epoch_XXXX.png (rows: for each step count in
`eval.steps` order, the initial policy and this epoch's; columns: prompts, labelled). The curves
(reward_curves.png) are drawn from these metrics by learner/run/plots.py. Legend: K step counts, N held-out prompts,
H/W image.
"""

from __future__ import annotations

import json
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from learner.driver.config import EvalConfig
from learner.driver.dispatch import Published
from learner.driver.launch import Workers
from learner.driver.monitors import eval_image_stats
from learner.run.grids import write_labelled_grid
from learner.run.outputs import eval_grid_path
from plumbing.remote import get
from plumbing.seeds import HELDOUT, mixed_seed
from rewards.pool import RewardPool
from rewards.server import ScoreRequest
from shapes.data import parse_caption
from shapes.fidelity import FACTOR_NAMES, factor_table


def heldout_seeds(seed: int, num_prompts: int, samples_per_prompt: int = 1) -> list[int]:
    """Fixed noise seeds, prompt-major ((prompt j, sample m) at j * samples_per_prompt + m), each from
    (eval seed, j, m) only; sample 0 of a prompt keeps the seed it has with one sample per prompt."""
    return [mixed_seed(seed, j, HELDOUT, m or None) for j in range(num_prompts) for m in range(samples_per_prompt)]


def eval_set(cfg: EvalConfig, prompts: list[str]) -> tuple[list[str], list[str], list[int]]:
    """What an evaluation samples: (the first `num_prompts` prompts (the grids' columns), each repeated
    `samples_per_prompt` times (prompt-major), their fixed noise seeds (`heldout_seeds`))."""
    prompts = prompts[: cfg.num_prompts]
    samples = [p for p in prompts for _ in range(cfg.samples_per_prompt)]
    return prompts, samples, heldout_seeds(cfg.seed, len(prompts), cfg.samples_per_prompt)


@dataclass
class EvalResult:
    steps: list[int]  # the K step counts
    images: np.ndarray  # (K, N, H, W, 3) uint8
    rewards: np.ndarray  # (K, N) float64; NaN where the reward call failed for good
    factors: np.ndarray | None = None  # (K, N, 4) 0/1: factors (FACTOR_NAMES) shown; None unless shapes prompts

    @property
    def fidelity(self) -> np.ndarray | None:
        """(K, N) the held-out pixel metric in [0, 1]: the fraction of the four factors shown."""
        return None if self.factors is None else self.factors.mean(axis=-1)

    def metrics(self) -> dict[str, float]:
        out = {}
        for k, r in zip(self.steps, self.rewards):
            ok = r[np.isfinite(r)]
            out[f"eval_reward_{k}step_mean"] = float(ok.mean()) if ok.size else float("nan")
            out[f"eval_reward_{k}step_std"] = float(ok.std()) if ok.size else float("nan")
        if self.factors is not None:
            for k, hits in zip(self.steps, self.factors):  # hits (N, 4)
                f = hits.mean(axis=1)  # (N,) per-image fidelity
                out[f"eval_fidelity_{k}step_mean"], out[f"eval_fidelity_{k}step_std"] = float(f.mean()), float(f.std())
                out |= {f"eval_fidelity_{k}step_{name}": float(h) for name, h in zip(FACTOR_NAMES, hits.mean(axis=0))}
        out["eval_rewards_missing"] = int((~np.isfinite(self.rewards)).sum())
        return out

    def save(self, path: Path) -> None:
        """All of it in one .npz (the initial policy's evaluation, for a resumed run's grids)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        extra = {} if self.factors is None else {"factors": self.factors}
        np.savez_compressed(path, steps=np.array(self.steps), images=self.images, rewards=self.rewards, **extra)

    @classmethod
    def load(cls, path: Path) -> "EvalResult":
        with np.load(path) as z:
            return cls(
                [int(k) for k in z["steps"]], z["images"], z["rewards"], z["factors"] if "factors" in z else None
            )


def is_shapes_prompt_list(prompts: list[str]) -> bool:
    return bool(prompts) and all(parse_caption(p) is not None for p in prompts)


def evaluate_policy(
    rollouts: list, pool: RewardPool, prompts: list[str], seeds: list[int], steps: list[int]
) -> EvalResult:
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
    return EvalResult(list(steps), images, rewards, read_factors(images, prompts))


def read_factors(images: np.ndarray, prompts: list[str]) -> np.ndarray | None:
    """(K, N, 4) 0/1: which factors each of the (K, N, H, W, 3) images shows, read from the pixels;
    None unless the prompts are shapes captions."""
    if not is_shapes_prompt_list(prompts):
        return None
    return np.stack([factor_table(step_images, prompts) for step_images in images])


def first_samples(images: np.ndarray, num_prompts: int) -> np.ndarray:
    """The first image of each prompt from prompt-major images (num_prompts x samples per prompt, H, W, 3)."""
    return images[:: len(images) // num_prompts][:num_prompts]


def save_eval_grid(
    result: EvalResult, prompts: list[str], path: Path, label: str, initial: EvalResult | None = None
) -> Path:
    """One labelled PNG: for each step count k a row of `result` (labelled `label`, k), preceded by the
    initial policy's row when given; columns: prompts, each with its first sample (the results hold
    len(prompts) x samples per prompt images, prompt-major)."""
    rows, labels = [], []
    for qi, k in enumerate(result.steps):
        if initial is not None and k in initial.steps:
            rows.append(first_samples(initial.images[initial.steps.index(k)], len(prompts)))
            labels.append(f"initial, {k} step{'s' * (k > 1)}")
        rows.append(first_samples(result.images[qi], len(prompts)))
        labels.append(f"{label}, {k} step{'s' * (k > 1)}")
    return write_labelled_grid(np.stack(rows), labels, prompts, path)  # (rows, N, H, W, 3)


class Evaluator:
    """The driver's evaluation stage: the initial policy's evaluation, then `evaluate` whenever `due`
    (the loop publishes the weights first)."""

    def __init__(
        self,
        cfg: EvalConfig,
        epochs: int,
        workers: Workers,
        pool: RewardPool,
        run_dir: str | Path,
        prompts: list[str],
        image_stats: bool = False,
    ):
        self.cfg, self.epochs, self.workers, self.pool = cfg, epochs, workers, pool
        self.image_stats = image_stats  # add the monitors' statistics of the held-out images (eval_img_*)
        self.dir = Path(run_dir)
        self.prompts, self.samples, self.seeds = eval_set(cfg, prompts)
        self.initial: EvalResult | None = None
        self.initial_metrics: dict | None = None

    @classmethod
    def from_config(cls, cfg, workers: Workers, run_dir: str | Path) -> "Evaluator":
        """An evaluator with its own client of the reward servers (its calls never mix into training's stats)."""
        from actors.prompts import load_prompts

        r = cfg.reward
        pool = RewardPool(workers.reward_servers, r.batch_size, r.timeout_s, r.max_retries)
        prompts = load_prompts(cfg.eval.prompts, "eval.prompts") if cfg.eval.enabled else []
        return cls(cfg.eval, cfg.epochs, workers, pool, run_dir, prompts, image_stats=cfg.monitor.enabled)

    def evaluate_initial(self, fresh: bool) -> None:
        """Before the first epoch of a new run (`fresh`), evaluate the initial policy, which the
        samplers hold before any broadcast (LoRA B = 0: the pretrained model), and save it; a resumed
        run reads it back."""
        path = self.dir / "eval" / "initial.npz"
        if not self.cfg.enabled:
            return
        if not fresh:
            if path.exists():
                self.initial = self._read_initial(path)
                if self.initial is not None and self.initial.factors is None:  # saved before the pixel metric
                    self.initial.factors = read_factors(self.initial.images, self.samples)
                self.initial_metrics = None if self.initial is None else self._metrics(self.initial)
            return
        start = time.perf_counter()
        self.initial = evaluate_policy(self.workers.samplers, self.pool, self.samples, self.seeds, list(self.cfg.steps))
        self.initial.save(path)
        self.initial_metrics = self._metrics(self.initial)
        (self.dir / "eval" / "initial.json").write_text(json.dumps(self.initial_metrics, indent=1) + "\n")
        save_eval_grid(self.initial, self.prompts, self.dir / "eval" / "initial.png", "initial")
        print(
            f"held-out eval of the initial policy: {self._summary(self.initial_metrics)}  "
            f"({time.perf_counter() - start:.1f}s)",
            flush=True,
        )

    def _metrics(self, result: EvalResult) -> dict:
        stats = eval_image_stats(result.steps, result.images, self.samples) if self.image_stats else {}
        return result.metrics() | stats

    def _read_initial(self, path: Path) -> EvalResult | None:
        """The initial policy's saved evaluation, or None (with one warning line) when it is damaged or
        was made with other evaluation settings: its rows and curve points are then left out, rather
        than mislabelled or the run stopped."""
        try:
            initial = EvalResult.load(path)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            why = f"is damaged ({type(err).__name__})"
        else:
            if initial.images.shape[:2] == (len(initial.steps), len(self.samples)) and initial.steps == list(
                self.cfg.steps
            ):
                return initial
            why = (
                f"holds {initial.images.shape[1]} images at steps {initial.steps}, this evaluation samples "
                f"{len(self.samples)} at {list(self.cfg.steps)} (eval settings changed on resume)"
            )
        print(
            f"warning: {path} {why}; the initial policy's rows and curve points are left out of this attempt's outputs",
            flush=True,
        )
        return None

    def _summary(self, metrics: dict) -> str:
        parts = []
        for k in self.cfg.steps:
            part = f"{k}-step {metrics[f'eval_reward_{k}step_mean']:.4f}"
            if f"eval_fidelity_{k}step_mean" in metrics:
                part += f" (fidelity {metrics[f'eval_fidelity_{k}step_mean']:.3f})"
            parts.append(part)
        return "  ".join(parts)

    def due(self, epoch: int) -> bool:
        return self.cfg.enabled and ((epoch + 1) % self.cfg.every == 0 or epoch + 1 == self.epochs)

    def evaluate(self, epoch: int, weights: Published) -> dict:
        """Evaluate the policy the samplers hold (`weights`, published after epoch `epoch`'s update)
        on the held-out set, on the samplers that took it; its grid goes to eval/epoch_XXXX.png.
        Returns the eval metrics."""
        start = time.perf_counter()
        live = [a for i, a in enumerate(self.workers.samplers) if i not in weights.stale]
        result = evaluate_policy(live, self.pool, self.samples, self.seeds, list(self.cfg.steps))
        save_eval_grid(result, self.prompts, eval_grid_path(self.dir, epoch), f"epoch {epoch}", self.initial)
        out = {"eval_policy_version": weights.version} | self._metrics(result)
        print(
            f"held-out eval of v{weights.version}: {self._summary(out)}  ({time.perf_counter() - start:.1f}s)",
            flush=True,
        )
        return out
