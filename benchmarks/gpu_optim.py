"""GPU optimizations of SDPO's rollout and update, each against the plain workers in the same run.

    python -m benchmarks.gpu_optim [--out FILE] [--variants baseline,channels_last,micro8,compile]
                                   [--pairs 8] [--steps 50] [--train-steps 8] [--repeats 2]
    python -m benchmarks.gpu_optim --cpu-smoke   # the script's logic, on CPU with the tiny model

Builds an SD-Turbo-sized pipeline (random weights) once; then, per variant, loads fresh rollout and
learner workers (fp16), applies the variant and times rollout calls (B pairs, T steps, decoding
included) and learner updates on the pairs just sampled: a warm-up call, then the median of
--repeats. To fit the time budget an update trains --train-steps of each pair's T steps
(train.timestep_fraction); its pairs/s counts T steps per pair, as gpu_throughput's does. Variants:
  baseline       the workers as they are (attention: diffusers' default AttnProcessor2_0 = torch SDPA)
  channels_last  both UNets in channels_last memory format
  compile        torch.compile (default mode, dynamic=False) of both UNets' forward (LoRA included)
  micro8         train.micro_batch_size=8: the same 2 x 8 samples per optimizer step, 2 backward passes not 8
  compile_micro8 both
A variant that raises is reported as failed (first line of its error) and the others still run.
Progress goes to stderr with elapsed seconds; one JSON line to stdout and to --out (which is also
rewritten after every variant, "complete": false, so a run killed at a time limit keeps what it
measured). Needs a CUDA GPU and exits 2 at once without one, unless --cpu-smoke (tiny model, T=4,
2 pairs, 1 repeat, no compile; the size and variant options are then ignored).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.cuda import Stopwatch, gib, gpu_and_peak, no_gpu

VARIANTS = ("baseline", "channels_last", "micro8", "compile", "compile_micro8")  # run order: the slow compile last
SMOKE_VARIANTS = ("baseline", "channels_last", "micro8")
START = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - START:7.1f}s] {msg}", file=sys.stderr, flush=True)


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def count_flops(learner, device: str) -> tuple[float, float]:
    """FLOPs of one UNet forward, and of forward + backward (LoRA grads), at batch 1, counted by torch."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from actors.policy import encode_prompts
    from actors.sampling import latent_shape

    unet = learner.pipe.unet
    x = torch.randn(1, *latent_shape(learner.pipe), device=device, dtype=unet.dtype)
    emb = encode_prompts(learner.pipe, ["a photo of an animal"])  # (1, L, D)
    t = torch.tensor([999], device=device)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        unet(x, t, emb)
    fwd = fc.get_total_flops()
    with FlopCounterMode(display=False) as fc, torch.autocast(device, torch.float16, enabled=device == "cuda"):
        unet(x, t, emb).sample.float().square().mean().backward()
    learner.optimizer.zero_grad(set_to_none=True)
    return fwd, fc.get_total_flops()


def apply_variant(name: str, rollout, learner) -> None:
    """Change the freshly loaded workers in place; baseline and micro8 (a TrainConfig setting) change nothing here."""
    import torch

    if name == "channels_last":
        for unet in (rollout.pipe.unet, learner.denoiser):
            unet.to(memory_format=torch.channels_last)
    elif name.startswith("compile"):
        # The forward, not the module: the workers (and accelerate's autocast wrapper on the learner's
        # forward) keep calling the same nn.Module; peft's LoRA layers are traced inside the graph.
        for unet in (rollout.pipe.unet, learner.denoiser):
            unet.forward = torch.compile(unet.forward, dynamic=False)


