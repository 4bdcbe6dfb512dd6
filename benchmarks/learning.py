"""The replication: does SDPO align a few-step model better than DDPO at every sampling step count?
The paper's comparison (Zhang et al., arXiv 2411.11727, section 5) in miniature, on a CPU.

    python -m benchmarks.learning [--jobs 2] [--phase sweep|main|control|all] [--report]

DESIGN (fixed before any run; the code below implements exactly this):

- Model: `shapes-turbo`, the few-step student distilled from the pretrained shapes model as SD-Turbo is
  from SD (scripts/shapes_distill.py): good 1-step samples, like the paper's base model.
- Reward: `shapes_classifier` with factors colour, shape and size: every component is one the model
  changes with the caption (benchmarks/reward_factors.py measures it; position, decided by the
  noise, is left out). The held-out pixel fidelity (shapes/fidelity.py) is reported beside
  it and never trained on or selected by.
- Training regime: DDIM at eta = 1 with T = TRAIN_STEPS = 8 steps, LoRA rank 4 on the attention
  projections, the 120 training captions, 64 pairs (128 images) per epoch. T = 8, not the paper's
  50: one run of 12,288 images costs about 25 CPU-minutes at T = 8 and would cost about 2.5 CPU-hours
  at T = 50; the 30 runs below would take weeks of this 2-core machine at T = 50. 8 steps are still
  more than any evaluated step count except the last.
- Arms (ARMS):
    sdpo           SDPO: dense rewards from 3 queries per trajectory (x0 of the first step, the anchor,
                   the last step), the step-shuffled schedule, 64 (pair, step) items per optimizer
                   step, clip range 1e-2, the last step left out of the update (no reward sees its
                   action; docs/shapes.md "The last step").
    ddpo           DDPO as kvablack/ddpo-pytorch runs it: the decoded x_T scored (1 query per
                   trajectory), every step trained, all timesteps of 32 pairs (its train.batch_size 4
                   trajectories x accumulation) in one optimizer step, so 2 optimizer steps per epoch
                   as its aesthetic config, PPO ratio clip 1e-4.
    ddpo_stepwise  DDPO's objective on SDPO's schedule (step-shuffled, 64 items per optimizer step):
                   the ablation that separates SDPO's objective from its schedule.
- Budget: equal sampled images, the primary axis: EPOCHS = 96 epochs = 12,288 images per run for
  every arm. Reward queries are reported beside (SDPO makes 3 per image, DDPO 1).
- Tuning: every arm gets the same learning-rate grid (LR_GRID), one run each with seed SWEEP_SEED
  (never a reported seed) at a quarter of the budget (SWEEP_EPOCHS); the learning rate with the
  highest mean training reward of the final sample over the last quarter of its epochs wins (each
  arm's own final-sample reward: x0_{T-1} for SDPO, x_T for DDPO). Only training captions and
  training samples choose; held-out captions and noises never do.
- Seeds: SEEDS = 0..4 for every arm. A seed fixes the prompts of every epoch, every pair's noises
  and the LoRA initialization, so the arms are paired seed by seed.
- Evaluation: the 24 held-out captions (new combinations of known words) x 8 noises from
  EVAL_SEED, which no run trains on, at 1, 2, 4 and 8 deterministic (eta = 0) steps; learned reward
  and pixel fidelity; every 16 epochs and after the last. The initial policy is evaluated the same way.
- Metric: the held-out learned reward at each k after the last epoch; per arm mean, std and per-seed
  values, and paired differences SDPO - DDPO with standard error, t and 95 % interval (benchmarks/stats.py).
- Decision rule (benchmarks.stats.decide):
    confirm         SDPO beats both DDPO arms at all four k with paired t > 2.8;
    refute at k     the 95 % upper bound of SDPO - DDPO(same schedule) is below half of SDPO's own
                    gain over the initial policy at k;
    schedule        SDPO beats only the ddpo-pytorch-schedule arm: the gain belongs to the schedule;
    otherwise       "not resolvable at this budget".
- Positive control, in the same design: the three arms against `jpeg_compressibility` (a reward both
  algorithms are known to move: smoother images), each at its chosen learning rate, CONTROL_SEEDS,
  SWEEP_EPOCHS epochs; it shows that each arm's machinery moves the policy where a reward points.

Every run is one single-threaded process (`python -m learner.main`, ray.enabled=false; a Ray run
gives identical numbers, tests/e2e/learner/test_e2e.py). Its metrics are written to
benchmarks/results/learning/<phase>-<arm>-<lr>-seed<s>.json as soon as it ends, and a run whose file
exists is not run again: the replication can be run (and committed) in parts. `--report` (also run
at the end) reads whatever runs exist and writes benchmarks/results/learning_shapes.json (the
tables, the decision, which runs are still missing) and learning_shapes.png (held-out reward and
fidelity against sampled images, one panel per k, a mean +- s.e. band per arm).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from benchmarks.cli import REPO, cli_env
from benchmarks.stats import decide, paired

RESULTS = REPO / "benchmarks" / "results"
RUNS = RESULTS / "learning"
CONFIG = "shapes"
TRAIN_STEPS = 8
PAIRS_PER_EPOCH = 64
EPOCHS = 96  # 96 x 64 pairs x 2 = 12,288 sampled images per run
SWEEP_EPOCHS = EPOCHS // 4
EVAL_EVERY = 16
EVAL_SEED = 4242
EVAL_NOISES = 8
STEPS = (1, 2, 4, 8)
SEEDS = (0, 1, 2, 3, 4)
SWEEP_SEED = 100
CONTROL_SEEDS = (0, 1, 2)
LR_GRID = (5e-5, 1.5e-4, 5e-4, 1.5e-3)
REWARD = ["reward.name=shapes_classifier", "reward.options={shapes_classifier: {factors: 'colour,shape,size'}}"]
CONTROL_REWARD = ["reward.name=jpeg_compressibility", "reward.options={}"]
# everything the design fixes, so that a change of the default job (the `shapes` preset) changes nothing here
COMMON = [
    "layout=disaggregated",
    "rollout.num_actors=2",
    "learner.num_workers=1",
    "rollout.chunk_size=8",
    "model.lora_rank=4",
    "model.lora_alpha=4.0",
    "train.stat_buffer_size=32",
    "train.stat_min_count=16",
    "learner.num_cpus=0.5",
    "checkpoint.every=1",
    "model.pretrained=shapes-turbo",
    f"sampling.num_steps={TRAIN_STEPS}",
    "sampling.eta=1.0",
    f"rollout.pairs_per_epoch={PAIRS_PER_EPOCH}",
    "prompts.source=shapes_train",
    "eval.prompts=shapes_heldout",
    "eval.num_prompts=24",
    f"eval.samples_per_prompt={EVAL_NOISES}",
    f"eval.seed={EVAL_SEED}",
    f"eval.every={EVAL_EVERY}",
    "ray.enabled=false",
    "output.tensorboard=false",
    "output.image_every=1000000",
]
ARMS: dict[str, list[str]] = {
    "sdpo": [
        "algorithm=sdpo",
        "train.clip_range=1e-2",
        "train.skip_last_step=true",
        "train.batch_size=2",
        "train.gradient_accumulation_steps=32",
        "train.micro_batch_size=64",
    ],
    "ddpo": [
        "algorithm=ddpo",
        "train.schedule=trajectory",
        "sampling.reward_queries=final",
        "train.clip_range=1e-4",
        "train.skip_last_step=false",
        "train.batch_size=2",
        "train.gradient_accumulation_steps=16",
        "train.micro_batch_size=32",
    ],
    "ddpo_stepwise": [
        "algorithm=ddpo",
        "train.schedule=step_shuffled",
        "sampling.reward_queries=final",
        "train.clip_range=1e-4",
        "train.skip_last_step=false",
        "train.batch_size=2",
        "train.gradient_accumulation_steps=32",
        "train.micro_batch_size=64",
    ],
}
QUERIES_PER_IMAGE = {"sdpo": 3, "ddpo": 1, "ddpo_stepwise": 1}
KEEP = ("epoch", "reward_final_mean", "reward_1step_mean", "reward_queries", "loss", "approx_kl", "grad_norm")


def run_name(phase: str, arm: str, lr: float, seed: int) -> str:
    return f"{phase}-{arm}-lr{lr:g}-seed{seed}"


def overrides(phase: str, arm: str, lr: float, seed: int) -> list[str]:
    reward = CONTROL_REWARD if phase == "control" else REWARD
    return [*COMMON, *reward, *ARMS[arm], f"train.learning_rate={lr}", f"seed={seed}"]


def run_epochs(phase: str) -> int:
    return EPOCHS if phase == "main" else SWEEP_EPOCHS


def compact(records: list[dict]) -> list[dict]:
    """A run's metrics as committed: the training figures of every epoch and every evaluation."""
    return [{k: v for k, v in r.items() if k in KEEP or k.startswith("eval_")} for r in records]


