"""GPU throughput of SDPO on an SD-Turbo-sized pipeline (random weights, built from config).

    python -m benchmarks.gpu_throughput [--pairs 8] [--steps 50] [--repeats 3] [--train-batch 2] [--micro-batch 8]

Prints pairs/s for rollout (dual-state sampling + decoding the 3 queried states per trajectory)
and for the learner's update (all T steps of every pair), and model FLOP utilization (MFU) of the
UNet work, as one final JSON line. Needs a CUDA GPU and fails at once without one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time

from actors.flops import PEAK_TFLOPS

PEAK_FLOPS = {name: tflops * 1e12 for name, tflops in PEAK_TFLOPS.items()}  # the runs' own table (actors/flops.py)


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_throughput", description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=8, help="pairs per rollout call (B)")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps T")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--train-batch", type=int, default=2, help="pairs per learner minibatch (train.batch_size)")
    p.add_argument("--micro-batch", type=int, default=None, help="pairs per backward pass (train.micro_batch_size; default: --train-batch)")
    args = p.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("error: benchmarks/gpu_throughput.py needs a CUDA GPU; none is visible to torch", file=sys.stderr)
        return 2

    from torch.utils.flop_counter import FlopCounterMode

    from actors.config import ModelConfig, SamplingConfig
    from actors.rollout_worker import RolloutWorker
    from benchmarks.sd_turbo_config import build_sd_turbo_sized
    from learner.config import TrainConfig
    from learner.worker.batch import ShardAdvantages, UpdateRequest
    from learner.worker.learner_worker import LearnerWorker

    gpu = torch.cuda.get_device_name()
    peak = next((v for k, v in PEAK_FLOPS.items() if k in gpu), None)
    tmp = tempfile.mkdtemp()
    t0 = time.perf_counter()
    path = build_sd_turbo_sized(f"{tmp}/sd-turbo-sized")
    build_s = time.perf_counter() - t0
    model = ModelConfig(pretrained=str(path), dtype="float16", local_files_only=True)
    sampling = SamplingConfig(num_steps=args.steps)
    train = TrainConfig(
        batch_size=args.train_batch, gradient_accumulation_steps=max(1, 16 // args.train_batch), micro_batch_size=args.micro_batch
    )
    rollout = RolloutWorker(model=model, sampling=sampling, seed=0, device="cuda")
    learner = LearnerWorker(model=model, sampling=sampling, train=train, seed=0, device="cuda")
    rollout.set_weights(learner.get_weights())
    prompts = [f"a photo of animal {i}" for i in range(args.pairs)]

    # FLOPs of one UNet forward and forward+backward (LoRA) at batch 1, counted by torch.
    unet, x = learner.pipe.unet, torch.randn(1, 4, 64, 64, device="cuda", dtype=torch.float16)
    emb = torch.randn(1, 77, 1024, device="cuda", dtype=torch.float16)
    t = torch.tensor([999], device="cuda")
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        unet(x, t, emb)
    fwd_flops = fc.get_total_flops()
    with FlopCounterMode(display=False) as fc, torch.autocast("cuda", torch.float16):
        unet(x, t, emb).sample.float().square().mean().backward()
    fwd_bwd_flops = fc.get_total_flops()
    learner.optimizer.zero_grad(set_to_none=True)

    roll_times, upd_times, last_update = [], [], {}
    for r in range(args.repeats + 1):  # first round warms up
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        traj = rollout.rollout(r, list(range(args.pairs)), prompts, rollout.version).trajectories
        torch.cuda.synchronize()
        roll = time.perf_counter() - t0
        adv = torch.randn(args.pairs, 2, args.steps).clamp(-5, 5)  # (B, 2, T)
        request = UpdateRequest(learner.version, r, num_shards=1, max_pairs=args.pairs, shards=[ShardAdvantages(0, traj.pair_index, adv)])
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        last_update = learner.update(request, traj)
        torch.cuda.synchronize()
        upd = time.perf_counter() - t0
        rollout.set_weights(learner.get_weights())
        if r:
            roll_times.append(roll)
            upd_times.append(upd)
    roll_s, upd_s = statistics.median(roll_times), statistics.median(upd_times)
    unet_calls = 2 * args.pairs * args.steps  # both trajectories, every step
    roll_flops, upd_flops = unet_calls * fwd_flops, unet_calls * fwd_bwd_flops
    result = {
        "gpu": gpu,
        "pairs": args.pairs,
        "steps": args.steps,
        "train_batch": args.train_batch,
        "micro_batch": train.micro_batch_size or train.batch_size,
        "build_model_s": round(build_s, 1),
        "rollout_s_median": round(roll_s, 3),
        "update_s_median": round(upd_s, 3),
        "rollout_pairs_per_s": round(args.pairs / roll_s, 3),
        "update_pairs_per_s": round(args.pairs / upd_s, 3),
        "unet_fwd_gflop": round(fwd_flops / 1e9, 1),
        "unet_fwd_bwd_gflop": round(fwd_bwd_flops / 1e9, 1),
        "rollout_tflops": round(roll_flops / roll_s / 1e12, 1),
        "update_tflops": round(upd_flops / upd_s / 1e12, 1),
        "peak_tflops": peak and peak / 1e12,
        "rollout_mfu": peak and round(roll_flops / roll_s / peak, 4),
        "update_mfu": peak and round(upd_flops / upd_s / peak, 4),
        "max_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "last_update": {k: round(v, 6) for k, v in last_update.items()},
        "torch": torch.__version__,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