def run_variant(name: str, args, model, sampling, train, device: str, flops: dict) -> dict:
    """Load workers, apply the variant, time (1 + repeats) rounds of rollout + update."""
    import torch

    from actors.rollout_worker import RolloutWorker
    from learner.worker.batch import ShardAdvantages, UpdateRequest
    from learner.worker.config import TrainConfig
    from learner.worker.learner_worker import LearnerWorker

    clock = Stopwatch(device == "cuda")  # the peak memory runs on from cleanup(), over the whole variant
    if name.endswith("micro8"):
        train = TrainConfig(**(train.model_dump() | {"micro_batch_size": 8}))
    t0 = time.perf_counter()
    threads = 2 if device == "cpu" else 1
    rollout = RolloutWorker(model=model, sampling=sampling, seed=0, device=device, torch_threads=threads)
    learner = LearnerWorker(model=model, sampling=sampling, train=train, seed=0, device=device, torch_threads=threads)
    rollout.set_weights(learner.get_weights())
    if not flops:  # counted once, on the first plain UNet loaded
        flops["fwd"], flops["fwd_bwd"] = count_flops(learner, device)
        flops["attention"] = sorted({type(p).__name__ for p in rollout.pipe.unet.attn_processors.values()})
    apply_variant(name, rollout, learner)
    setup_s = time.perf_counter() - t0
    log(f"{name}: workers loaded and variant applied in {setup_s:.1f} s")

    prompts = [f"a photo of animal {i}" for i in range(args.pairs)]
    roll_s, upd_s, metrics = [], [], {}
    for r in range(args.repeats + 1):  # round 0 warms up (and compiles)
        t0 = clock.start(reset_peak=False)
        traj = rollout.rollout(r, list(range(args.pairs)), prompts, rollout.version).trajectories
        roll = clock.stop(t0)["s"]
        adv = torch.randn(args.pairs, 2, args.steps, generator=torch.Generator().manual_seed(r)).clamp(
            -5, 5
        )  # (B, 2, T)
        shard = ShardAdvantages(shard=0, pair_index=traj.pair_index, advantages=adv)
        request = UpdateRequest(learner.version, r, num_shards=1, max_pairs=args.pairs, shards=[shard])
        t0 = clock.start(reset_peak=False)
        metrics = learner.update(request, traj)
        upd = clock.stop(t0)["s"]
        rollout.set_weights(learner.get_weights())
        what = "warm-up" if r == 0 else f"repeat {r}/{args.repeats}"
        log(
            f"{name} {what}: rollout {roll:.2f} s, update {upd:.2f} s ({int(metrics['backward_passes'])} backward "
            "passes)"
        )
        if r:
            roll_s.append(roll)
            upd_s.append(upd)
        else:
            warm = (roll, upd)
    roll_med, upd_med = statistics.median(roll_s), statistics.median(upd_s)
    out = {
        "rollout_pairs_per_s": round(args.pairs / roll_med, 4),
        "update_pairs_per_s": round(args.items / args.steps / upd_med, 4),  # pair-equivalents of T steps
        "rollout_s": [round(s, 3) for s in roll_s],
        "update_s": [round(s, 3) for s in upd_s],
        "setup_s": round(setup_s, 1),
        "micro_batch": train.micro_batch_size or train.batch_size,
        "backward_passes": int(metrics["backward_passes"]),
        "loss": round(metrics["loss"], 6),
        "warmup_s": [round(s, 2) for s in warm],  # rollout, update of round 0 (compile's includes compiling)
    }
    if device == "cuda":
        out["max_memory_gib"] = gib(clock.peak()["peak"])
    return out


def cleanup(device: str) -> None:
    import torch

    torch._dynamo.reset()  # forget compiled graphs, so a later variant starts plain
    gc.collect()
    Stopwatch(device == "cuda").release()


