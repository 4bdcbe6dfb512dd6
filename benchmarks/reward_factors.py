"""Where do within-pair reward differences come from, and can the policy act on each source?

    python -m benchmarks.reward_factors [--model shapes-turbo] [--pairs 512] [--train-steps 8] [--out JSON]

The shapes reward averages per-factor probabilities (colour, shape, size, position) of a classifier.
SDPO and DDPO learn only from differences between the two trajectories of a pair (same caption,
same initial noise), so what matters is which factors those differences come from, and whether the
model can change each factor from the caption at all.

1. Attribution: `pairs` trajectory pairs of the training captions at T = `train-steps`, eta = 1 (the
   training sampler); each trajectory's final sample x_T decoded and read by the classifier. With
   d_f the within-pair difference of factor f's probability and d = mean over the reward's F factors
   of d_f, factor f's share of the variance of d is Cov(d_f, d) / (F Var(d)) (the shares sum to 1).
   Given for the four-factor reward and for the three-factor one (colour, shape, size).
2. Control: for each factor, `pairs` (caption, noise) draws; the caption is changed in that factor
   alone (to another value, at random) and both captions are sampled from the same noise with the
   deterministic T-step sampler. `responds`: the fraction of draws where BOTH images show their own
   caption's value, as the pixel metric reads them, i.e. changing the word moved the factor to the new
   value (0 where the noise decides the factor, whatever the words; chance^2 for images unrelated to
   the caption); `follows`: the fraction of images showing the stated value (chance: 1/6, 1/3, 1/2,
   1/4). A factor the policy can act on responds to the caption; one the noise decides does not.

Prints both tables and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import replace

import numpy as np
import torch

from actors.config import ModelConfig
from actors.policy import load_pipeline
from actors.sampling import decode_to_uint8, final_queries, pair_generator, sample_deterministic, sample_pairs
from benchmarks.output import emit
from plumbing.seeds import seeded_generator
from shapes import net
from shapes.data import COLOURS, POSITIONS, SHAPES, SIZES, parse_caption, train_prompts
from shapes.fidelity import factor_table

NAMES = ("colour", "shape", "size", "position")
VALUES = {"colour": tuple(COLOURS), "shape": SHAPES, "size": tuple(SIZES), "position": tuple(POSITIONS)}
CHANCE = {name: 1 / len(values) for name, values in VALUES.items()}
SEED = 11


def attribution(probs: np.ndarray, columns: list[int]) -> dict[str, float]:
    """probs (N, 2, 4) per-factor probabilities of both trajectories -> each chosen factor's share of
    Var(d), d = mean over the chosen factors of the within-pair differences."""
    diffs = probs[:, 0, columns] - probs[:, 1, columns]  # (N, F)
    d = diffs.mean(axis=1)
    var = d.var()
    return {
        NAMES[c]: float(np.mean((diffs[:, i] - diffs[:, i].mean()) * (d - d.mean())) / (len(columns) * var))
        for i, c in enumerate(columns)
    }


def changed(caption: str, factor: str, rng: np.random.Generator) -> str:
    f = parse_caption(caption)
    others = [v for v in VALUES[factor] if v != getattr(f, factor)]
    return replace(f, **{factor: others[rng.integers(len(others))]}).caption


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.reward_factors", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="shapes-turbo", help="model.pretrained (default: the few-step student)")
    p.add_argument("--pairs", type=int, default=512)
    p.add_argument("--train-steps", type=int, default=8)
    p.add_argument("--out", help="also write the JSON result here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    pipe = load_pipeline(ModelConfig(pretrained=args.model, local_files_only=True), with_lora=False)
    classifier = net.load()
    rng = np.random.default_rng(SEED)
    captions = train_prompts()
    prompts = [captions[i] for i in rng.integers(0, len(captions), args.pairs)]

    probs = []
    with torch.no_grad():
        for lo in range(0, args.pairs, 64):
            ps = prompts[lo : lo + 64]
            pairs = sample_pairs(
                pipe, ps, [pair_generator(SEED, 0, lo + i) for i in range(len(ps))], args.train_steps, 1.0
            )
            images = final_queries(pipe, pairs.latents)[2][:, :, 0]  # (B, 2, H, W, 3)
            flat = images.reshape(-1, *images.shape[2:])
            pr = net.factor_probabilities(
                classifier, net.to_pixels(flat), net.targets([q for q in ps for _ in range(2)])
            )
            probs.append(pr.view(len(ps), 2, 4).double().numpy())
    probs = np.concatenate(probs)
    shares = {"four_factors": attribution(probs, [0, 1, 2, 3]), "colour_shape_size": attribution(probs, [0, 1, 2])}
    differ = {name: float(np.mean(np.abs(probs[:, 0, i] - probs[:, 1, i]))) for i, name in enumerate(NAMES)}

    control = {}
    for f_index, factor in enumerate(NAMES):
        other = [changed(c, factor, rng) for c in prompts]
        gens = lambda: [seeded_generator(SEED, 1, i) for i in range(len(prompts))]  # noqa: E731  the same noises
        a = decode_to_uint8(pipe, sample_deterministic(pipe, prompts, gens(), args.train_steps))
        b = decode_to_uint8(pipe, sample_deterministic(pipe, other, gens(), args.train_steps))
        hits_a, hits_b = factor_table(a, prompts)[:, f_index], factor_table(b, other)[:, f_index]
        responds = float(np.mean(hits_a * hits_b))
        control[factor] = {
            "responds": round(responds, 4),
            "follows": round(float(np.mean(np.concatenate([hits_a, hits_b]))), 4),
            "chance": round(CHANCE[factor], 4),
        }
        print(
            f"control {factor}: both images show their caption's value {responds:.3f}; "
            f"stated value shown {control[factor]['follows']:.3f} (chance {CHANCE[factor]:.3f})",
            flush=True,
        )

    print(
        f"\n{'factor':<10}{'mean |d_f|':>12}{'share (4)':>12}{'share (3)':>12}"
        f"{'responds':>10}{'follows':>10}{'chance':>8}"
    )
    for name in NAMES:
        print(
            f"{name:<10}{differ[name]:>12.4f}{shares['four_factors'][name]:>12.3f}"
            f"{shares['colour_shape_size'].get(name, float('nan')):>12.3f}{control[name]['responds']:>10.3f}"
            f"{control[name]['follows']:>10.3f}{control[name]['chance']:>8.3f}"
        )
    result = {
        "benchmark": "reward_factors",
        "machine": f"{os.cpu_count()}-core CPU, {platform.machine()}",
        "model": args.model,
        "pairs": args.pairs,
        "train_steps": args.train_steps,
        "eta": 1.0,
        "mean_abs_within_pair_difference": {k: round(v, 4) for k, v in differ.items()},
        "variance_share": {r: {k: round(v, 4) for k, v in s.items()} for r, s in shares.items()},
        "control": control,
        "wall_s": round(time.perf_counter() - start, 1),
    }
    return emit(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
