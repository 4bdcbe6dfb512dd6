"""GPU layouts at the paper's scale: how long an epoch takes and how busy the GPUs are.

    python -m benchmarks.layout [--gpus 4 16 64] [--skip-run] [--epochs 3] [--out FILE.json]

(a) A model of one epoch from measured per-GPU rates (the results JSON of `gpu_throughput` and
`gpu_optim`, H200, SD-Turbo size, T = 50): every GPU's share is the reference's 32 pairs, so an
epoch has 32 x G pairs on G policy GPUs.
  - reference: the SDPO reference's layout, data-parallel: each GPU samples its 32 pairs, then all
    GPUs train (DDP) with train batch 2. The baseline of every ratio.
  - disaggregated: G rollout GPUs sample, then G/4 learner GPUs (the preset's 4 + 1) train while the
    rollout GPUs wait for the new weights; micro-batches of 8 pairs.
  - hybrid: the reference's layout on this system (each policy worker samples its shard and trains
    on it with the same UNet), with micro-batches of 2 or 8 pairs, and with torch.compile + 8.
  epoch = rollout time + update time + communication (the phases cannot overlap: the update needs the
  epoch's samples and the next rollout needs the updated policy); busy fraction = computing
  GPU-seconds / (GPUs x epoch). Communication, which grows with the GPU count, is modeled with
  assumed links (not measured here): a ring all-reduce of the LoRA gradients (3.3 MB for rank 4 in
  fp32) per optimizer step (100 an epoch) at 20 GB/s and 20 us per hop; the disaggregated layout's
  weight broadcast, one 3.3 MB object read by every rollout GPU at 20 GB/s plus 50 ms. Reward scoring
  overlaps the rollout (except the last chunk's ~0.1 s) and is left out for every layout alike.
(b) A real run of the tiny model on local Ray in the hybrid layout (2 policy workers on CPU) against
  the in-process run of the same config: its metrics must agree, and the measured busy fractions of
  the hybrid and the disaggregated layout are reported (on a shared 2-core machine, so a check of the
  plumbing and the accounting, not of GPU speed).
Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.cli import REPO, cli_env

RESULTS = REPO / "benchmarks" / "results"
PAIRS_PER_GPU = 32  # the reference: 4 batches x 8 prompts per GPU per epoch
LORA_BYTES = 3.3e6  # rank-4 LoRA on SD-Turbo's attention projections, fp32
OPTIMIZER_STEPS = 100  # per epoch, the paper's aesthetic run
LINK_BYTES_PER_S, HOP_S = 20e9, 20e-6  # assumed: inter-node bandwidth per GPU, latency per ring hop


def allreduce_s(gpus: int) -> float:
    """One ring all-reduce of the LoRA gradients over `gpus` ranks (0 for one rank)."""
    if gpus == 1:
        return 0.0
    hops = 2 * (gpus - 1)
    return hops * HOP_S + hops / gpus * LORA_BYTES / LINK_BYTES_PER_S


def measured_rates() -> dict[str, float]:
    """Per-GPU pairs/s at T = 50 on an H200, from the committed results."""

    def load(name: str) -> dict:
        return json.loads((RESULTS / name).read_text())

    micro2, micro8 = load("gpu_throughput_H200.json"), load("gpu_throughput_H200_train_batch8.json")
    compiled = load("gpu_optim_H200_compile_micro8.json")["variants"]["compile_micro8"]
    return {
        "rollout": micro2["rollout_pairs_per_s"],
        "update_micro2": micro2["update_pairs_per_s"],
        "update_micro8": micro8["update_pairs_per_s"],
        "rollout_compiled": compiled["rollout_pairs_per_s"],
        "update_compiled_micro8": compiled["update_pairs_per_s"],
    }


def model_epoch(layout: str, gpus: int, rates: dict[str, float]) -> dict[str, float]:
    """Epoch seconds and GPU busy fraction of one layout at `gpus` policy GPUs (pure arithmetic)."""
    pairs = PAIRS_PER_GPU * gpus
    if layout == "disaggregated":
        learners = max(1, gpus // 4)
        rollout_s, update_s = pairs / (gpus * rates["rollout"]), pairs / (learners * rates["update_micro8"])
        busy = pairs / rates["rollout"] + pairs / rates["update_micro8"]  # GPU-seconds of work
        total_gpus = gpus + learners
        comm_s = OPTIMIZER_STEPS * allreduce_s(learners) + 0.05 + gpus * LORA_BYTES / LINK_BYTES_PER_S
    else:
        roll, upd = {
            "reference": ("rollout", "update_micro2"),
            "hybrid_micro2": ("rollout", "update_micro2"),
            "hybrid_micro8": ("rollout", "update_micro8"),
            "hybrid_compiled_micro8": ("rollout_compiled", "update_compiled_micro8"),
        }[layout]
        rollout_s, update_s = PAIRS_PER_GPU / rates[roll], PAIRS_PER_GPU / rates[upd]
        busy, total_gpus = gpus * (rollout_s + update_s), gpus
        comm_s = OPTIMIZER_STEPS * allreduce_s(gpus)
    epoch = rollout_s + update_s + comm_s
    return {
        "gpus": total_gpus,
        "pairs": pairs,
        "rollout_s": round(rollout_s, 1),
        "update_s": round(update_s, 1),
        "comm_s": round(comm_s, 3),
        "epoch_s": round(epoch, 1),
        "busy_fraction": round(busy / (total_gpus * epoch), 3),
    }


LAYOUTS = ("reference", "disaggregated", "hybrid_micro2", "hybrid_micro8", "hybrid_compiled_micro8")


def model_table(gpu_counts: list[int]) -> dict:
    rates = measured_rates()
    table = {}
    for g in gpu_counts:
        rows = {name: model_epoch(name, g, rates) for name in LAYOUTS}
        for row in rows.values():
            row["vs_reference"] = round(row["epoch_s"] / rows["reference"]["epoch_s"], 3)
        table[g] = rows
    return {"rates_pairs_per_s": rates, "table": table}


def print_table(model: dict) -> None:
    print("modeled epoch at the paper's scale (H200 rates, T = 50, 32 pairs per policy GPU):")
    print(
        f"{'policy GPUs':>11}  {'layout':<24} {'GPUs':>5} {'rollout s':>9} {'update s':>9} {'comm s':>7} "
        f"{'epoch s':>8} {'vs ref':>7} {'busy':>6}"
    )
    for g, rows in model["table"].items():
        for name, r in rows.items():
            print(
                f"{g:>11}  {name:<24} {r['gpus']:>5} {r['rollout_s']:>9} {r['update_s']:>9} {r['comm_s']:>7} "
                f"{r['epoch_s']:>8} {r['vs_reference']:>7} {r['busy_fraction']:>6.1%}"
            )


def cli_run(run_dir: Path, epochs: int, *overrides: str) -> list[dict]:
    from learner.run.outputs import read_metrics

    env = cli_env()
    cmd = [sys.executable, "-m", "learner.main", "--epochs", str(epochs), "--run-dir", str(run_dir), *overrides]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    return read_metrics(run_dir)


SMALL = [
    "rollout.pairs_per_epoch=8",
    "rollout.chunk_size=2",
    "sampling.num_steps=8",
    "eval.enabled=false",
    "output.image_every=1000",
]
HYBRID = ["layout=hybrid", "rollout.num_actors=0", "learner.num_workers=2", "learner.num_cpus=0.5"]


def real_run(epochs: int) -> dict:
    """Hybrid on local Ray vs in-process (same metrics?), and the measured busy fractions."""
    with tempfile.TemporaryDirectory() as tmp:
        print(
            "running the tiny model: hybrid on Ray, hybrid in-process, disaggregated on Ray ...",
            file=sys.stderr,
            flush=True,
        )
        on_ray = cli_run(Path(tmp) / "hybrid-ray", epochs, *SMALL, *HYBRID, "ray.num_cpus=2")
        local = cli_run(Path(tmp) / "hybrid-local", epochs, *SMALL, *HYBRID, "ray.enabled=false")
        disagg = cli_run(Path(tmp) / "disaggregated-ray", epochs, *SMALL, "ray.num_cpus=2")
    worst = max(
        abs(a[k] - b[k]) / max(abs(b[k]), 1e-12)
        for a, b in zip(on_ray, local)
        for k in ("reward_1step_mean", "reward_final_mean", "loss", "grad_norm")
    )

    def steady(runs, key):  # the median over epochs after the first (epoch 0 has start-up)
        return round(statistics.median(m[key] for m in runs[1:]), 4)

    return {
        "epochs": epochs,
        "hybrid_vs_in_process_max_rel_diff": float(f"{worst:.3g}"),
        "first_epoch_rewards_identical": on_ray[0]["reward_1step_mean"] == local[0]["reward_1step_mean"],
        "busy_fraction_hybrid_ray": steady(on_ray, "gpu_busy_fraction"),
        "busy_fraction_disaggregated_ray": steady(disagg, "gpu_busy_fraction"),
        "epoch_s_hybrid_ray": steady(on_ray, "time_epoch_s"),
        "epoch_s_disaggregated_ray": steady(disagg, "time_epoch_s"),
    }


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.layout", description=__doc__.split("\n\n")[0])
    p.add_argument("--gpus", type=int, nargs="+", default=[4, 16, 64], help="policy GPU counts to model")
    p.add_argument("--epochs", type=int, default=3, help="epochs of each real tiny run")
    p.add_argument("--skip-run", action="store_true", help="only the model (a), no real run (b)")
    p.add_argument("--out", help="also write the JSON line to this file")
    args = p.parse_args()
    model = model_table(args.gpus)
    print_table(model)
    at4 = model["table"].get(4, {})
    result = {
        "model": model,
        "goal_at_4_gpus": at4
        and {
            "hybrid_micro8_vs_reference": at4["hybrid_micro8"]["vs_reference"],
            "hybrid_micro8_busy_fraction": at4["hybrid_micro8"]["busy_fraction"],
            "met": at4["hybrid_micro8"]["vs_reference"] <= 0.4 and at4["hybrid_micro8"]["busy_fraction"] >= 0.9,
        },
    }
    if not args.skip_run:
        result["real_run"] = real_run(args.epochs)
        r = result["real_run"]
        print(
            "tiny model on local Ray: hybrid vs in-process max relative difference "
            f"{r['hybrid_vs_in_process_max_rel_diff']}; busy fraction hybrid {r['busy_fraction_hybrid_ray']:.0%}, "
            f"disaggregated {r['busy_fraction_disaggregated_ray']:.0%}"
        )
    line = json.dumps(result)
    print(line)
    if args.out:
        Path(args.out).write_text(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