def summary(results: dict, flops: dict, ctx: dict, complete: bool) -> dict:
    """The JSON result: run context, FLOPs, and per variant its figures, ratios to baseline and MFU."""
    base, peak, T = results.get("baseline", {}), ctx["peak_tflops"], ctx["steps"]
    variants = {}
    for name, res in results.items():
        res = dict(res)
        variants[name] = res
        if "failed" in res:
            continue
        for kind in ("rollout", "update"):
            ref = base.get(f"{kind}_pairs_per_s")
            res[f"{kind}_vs_baseline"] = ref and round(res[f"{kind}_pairs_per_s"] / ref, 3)
        if flops and peak:
            # a pair is 2 trajectories x T UNet samples: forwards in the rollout, forward + backward in the update
            res["rollout_mfu"] = round(2 * T * flops["fwd"] * res["rollout_pairs_per_s"] / (peak * 1e12), 4)
            res["update_mfu"] = round(2 * T * flops["fwd_bwd"] * res["update_pairs_per_s"] / (peak * 1e12), 4)
    attention = ", ".join(flops.get("attention", [])) or None
    if attention == "AttnProcessor2_0":
        attention += " (torch scaled_dot_product_attention, diffusers' default: the baseline uses SDPA already)"
    return ctx | {
        "attention": attention,
        "unet_fwd_gflop": round(flops["fwd"] / 1e9, 3) if flops else None,
        "unet_fwd_bwd_gflop": round(flops["fwd_bwd"] / 1e9, 3) if flops else None,
        "variants": variants,
        "complete": complete,
        "total_s": round(time.perf_counter() - START, 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_optim", description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma list, run in this order (baseline first)")
    p.add_argument("--pairs", type=int, default=8, help="pairs per rollout call (B); the update trains all of them")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps T")
    p.add_argument("--train-steps", type=int, default=8, help="steps of each pair's T trained per update")
    p.add_argument("--repeats", type=int, default=2, help="timed rounds after the warm-up (median)")
    p.add_argument("--out", help="also write the JSON line to this file")
    p.add_argument("--cpu-smoke", action="store_true", help="CPU, tiny model, T=4, 2 pairs, 1 repeat, no compile")
    args = p.parse_args()
    variants = list(dict.fromkeys(v.strip() for v in args.variants.split(",") if v.strip()))
    if unknown := [v for v in variants if v not in VARIANTS]:
        p.error(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")

    import torch

    if args.cpu_smoke:
        device, variants = "cpu", list(SMOKE_VARIANTS)
        args.pairs, args.steps, args.train_steps, args.repeats = 2, 4, 4, 1
    elif torch.cuda.is_available():
        device = "cuda"
    else:
        return no_gpu("benchmarks/gpu_optim.py")
    if "baseline" in variants:  # the reference every ratio is taken against
        variants.remove("baseline")
        variants.insert(0, "baseline")
    if "compile" in variants:
        cfg = torch._dynamo.config
        key = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"
        setattr(cfg, key, max(getattr(cfg, key), 32))  # two UNets, grad and no-grad: a few graphs each

    from actors.config import ModelConfig, SamplingConfig
    from learner.algo.minibatches import num_train_steps
    from learner.worker.config import TrainConfig

    gpu, peak = gpu_and_peak(device == "cuda")
    train_steps = min(args.train_steps, args.steps)
    fraction = min(1.0, (train_steps + 0.5) / args.steps)  # int(T * fraction) == train_steps
    # The paper's 2 pairs x 8 accumulation steps per optimizer step; micro-batch = 2 unless micro8.
    train = TrainConfig(batch_size=2, gradient_accumulation_steps=8, timestep_fraction=fraction)
    args.items = args.pairs * num_train_steps(args.steps, fraction)  # (pair, step) items per update
    sampling = SamplingConfig(num_steps=args.steps)
    log(
        f"{gpu}, torch {torch.__version__}; variants {','.join(variants)}; B={args.pairs} T={args.steps} "
        f"update items={args.items}, repeats={args.repeats}"
    )
    ctx = {
        "gpu": gpu,
        "torch": torch.__version__,
        "pairs": args.pairs,
        "steps": args.steps,
        "update_train_steps": train_steps,
        "update_items": args.items,
        "train": {"batch_size": train.batch_size, "gradient_accumulation_steps": train.gradient_accumulation_steps},
        "repeats": args.repeats,
        "peak_tflops": peak and peak / 1e12,
    }
    results, flops = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        if device == "cuda":
            from benchmarks.sd_turbo_config import build_sd_turbo_sized

            path = build_sd_turbo_sized(f"{tmp}/sd-turbo-sized")
            model = ModelConfig(pretrained=str(path), dtype="float16", local_files_only=True)
        else:
            model = ModelConfig(pretrained="tiny", tiny_cache_dir=f"{tmp}/tiny")  # built by the first load
        ctx["build_model_s"] = round(time.perf_counter() - t0, 1)
        log(f"pipeline built in {ctx['build_model_s']} s")
        for name in variants:
            log(f"{name}: start")
            try:
                results[name] = run_variant(name, args, model, sampling, train, device, flops)
            except Exception as err:  # report and go on with the next variant
                results[name] = {"failed": first_line(err)}
                log(f"{name}: FAILED: {results[name]['failed']}")
            cleanup(device)
            if args.out:  # what is measured so far survives a run killed at its time limit
                Path(args.out).write_text(json.dumps(summary(results, flops, ctx, complete=False)) + "\n")

    line = json.dumps(summary(results, flops, ctx, complete=True))
    print(line)
    if args.out:
        Path(args.out).write_text(line + "\n")
    return 0 if any("failed" not in r for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
