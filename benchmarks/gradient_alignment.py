"""Is each algorithm's update aimed at what it should improve? The cosine between an algorithm's
minibatch gradient and the exact gradient of the held-out k-step reward, before any long run.

    python -m benchmarks.gradient_alignment [--model shapes-turbo] [--checkpoint RUN/checkpoints/epoch-000096]
        [--pairs 2048] [--minibatch 16] [--noises 32] [--train-steps 8]
        [--out benchmarks/results/gradient_alignment.json]

1. Target, per k in 1, 2, 4, 8: g_k = the gradient with respect to the LoRA of the mean held-out
   k-step reward: the 24 held-out captions x `noises` fixed noises, sampled by the deterministic
   k-step DDIM chain with autograd on, decoded by the VAE and scored by the differentiable form of
   the shapes reward (the classifier's probabilities on the decoded pixels, before the uint8
   rounding the served reward applies; factors colour, shape and size). The noises are split in two
   halves; the cosine c of the halves' gradients says whether g_k is pinned down. Where c is low the
   target is itself noisy, which shrinks every cosine with it by the same factor: the estimate of
   g_k from both halves correlates with the true g_k at sqrt(R), R = 2c / (1 + c) (Spearman-Brown),
   so each cosine is also given divided by sqrt(R) ("corrected"; the raw value beside it).
2. Estimates: `pairs` trajectory pairs of the training captions at T = `train-steps` (eta = 1), sampled
   once and shared. For each algorithm, its advantages are computed as a run's first epoch would
   (fresh per-prompt tracker) and, for each minibatch of `minibatch` pairs, the gradient of its loss
   at the sampling policy (ratio 1, where an update starts), over every item its schedule trains:
     sdpo               SDPO, dense rewards from the anchor queries, the last step left out (train.skip_last_step)
     sdpo_all_steps     the same with the last step in (the reference's update)
     ddpo               DDPO on the decoded x_T (ddpo-pytorch), every step
   The step-shuffled DDPO arm differs from `ddpo` only in which items share an optimizer step, so
   its minibatch direction over the same items is the same. Reported: mean +- s.e. over the
   minibatches of cos(-grad loss, g_k).
3. `--checkpoint`: the same at a trained policy (the LoRA of a run's checkpoint); default: the
   initial policy (LoRA B = 0, the base model).

Prints one table row per algorithm and step count and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from actors.config import ModelConfig
from actors.families import family_of
from actors.policy import load_lora_state, load_pipeline
from actors.sampling import final_queries, pair_generator, sample_pairs, score_steps, sparse_queries
from benchmarks.output import emit
from benchmarks.stats import paired
from learner.algo.advantages import SparseRewards, StepStatTracker
from learner.algo.registry import AdvantageSettings, StepItems, get_algorithm
from learner.algo.sdpo import temporal_weights
from shapes import net
from shapes.data import heldout_prompts, train_prompts
from shapes.reward import factor_columns, scorer

STEPS = (1, 2, 4, 8)
FACTORS = "colour,shape,size"
ARMS = {
    "sdpo": ("sdpo", True),
    "sdpo_all_steps": ("sdpo", False),
    "ddpo": ("ddpo", False),
}  # name -> (algorithm, skip last step)
SEED = 5  # the pairs' seed (a training seed no benchmark run uses)
NOISE_SEED = 777  # the held-out noises of the target


def lora_params(unet) -> list[torch.nn.Parameter]:
    return [p for p in unet.parameters() if p.requires_grad]


def flat_grad(loss: torch.Tensor, params: list, retain: bool) -> torch.Tensor:
    grads = torch.autograd.grad(loss, params, retain_graph=retain, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)])


def reliability(halves_cosine: float) -> float:
    """R = 2c / (1 + c): the squared correlation of the two halves' mean with the true gradient."""
    c = max(halves_cosine, 0.0)
    return 2 * c / (1 + c)


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.dot(a, b) / (a.norm() * b.norm()).clamp(min=1e-30))


def reward_gradient(
    pipe, classifier, columns, prompts: list[str], noise: torch.Tensor, k: int, params, chunk: int = 128
) -> torch.Tensor:
    """d/d(LoRA) of the mean differentiable reward of the k-step deterministic samples of (prompts, noise),
    accumulated over chunks of images (memory)."""
    fam = family_of(pipe)
    timesteps = fam.set_timesteps(pipe.scheduler, k)
    total = None
    for lo in range(0, len(prompts), chunk):
        ps, x = prompts[lo : lo + chunk], noise[lo : lo + chunk]
        embeds = fam.encode_prompts(pipe, ps)
        x0 = x
        for i, t in enumerate(timesteps):
            out = fam.denoise(pipe.unet, x, t.expand(len(x)), embeds, 1.0, None)
            x, x0 = fam.step(pipe.scheduler, out, x, torch.full((len(x),), i), timesteps)
        pixels = pipe.vae.decode(x0 / pipe.vae.config.scaling_factor).sample.clamp(-1, 1)  # (n, 3, 32, 32)
        probs = net.factor_probabilities(classifier, pixels, net.targets(ps))[:, columns]
        g = flat_grad(probs.mean(dim=1).sum() / len(prompts), params, retain=False)
        total = g if total is None else total + g
    return total