def run(phase: str, arm: str, lr: float, seed: int, runs_dir: Path = RUNS, keep: Path | None = None) -> Path:
    """One run, unless its result exists; returns the result file. `keep`: copy its last checkpoint to
    keep/<run name>."""
    out = runs_dir / f"{run_name(phase, arm, lr, seed)}.json"
    if out.exists():
        return out
    from learner.run.outputs import read_metrics

    env = cli_env()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "learner.main",
            "--config",
            CONFIG,
            "--epochs",
            str(run_epochs(phase)),
            "--run-dir",
            str(Path(tmp) / "run"),
            *overrides(phase, arm, lr, seed),
        ]
        t0 = time.perf_counter()
        res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
        initial = json.loads((Path(tmp) / "run" / "eval" / "initial.json").read_text())
        record = {
            "phase": phase,
            "arm": arm,
            "learning_rate": lr,
            "seed": seed,
            "epochs": run_epochs(phase),
            "wall_s": round(time.perf_counter() - t0, 1),
            "overrides": overrides(phase, arm, lr, seed),
            "config": yaml.safe_load((Path(tmp) / "run" / "config.yaml").read_text()),
            "initial": initial,
            "history": compact(read_metrics(Path(tmp) / "run")),
        }
        if keep is not None:
            from learner.run.checkpoint import list_checkpoints

            last = list_checkpoints(Path(tmp) / "run" / "checkpoints")[-1]
            shutil.copytree(last, keep / run_name(phase, arm, lr, seed) / last.name, dirs_exist_ok=True)
    runs_dir.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(record) + "\n")
    tmp_out.rename(out)
    print(f"{out.name}: {record['wall_s']:.0f} s", flush=True)
    return out


