"""Ray overhead: the Ray system's epoch time against a single-process loop doing the same work.

    python -m benchmarks.overhead [--epochs 6] [--pairs 8] [--steps 8] [--chunk 4] [--actors 1 2] [--repeats 2]
        [--out FILE.json]

Runs the real CLI (tiny preset: tiny pipeline, JPEG reward) twice per rollout-actor count N, the
same seed, model, batch and steps: with ray.enabled=false (every worker in the driver process, the
exact same loop; its N rollout workers take their chunks one after another) and with
ray.enabled=true (N rollout actors, a reward server and the learner as Ray actors). Both runs sample
identical pairs, which the benchmark checks. Epoch time is the median of `time_epoch_s` over the
epochs after the first of each run (the first includes actor start-up and lazy loading), over
`--repeats` runs per mode in ABBA order. The held-out evaluation
is off. With N = 1 the work is serial in both modes, so ray / in-process is the overhead of the
actors, the object store and the remote calls (goal: at most 1.05); with N > 1 Ray also runs the
rollout chunks in parallel. Prints progress and a final JSON line.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.cli import REPO, cli_env
from benchmarks.output import emit

STAGES = ("time_epoch_s", "time_publish_s", "time_rollout_s", "time_reward_s", "time_update_s")


def run_once(run_dir: Path, ray_enabled: bool, actors: int, args) -> list[dict]:
    from learner.run.outputs import read_metrics

    overrides = [
        f"ray.enabled={str(ray_enabled).lower()}",
        f"rollout.num_actors={actors}",
        f"rollout.pairs_per_epoch={args.pairs}",
        f"rollout.chunk_size={args.chunk}",
        f"sampling.num_steps={args.steps}",
        "eval.enabled=false",
        "output.image_every=1000",
    ]
    if ray_enabled:
        overrides.append(f"ray.num_cpus={os.cpu_count()}")
    env = cli_env()
    cmd = [sys.executable, "-m", "learner.main", "--epochs", str(args.epochs), "--run-dir", str(run_dir), *overrides]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    return read_metrics(run_dir)


def medians(runs: list[list[dict]]) -> dict[str, float]:
    steady = [m for metrics in runs for m in metrics[1:]]  # the first epoch of a run includes start-up
    return {k: round(statistics.median(m[k] for m in steady), 4) for k in STAGES}


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.overhead", description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=6, help="epochs per run (the first is not timed)")
    p.add_argument("--pairs", type=int, default=8, help="pairs per epoch (B)")
    p.add_argument("--steps", type=int, default=8, help="DDIM steps T")
    p.add_argument("--chunk", type=int, default=4, help="pairs per rollout call (rollout.chunk_size)")
    p.add_argument("--actors", type=int, nargs="+", default=[1, 2], help="rollout actor counts N")
    p.add_argument("--repeats", type=int, default=2, help="runs per mode and N, in ABBA order")
    p.add_argument("--out", help="also write the result JSON to this file")
    args = p.parse_args()
    if args.epochs < 2:
        p.error("--epochs must be at least 2 (the first epoch is not timed)")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.actors:
            runs: dict[str, list] = {"in_process": [], "ray": []}
            order = [("in_process", False), ("ray", True)]
            for r in range(args.repeats):  # ABBA order, so a drift in machine load hits both modes alike
                for mode, enabled in order if r % 2 == 0 else order[::-1]:
                    what = f"{args.epochs} epochs x {args.pairs} pairs x {args.steps} steps"
                    print(f"N={n} rollout actor(s), {mode} (run {r + 1}/{args.repeats}): {what} ...", flush=True)
                    runs[mode].append(run_once(Path(tmp) / f"{mode}-{n}-{r}", enabled, n, args))
            same = all(
                a["reward_1step_mean"] == b["reward_1step_mean"] and a["loss"] == b["loss"]
                for local_run, ray_run in zip(runs["in_process"], runs["ray"])
                for a, b in zip(local_run, ray_run, strict=True)
            )
            local, ray_ = medians(runs["in_process"]), medians(runs["ray"])
            row = {
                "rollout_actors": n,
                "in_process": local,
                "ray": ray_,
                "ray_over_in_process": round(ray_["time_epoch_s"] / local["time_epoch_s"], 3),
                "identical_metrics": same,
            }
            print(
                f"  epoch time: in-process {local['time_epoch_s']:.3f} s, Ray {ray_['time_epoch_s']:.3f} s, "
                f"ratio {row['ray_over_in_process']}, identical metrics: {same}",
                flush=True,
            )
            rows.append(row)
    import ray

    result = {
        "benchmark": "overhead",
        "machine": f"{os.cpu_count()}-core CPU, {platform.machine()}",
        "ray": ray.__version__,
        "epochs": args.epochs,
        "pairs": args.pairs,
        "steps": args.steps,
        "chunk_size": args.chunk,
        "repeats": args.repeats,
        "timed_epochs_per_mode": args.repeats * (args.epochs - 1),
        "rows": rows,
    }
    return emit(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