def target_gradients(pipe, classifier, columns, noises: int, params) -> dict[int, dict]:
    prompts = [p for p in heldout_prompts() for _ in range(noises)]
    noise = torch.randn((len(prompts), 4, 16, 16), generator=torch.Generator().manual_seed(NOISE_SEED))
    half = torch.arange(len(prompts)) % noises < noises // 2  # the first half of every caption's noises
    out = {}
    for k in STEPS:
        parts = [
            reward_gradient(
                pipe,
                classifier,
                columns,
                [p for p, h in zip(prompts, half) if h == side],
                noise[half == side],
                k,
                params,
            )
            for side in (True, False)
        ]
        out[k] = {
            "grad": (parts[0] + parts[1]) / 2,
            "halves_cosine": cosine(*parts),
            "norm": float(((parts[0] + parts[1]) / 2).norm()),
        }
        print(
            f"target k={k}: |g| {out[k]['norm']:.3e}, cosine of the two halves {out[k]['halves_cosine']:.3f}",
            flush=True,
        )
    return out


def sample_and_score(pipe, reward, num_pairs: int, T: int, chunk: int = 64):
    """The shared rollout: trajectories, SDPO's sparse rewards and DDPO's final rewards."""
    prompts_all = train_prompts()
    rng = np.random.default_rng(SEED)
    prompts = [prompts_all[i] for i in rng.integers(0, len(prompts_all), num_pairs)]
    parts = []
    for lo in range(0, num_pairs, chunk):
        idx = list(range(lo, min(lo + chunk, num_pairs)))
        ps = [prompts[i] for i in idx]
        pairs = sample_pairs(pipe, ps, [pair_generator(SEED, 0, i) for i in idx], T, 1.0)
        steps, sims, images = sparse_queries(pipe, pairs.pred_x0, 1)
        _, _, final = final_queries(pipe, pairs.latents)
        rep = lambda n, ps=ps: [p for p in ps for _ in range(n)]  # noqa: E731
        sparse = reward(images.reshape(-1, *images.shape[3:]), rep(2 * images.shape[2])).reshape(images.shape[:3])
        last = reward(final.reshape(-1, *final.shape[3:]), rep(2)).reshape(final.shape[:3])
        parts.append((pairs, steps, sims, sparse, last))
        print(f"sampled {idx[-1] + 1}/{num_pairs} pairs", flush=True)
    cat = lambda i: torch.cat([p[0][i] for p in parts])  # noqa: E731
    return {
        "prompts": prompts,
        "timesteps": parts[0][0].timesteps,
        "latents": cat(1),
        "log_probs": cat(2),
        "query_steps": torch.cat([p[1] for p in parts]),
        "similarities": torch.cat([p[2] for p in parts]),
        "sparse": np.concatenate([p[3] for p in parts]),
        "final": np.concatenate([p[4] for p in parts]),
    }


def advantages(algorithm: str, data: dict) -> torch.Tensor:
    n = len(data["prompts"])
    rewards = data["sparse"] if algorithm == "sdpo" else data["final"]
    steps = data["query_steps"] if algorithm == "sdpo" else torch.full((n, 2, 1), data["latents"].shape[2] - 1)
    sims = data["similarities"] if algorithm == "sdpo" else torch.ones((n, 2, 1, data["log_probs"].shape[2]))
    sparse = SparseRewards(rewards, steps, sims, data["prompts"], np.zeros(n, dtype=int))
    adv = get_algorithm(algorithm).advantages(
        sparse, StepStatTracker(32, 16), AdvantageSettings(gamma=0.99, adv_clip_max=5.0, similarity_floor=1e-3)
    )
    return torch.as_tensor(adv, dtype=torch.float32)  # (B, 2, T)


