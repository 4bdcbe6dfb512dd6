"""SDPO against DDPO on the embedded task, at equal numbers of sampled pairs and the same seeds.

    python -m benchmarks.learning [--epochs 16] [--seeds 0 1] [--eval-every 4] [--ray] [--out FILE.json] [--plot FILE.png]

The embedded task is the default job (tiny preset): the tiny SD-architecture pipeline, the JPEG
compressibility reward, 8 pairs per epoch at T = 8 steps. For each seed, the real CLI runs
algorithm=sdpo and algorithm=ddpo with everything else equal (same preset, hyperparameters, seed,
prompts, pairs per epoch; the DDPO run shares SDPO's rollout and reward path). Every `--eval-every`
epochs and after the last, both are evaluated on the 8 held-out prompts with fixed noises at 1, 2, 4
and 8 deterministic (eta = 0) steps. The initial policy (LoRA B = 0, the same for both and every
seed) is evaluated once, in-process, with the same code. Runs in-process (ray.enabled=false; the
Ray run gives identical numbers, see tests/learner/test_e2e.py) unless --ray. Prints progress and a
final JSON line: per algorithm and step count, the final eval reward (mean over seeds, and per
seed) and its change from the initial policy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ALGORITHMS = ("sdpo", "ddpo")


def run_cli(run_dir: Path, algorithm: str, seed: int, args) -> list[dict]:
    from learner.run.outputs import read_metrics

    overrides = [f"algorithm={algorithm}", f"seed={seed}", f"eval.every={args.eval_every}", f"ray.enabled={str(args.ray).lower()}"]
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", HF_HUB_OFFLINE="1",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "learner.main", "--config", args.config, "--epochs", str(args.epochs), "--run-dir", str(run_dir), *overrides]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    return read_metrics(run_dir)


def initial_policy_eval(config: str) -> dict[str, float]:
    """Eval metrics of the initial policy, through the same evaluation code on in-process workers."""
    from actors.prompts import load_prompts
    from actors.rollout_worker import RolloutWorker
    from learner.config import load_config
    from learner.driver.evaluation import evaluate_policy, heldout_seeds
    from actors.remote import LocalActor
    from rewards.pool import RewardPool
    from rewards.server import RewardServer

    cfg = load_config(config)
    worker = RolloutWorker(model=cfg.model, sampling=cfg.sampling, seed=cfg.seed)  # LoRA B = 0: the base model
    w = cfg.reward
    server = RewardServer(name=w.name, batch_size=w.batch_size, options=w.options, weights=w.weights, modules=w.modules)
    pool = RewardPool([LocalActor(server)], w.batch_size, w.timeout_s, 0)
    prompts = load_prompts(cfg.eval.prompts)[: cfg.eval.num_prompts]
    result = evaluate_policy([LocalActor(worker)], pool, prompts, heldout_seeds(cfg.eval.seed, len(prompts)), list(cfg.eval.steps))
    return result.metrics()


def seed_mean_history(histories: list[list[dict]]) -> list[dict]:
    """Average each numeric key over seeds, epoch by epoch (all runs have the same epochs)."""
    out = []
    for records in zip(*histories):
        keys = set.intersection(*(set(r) for r in records))
        out.append({k: statistics.fmean(r[k] for r in records) for k in keys if isinstance(records[0][k], (int, float))})
    return out


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.learning", description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=16, help="epochs per run (the tiny preset's 16 by default)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="run seeds; each runs both algorithms")
    p.add_argument("--eval-every", type=int, default=4, help="held-out evaluation every this many epochs (and after the last)")
    p.add_argument("--config", default="tiny", help="preset or YAML config of both runs")
    p.add_argument("--ray", action="store_true", help="run on local Ray actors instead of in-process")
    p.add_argument("--out", help="also write the result JSON to this file")
    p.add_argument("--plot", help="write the eval-reward-over-epochs comparison plot here")
    args = p.parse_args()

    start = time.perf_counter()
    print("initial policy: held-out eval ...", flush=True)
    baseline = initial_policy_eval(args.config)
    steps = sorted(int(k.split("_")[2].removesuffix("step")) for k in baseline if k.endswith("step_mean"))
    print("  " + "  ".join(f"{k}-step {baseline[f'eval_reward_{k}step_mean']:.4f}" for k in steps), flush=True)
    histories: dict[str, list[list[dict]]] = {a: [] for a in ALGORITHMS}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for algorithm in ALGORITHMS:
                t0 = time.perf_counter()
                metrics = run_cli(Path(tmp) / f"{algorithm}-{seed}", algorithm, seed, args)
                histories[algorithm].append(metrics)
                last = metrics[-1]
                print(f"seed {seed} {algorithm}: {len(metrics)} epochs x {last['pairs']} pairs in {time.perf_counter() - t0:.0f}s; final eval "
                      + "  ".join(f"{k}-step {last[f'eval_reward_{k}step_mean']:.4f}" for k in steps), flush=True)

    summary = {}
    for algorithm, runs in histories.items():
        finals = {k: [run[-1][f"eval_reward_{k}step_mean"] for run in runs] for k in steps}
        summary[algorithm] = {
            "pairs_sampled_per_seed": sum(m["pairs"] for m in runs[0]),
            "eval_final": {k: round(statistics.fmean(v), 4) for k, v in finals.items()},
            "eval_final_per_seed": {k: [round(x, 4) for x in v] for k, v in finals.items()},
            "eval_gain_over_initial": {k: round(statistics.fmean(v) - baseline[f"eval_reward_{k}step_mean"], 4) for k, v in finals.items()},
            "train_reward_1step_last_epoch": round(statistics.fmean(r[-1]["reward_1step_mean"] for r in runs), 4),
            "train_reward_final_last_epoch": round(statistics.fmean(r[-1]["reward_final_mean"] for r in runs), 4),
        }
    sdpo_minus_ddpo = {k: round(summary["sdpo"]["eval_final"][k] - summary["ddpo"]["eval_final"][k], 4) for k in steps}
    seeds_sdpo_ahead = {k: sum(s > d for s, d in zip(summary["sdpo"]["eval_final_per_seed"][k], summary["ddpo"]["eval_final_per_seed"][k])) for k in steps}
    if args.plot:
        from learner.run.plots import plot_algorithm_comparison

        mean_histories = {a: seed_mean_history(runs) for a, runs in histories.items()}
        plot_algorithm_comparison(mean_histories, args.plot, baseline=baseline)
        print(f"plot: {args.plot}", flush=True)
    result = {
        "benchmark": "learning",
        "machine": f"{os.cpu_count()}-core CPU, {platform.machine()}",
        "config": args.config, "epochs": args.epochs, "seeds": args.seeds, "eval_every": args.eval_every, "ray": args.ray,
        "reward": "jpeg_compressibility (higher = smaller JPEG)" if args.config == "tiny" else None,
        "initial_eval": {k: round(baseline[f"eval_reward_{k}step_mean"], 4) for k in steps},
        "algorithms": summary,
        "sdpo_minus_ddpo_final_eval": sdpo_minus_ddpo,
        "seeds_where_sdpo_ahead": seeds_sdpo_ahead,
        "wall_s": round(time.perf_counter() - start, 1),
    }
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
