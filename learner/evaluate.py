"""Evaluate a run's policy again, on other noises or more of them:
``python -m learner.evaluate RUN_DIR [--checkpoint DIR] [--device cpu|cuda] [KEY=VALUE ...]``.

A run evaluates its policy on one fixed set of held-out noises (`eval.seed`), so every evaluation of
the run is comparable; but a gain measured on one noise set can belong to that set (every seed's
policy may move the same way, so repeating seeds does not reveal it). This command loads the
checkpoint's config and LoRA (the newest valid checkpoint of RUN_DIR unless --checkpoint names one),
applies the overrides (typically `eval.seed=7 eval.samples_per_prompt=8`), and samples the held-out
prompts with the initial policy and with the checkpoint's, in this process, through the same
rollout worker, deterministic sampler, reward server and pixel metric as the run. With the run's own
eval settings it reproduces the run's numbers.

Prints, per step count, the learned reward and (shapes prompts) the held-out fidelity of both
policies and the trained policy's change with its standard error over the images (the same noises
for both policies: a paired difference). Writes RUN_DIR/eval/recheck-epoch-NNNNNN-seed-S.json (both
policies' metrics, the change) and .png (the labelled grid, initial rows first), with -2, -3, ...
after the name when it is taken; `--out DIR` writes them there instead (a read-only run dir). It may
run beside the training run: a checkpoint pruned while it is read is looked up again. Exit code 2
on bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import yaml

from learner.config import ConfigError, build_config
from plumbing.errors import UsageError


def paired_change(initial: np.ndarray, trained: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of trained - initial over images scored on the same noises (N,);
    images whose score is missing (NaN) in either are left out."""
    d = trained - initial
    d = d[np.isfinite(d)]
    if d.size == 0:
        return float("nan"), float("nan")
    sem = float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else float("nan")
    return float(d.mean()), sem


def change_table(initial, trained) -> dict[str, float]:
    """eval_{reward,fidelity}_{k}step_change and _change_sem for two EvalResults of the same images' noises."""
    out = {}
    for qi, k in enumerate(trained.steps):
        out[f"eval_reward_{k}step_change"], out[f"eval_reward_{k}step_change_sem"] = paired_change(
            initial.rewards[qi], trained.rewards[qi]
        )
        if trained.fidelity is not None:
            mean, sem = paired_change(initial.fidelity[qi], trained.fidelity[qi])
            out[f"eval_fidelity_{k}step_change"], out[f"eval_fidelity_{k}step_change_sem"] = mean, sem
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m learner.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="the run directory (its checkpoints/ and eval/)")
    p.add_argument("--checkpoint", help="a checkpoint directory (default: the run's newest valid one)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="where to sample and score (default: cuda when available)")
    p.add_argument(
        "--out", help="where to write the report and grid (default: RUN_DIR/eval; e.g. for a read-only run dir)"
    )
    p.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. eval.seed=7 eval.samples_per_prompt=8"
    )
    return p.parse_intermixed_args(argv)


ADAPTER_KEYS = ("pretrained", "family", "lora_rank", "lora_alpha", "lora_target_modules")


def load_target(args: argparse.Namespace):
    """(checkpoint state, config with the overrides) or UsageError."""
    from learner.run.checkpoint import CheckpointError, checkpoint_dir, read_checkpoint, read_latest

    try:  # the newest checkpoint may be pruned by the run while we read it: read_latest looks again
        state = read_checkpoint(args.checkpoint) if args.checkpoint else read_latest(checkpoint_dir(args.run_dir))
    except CheckpointError as err:
        raise UsageError(str(err)) from None
    except OSError as err:
        raise UsageError(f"checkpoint {args.checkpoint}: {err.strerror or err}") from None
    if state is None:
        raise UsageError(f"{args.run_dir}: no valid checkpoint under {checkpoint_dir(args.run_dir)}")
    saved = build_config(yaml.safe_load(state.config_yaml))
    cfg = build_config(yaml.safe_load(state.config_yaml), args.overrides)
    for key in ADAPTER_KEYS:  # the checkpoint's LoRA only fits the model and adapters it was trained on
        if getattr(saved.model, key) != getattr(cfg.model, key):
            raise ConfigError(
                f"model.{key}: the checkpoint's LoRA was trained with {getattr(saved.model, key)!r}, not "
                f"{getattr(cfg.model, key)!r}; an evaluation keeps the run's model and adapters"
            )
    env = cfg.reward.runtime_env
    if env is not None and env.changes_code:
        raise ConfigError(
            "reward.runtime_env: this command scores in its own process; the run's reward needs its own environment"
        )
    return state, cfg