def minibatch_cosines(
    pipe,
    data: dict,
    adv: dict[str, torch.Tensor],
    targets: dict[int, dict],
    minibatch: int,
    clip: dict[str, float],
    params,
) -> dict[str, dict[int, list[float]]]:
    fam = family_of(pipe)
    T = data["log_probs"].shape[2]
    weights = temporal_weights(T, 0.99, 1.0)
    out = {arm: {k: [] for k in STEPS} for arm in ARMS}
    n = len(data["prompts"])
    for lo in range(0, n, minibatch):
        rows = torch.arange(lo, min(lo + minibatch, n))
        M = len(rows)
        embeds = fam.encode_prompts(pipe, [data["prompts"][i] for i in rows]).repeat_interleave(2 * T, dim=0)
        x = data["latents"][rows, :, :T].flatten(0, 2)  # (M*2*T, C, h, w): pair, trajectory, step
        x_next = data["latents"][rows, :, 1:].flatten(0, 2)
        step = torch.arange(T).repeat(2 * M)
        new = score_steps(
            pipe.unet, pipe.scheduler, x, x_next, step, data["timesteps"], embeds, 1.0, family=fam
        ).log_prob
        new = new.view(M, 2, T).permute(0, 2, 1)  # (M, T, 2): items (pair, step), trajectories last
        old = data["log_probs"][rows].permute(0, 2, 1)
        for a, (arm, (algorithm, skip)) in enumerate(ARMS.items()):
            keep = T - 1 if skip else T
            A = adv[algorithm][rows].permute(0, 2, 1)[:, :keep]
            w = weights[:keep].expand(M, keep)
            items = StepItems(new[:, :keep].flatten(0, 1), old[:, :keep].flatten(0, 1), A.flatten(0, 1), w.flatten())
            res = get_algorithm(algorithm).loss(items, clip[algorithm])
            g = -flat_grad(res.loss, params, retain=a < len(ARMS) - 1)
            for k in STEPS:
                out[arm][k].append(cosine(g, targets[k]["grad"]))
        print(f"minibatch gradients {rows[-1] + 1}/{n} pairs", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gradient_alignment", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model", default="shapes-turbo", help="model.pretrained of the policy (default: the few-step student)"
    )
    p.add_argument(
        "--checkpoint", help="a run's checkpoint directory: measure at its LoRA (default: the initial policy)"
    )
    p.add_argument("--pairs", type=int, default=2048)
    p.add_argument("--minibatch", type=int, default=16, help="pairs per minibatch gradient")
    p.add_argument("--noises", type=int, default=128, help="held-out noises per caption for the target gradient")
    p.add_argument("--train-steps", type=int, default=8, help="T of the sampled training trajectories (eta = 1)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="also write the JSON result here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    pipe = load_pipeline(ModelConfig(pretrained=args.model, local_files_only=True), seed=0)
    if args.checkpoint:
        from safetensors.torch import load_file

        load_lora_state(pipe.unet, load_file(Path(args.checkpoint) / "lora_peft.safetensors"))
    params = lora_params(pipe.unet)
    classifier, columns = net.load(), factor_columns(FACTORS)
    classifier.requires_grad_(False)
    targets = target_gradients(pipe, classifier, columns, args.noises, params)
    with torch.no_grad():
        data = sample_and_score(pipe, scorer(factors=FACTORS), args.pairs, args.train_steps)
    adv = {a: advantages(a, data) for a in ("sdpo", "ddpo")}
    clip = {"sdpo": 1e-2, "ddpo": 1e-4}
    cos = minibatch_cosines(pipe, data, adv, targets, args.minibatch, clip, params)
    rows = {}
    print(f"\n{'arm':<16}" + "".join(f"{f'k={k}':>20}" for k in STEPS))
    for arm, by_k in cos.items():
        rows[arm] = {}
        for k, values in by_k.items():
            mean, se = statistics.fmean(values), statistics.stdev(values) / math.sqrt(len(values))
            root = math.sqrt(reliability(targets[k]["halves_cosine"])) or float("nan")
            rows[arm][k] = {
                "mean": round(mean, 4),
                "se": round(se, 4),
                "minibatches": len(values),
                "corrected_mean": round(mean / root, 4),
                "corrected_se": round(se / root, 4),
            }
        print(f"{arm:<16}" + "".join(f"{rows[arm][k]['mean']:>+12.4f} +- {rows[arm][k]['se']:.4f}" for k in STEPS))
        print(
            f"{'  corrected':<16}"
            + "".join(f"{rows[arm][k]['corrected_mean']:>+12.4f} +- {rows[arm][k]['corrected_se']:.4f}" for k in STEPS)
        )
    # the arms' gradients come from the same minibatches: their difference is paired, minibatch by minibatch
    paired_rows = {
        f"{a}_minus_ddpo": {k: paired(cos[a][k], cos["ddpo"][k]).as_dict() for k in STEPS}
        for a in ("sdpo", "sdpo_all_steps")
    }
    for name, by_k in paired_rows.items():
        print(
            f"{name:<24}"
            + "".join(f"{f'k={k}':>5} {v['mean']:+.4f} +- {v['se']:.4f} (t {v['t']:.1f})" for k, v in by_k.items())
        )
    result = {
        "benchmark": "gradient_alignment",
        "machine": f"{os.cpu_count()}-core CPU, {platform.machine()}",
        "model": args.model,
        "checkpoint": args.checkpoint,
        "reward": f"shapes_classifier factors={FACTORS}",
        "pairs": args.pairs,
        "minibatch_pairs": args.minibatch,
        "train_steps": args.train_steps,
        "eta": 1.0,
        "target": {
            k: {
                "halves_cosine": round(v["halves_cosine"], 4),
                "reliability": round(reliability(v["halves_cosine"]), 4),
                "norm": v["norm"],
                "images": 24 * args.noises,
            }
            for k, v in targets.items()
        },
        "cosine": rows,
        "paired": paired_rows,
        "clip_range": clip,
        "wall_s": round(time.perf_counter() - start, 1),
    }
    return emit(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