def load_runs(runs_dir: Path = RUNS) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(runs_dir.glob("*.json"))]


def training_score(history: list[dict]) -> float:
    """What the sweep selects by: the mean training reward of the final sample over the last quarter of epochs."""
    tail = history[-max(1, len(history) // 4) :]
    return statistics.fmean(r["reward_final_mean"] for r in tail)


def chosen_rates(runs: list[dict]) -> dict[str, float]:
    """Each arm's learning rate: the sweep run with the best training score (only arms whose whole grid ran)."""
    out = {}
    for arm in ARMS:
        sweep = {
            r["learning_rate"]: training_score(r["history"]) for r in runs if r["phase"] == "sweep" and r["arm"] == arm
        }
        if set(sweep) == set(LR_GRID):
            out[arm] = max(sweep, key=sweep.get)
    return out


def final_eval(run_record: dict, what: str, k: int) -> float:
    return [r for r in run_record["history"] if f"eval_{what}_{k}step_mean" in r][-1][f"eval_{what}_{k}step_mean"]


def summarize(values: list[float]) -> dict:
    n = len(values)
    se = statistics.stdev(values) / n**0.5 if n > 1 else float("nan")
    return {
        "mean": round(statistics.fmean(values), 4),
        "std": round(statistics.stdev(values), 4) if n > 1 else None,
        "se": round(se, 4) if n > 1 else None,
        "per_seed": [round(v, 4) for v in values],
    }


def report(runs: list[dict], plot_path: Path | None) -> dict:
    """The tables, the decision (when every main run exists) and the figure, from the runs there are."""
    rates = chosen_rates(runs)
    sweep = {
        arm: {
            f"{r['learning_rate']:g}": round(training_score(r["history"]), 4)
            for r in runs
            if r["phase"] == "sweep" and r["arm"] == arm
        }
        for arm in ARMS
    }
    main = {
        arm: sorted(
            (r for r in runs if r["phase"] == "main" and r["arm"] == arm and r["learning_rate"] == rates.get(arm)),
            key=lambda r: r["seed"],
        )
        for arm in ARMS
    }
    planned = [run_name("sweep", a, lr, SWEEP_SEED) for a in ARMS for lr in LR_GRID]
    planned += [
        run_name(p, a, rates[a], s)
        for a in ARMS
        if a in rates
        for p, seeds in (("main", SEEDS), ("control", CONTROL_SEEDS))
        for s in seeds
    ]
    have = {run_name(r["phase"], r["arm"], r["learning_rate"], r["seed"]) for r in runs}
    out = {
        "benchmark": "learning (shapes task, few-step student)",
        "design": "benchmarks/learning.py docstring",
        "machine": f"{os.cpu_count()}-core CPU, {platform.machine()}",
        "chosen_learning_rate": rates,
        "sweep_training_reward": sweep,
        "missing_runs": [n for n in planned if n not in have]
        + (["main and control runs (the sweep is not complete)"] if len(rates) < len(ARMS) else []),
        "wall_s_of_runs": round(sum(r["wall_s"] for r in runs), 1),
    }
    shapes_runs = [
        r for r in runs if r["phase"] != "control"
    ]  # the control's initial policy is scored by its own reward
    if shapes_runs:
        out["initial"] = {
            f"{w}_{k}step": round(shapes_runs[0]["initial"][f"eval_{w}_{k}step_mean"], 4)
            for w in ("reward", "fidelity")
            for k in STEPS
        }
    out["final"] = {
        arm: {
            f"{w}_{k}step": summarize([final_eval(r, w, k) for r in rs]) for w in ("reward", "fidelity") for k in STEPS
        }
        for arm, rs in main.items()
        if rs
    }
    common = sorted(set.intersection(*({r["seed"] for r in rs} for rs in main.values()))) if all(main.values()) else []
    if len(common) >= 2:
        per = {
            arm: {k: [final_eval(r, "reward", k) for r in rs if r["seed"] in common] for k in STEPS}
            for arm, rs in main.items()
        }
        initial = {k: out["initial"][f"reward_{k}step"] for k in STEPS}
        out["paired_seeds"] = common
        out["decision"] = decide(per["sdpo"], per["ddpo"], per["ddpo_stepwise"], initial)
        out["paired_fidelity"] = {
            k: {
                "sdpo_minus_ddpo": paired(
                    *[[final_eval(r, "fidelity", k) for r in main[a] if r["seed"] in common] for a in ("sdpo", "ddpo")]
                ).as_dict()
            }
            for k in STEPS
        }
        if common != list(SEEDS):
            out["decision"]["verdict"] += f" (on seeds {common} of {list(SEEDS)}: provisional)"
    control = {
        arm: [r for r in runs if r["phase"] == "control" and r["arm"] == arm and r["learning_rate"] == rates.get(arm)]
        for arm in ARMS
    }
    out["control"] = {
        arm: {
            f"reward_{k}step_gain": summarize(
                [final_eval(r, "reward", k) - r["initial"][f"eval_reward_{k}step_mean"] for r in rs]
            )
            for k in STEPS
        }
        for arm, rs in control.items()
        if rs
    }
    if plot_path is not None and any(main.values()):
        plot(main, shapes_runs[0]["initial"], plot_path)
    return out


def plot(main: dict[str, list[dict]], initial: dict, path: Path) -> None:
    """One panel per step count: held-out value against sampled images, mean +- s.e. over seeds per arm."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(14, 6.5), layout="constrained")
    axes = fig.subplots(2, len(STEPS), squeeze=False)
    for row, (what, label) in enumerate(
        (("reward", "held-out learned reward"), ("fidelity", "held-out pixel fidelity"))
    ):
        for ax, k in zip(axes[row], STEPS):
            key = f"eval_{what}_{k}step_mean"
            for arm, runs in main.items():
                if not runs:
                    continue
                epochs = [r["epoch"] for r in runs[0]["history"] if key in r]
                per_epoch = [[next(r[key] for r in run["history"] if r["epoch"] == e) for run in runs] for e in epochs]
                xs = [0] + [(e + 1) * PAIRS_PER_EPOCH * 2 for e in epochs]
                mean = [initial[key]] + [statistics.fmean(v) for v in per_epoch]
                se = [0.0] + [statistics.stdev(v) / len(v) ** 0.5 if len(v) > 1 else 0.0 for v in per_epoch]
                ax.plot(xs, mean, marker="o", label=f"{arm} ({len(runs)} seeds)")
                ax.fill_between(xs, [m - s for m, s in zip(mean, se)], [m + s for m, s in zip(mean, se)], alpha=0.2)
            ax.set(title=f"{k} step{'s' * (k > 1)}", xlabel="sampled images", ylabel=label if k == STEPS[0] else None)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize="small")
    fig.savefig(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.learning", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--phase",
        choices=("sweep", "main", "control", "all"),
        default="all",
        help="which runs to run (existing ones are skipped)",
    )
    p.add_argument(
        "--jobs", type=int, default=1, help="runs at a time (each one single-threaded process; at most the CPU cores)"
    )
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=list(SEEDS),
        help="main-phase seeds to run now (the report always wants all of SEEDS)",
    )
    p.add_argument(
        "--arms",
        nargs="+",
        choices=list(ARMS),
        default=list(ARMS),
        help="arms to run now (e.g. to split the runs between processes)",
    )
    p.add_argument(
        "--keep",
        type=Path,
        help="copy each run's last checkpoint here (for benchmarks.gradient_alignment --checkpoint)",
    )
    p.add_argument("--report", action="store_true", help="only write the report from the runs there are")
    p.add_argument("--out", default=str(RESULTS / "learning_shapes.json"))
    p.add_argument("--plot", default=str(RESULTS / "learning_shapes.png"))
    args = p.parse_args(argv)
    start = time.perf_counter()
    if not args.report:
        with ThreadPoolExecutor(args.jobs) as jobs:
            if args.phase in ("sweep", "all"):
                list(
                    jobs.map(
                        lambda job: run("sweep", job[0], job[1], SWEEP_SEED),
                        [(a, lr) for a in args.arms for lr in LR_GRID],
                    )
                )
            rates = chosen_rates(load_runs())
            if args.phase in ("main", "all", "control") and not set(args.arms) <= set(rates):
                raise SystemExit("error: the sweep is not complete; run --phase sweep first")
            if args.phase in ("main", "all"):  # seed by seed across the arms, so a partial replication stays paired
                list(
                    jobs.map(
                        lambda job: run("main", job[1], rates[job[1]], job[0], keep=args.keep),
                        [(s, a) for s in args.seeds for a in args.arms],
                    )
                )
            if args.phase in ("control", "all"):
                list(
                    jobs.map(
                        lambda job: run("control", job[1], rates[job[1]], job[0]),
                        [(s, a) for s in CONTROL_SEEDS for a in args.arms],
                    )
                )
    result = report(load_runs(), Path(args.plot)) | {"report_wall_s": round(time.perf_counter() - start, 1)}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