def evaluate(args: argparse.Namespace) -> dict:
    import torch

    from actors.batch import PolicyWeights
    from actors.prompts import load_prompts
    from actors.rollout_worker import RolloutWorker
    from learner.driver.evaluation import eval_set, evaluate_policy, save_eval_grid
    from learner.driver.launch import worker_arguments
    from learner.run.outputs import write_atomic
    from plumbing.remote import LocalActor
    from rewards.pool import RewardPool
    from rewards.server import RewardServer

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device here")
    state, cfg = load_target(args)
    out_dir = writable_dir(
        Path(args.out) if args.out else Path(args.run_dir) / "eval"
    )  # before the sampling, not after
    e, r = cfg.eval, cfg.reward
    prompts, samples, seeds = eval_set(e, load_prompts(e.prompts, "eval.prompts"))  # as in a run
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    print(
        f"checkpoint {state.path} (epoch {state.epoch}, policy v{state.weights_version}): {len(prompts)} held-out "
        f"prompts x {e.samples_per_prompt} noises (eval.seed {e.seed}), steps {', '.join(map(str, e.steps))}, on "
        f"{device}",
        flush=True,
    )
    rollout_kw, reward_kw, _ = worker_arguments(cfg)  # the run's workers, on this process's device
    worker, server = RolloutWorker(**rollout_kw | {"device": device}), RewardServer(**reward_kw | {"device": device})
    sampler, pool = LocalActor(worker), RewardPool([LocalActor(server)], r.batch_size, r.timeout_s, r.max_retries)
    samplers = cfg.learner.num_workers if cfg.layout == "hybrid" else cfg.rollout.num_actors  # the run's samplers
    shares = [sampler] * samplers  # one call per sampler of the run: its batches, so its numbers
    initial = evaluate_policy(shares, pool, samples, seeds, list(e.steps))  # LoRA B = 0: the pretrained model
    worker.set_weights(PolicyWeights(state.weights_version, state.lora))
    trained = evaluate_policy(shares, pool, samples, seeds, list(e.steps))
    stem = free_stem(out_dir, f"recheck-{state.path.name}-seed-{e.seed}")
    save_eval_grid(trained, prompts, out_dir / f"{stem}.png", f"epoch {state.epoch - 1}", initial)
    report = {
        "checkpoint": str(state.path),
        "epoch": state.epoch,
        "eval": e.model_dump(mode="json"),
        "initial": initial.metrics(),
        "trained": trained.metrics(),
        "change": change_table(initial, trained),
    }
    write_atomic(out_dir / f"{stem}.json", (json.dumps(report, indent=1) + "\n").encode())
    print(format_report(report), flush=True)
    print(f"written: {out_dir / stem}.json, .png")
    return report


def writable_dir(path: Path) -> Path:
    """`path`, created if needed, after a test write; UsageError naming it (and --out) if it cannot be written."""
    probe = path / f".write-test-{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise UsageError(
            f"cannot write to {path} ({err.strerror or err}); pass --out DIR to write the report elsewhere"
        ) from None
    return path


def free_stem(directory: Path, stem: str) -> str:
    """`stem`, or `stem-2`, `stem-3`, ... : the first whose report is not in `directory` yet, so that a
    recheck never replaces an earlier one (same seed, other samples per prompt or step counts)."""
    n, name = 1, stem
    while (directory / f"{name}.json").exists():
        n += 1
        name = f"{stem}-{n}"
    return name


def format_report(report: dict) -> str:
    """One line per step count: each metric as initial -> trained (change +- its standard error)."""
    lines = []
    for k in report["eval"]["steps"]:
        parts = []
        for name in ("reward", "fidelity"):
            key = f"eval_{name}_{k}step"
            if f"{key}_mean" in report["trained"]:
                c = report["change"]
                parts.append(
                    f"{name} {report['initial'][key + '_mean']:.4f} -> {report['trained'][key + '_mean']:.4f} "
                    f"({c[key + '_change']:+.4f} +- {c[key + '_change_sem']:.4f})"
                )
        lines.append(f"{k}-step  " + "  ".join(parts))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not Path(args.run_dir).is_dir():
        print(f"error: {args.run_dir} is not a run directory", file=sys.stderr)
        return 2
    from plumbing.console import quiet_environment, show_warnings_once

    quiet_environment()
    show_warnings_once()
    try:
        evaluate(args)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
