"""GPU throughput, MFU and peak memory of one hybrid policy worker, per model family at its real size.

    python -m benchmarks.gpu_throughput [--family sd|sdxl|sd3|flux|flux2_klein|sana_sprint|all] [--preset NAME]
        [--pairs N] [--steps T] [--train-steps K] [--repeats R] [--train-batch B] [--micro-batch M]
        [--resolution PX] [--no-compile] [--no-t5] [--fits] [--budget-s S] [--out FILE]
    python -m benchmarks.gpu_throughput --cpu-smoke --family sd3 --fits   # the script's logic on CPU, at 1/64 size

Per family: the real architecture with random weights (benchmarks/real_size.py), built in memory on
the GPU in the preset's dtype (a 12B transformer is never saved or held in float32), then one
PolicyWorker (learner/worker/policy_worker.py: the same process samples with the LoRA denoiser it then
trains, as the hybrid layout runs one per GPU) with the preset's resolution, dtype, LoRA, sampler,
chunk size, train batch, micro-batch and mixed precision. A round: `--pairs` pairs sampled in rollout
calls of rollout.chunk_size pairs (decoding the queried states included), then the update on them with
random advantages, training `--train-steps` of each pair's T steps (train.timestep_fraction).
After a warm-up round, the median of `--repeats`:
  rollout / update pairs/s   pairs per second; the update's counts pair-equivalents of T trained steps
  rollout / update MFU       the worker's own FLOP counts (actors/flops.py) over seconds x the GPU's peak
  peak memory                torch.cuda.max_memory_allocated (and _reserved) of each phase: the worker's peak
                             is the larger one (weights, LoRA, optimizer, activations of that phase)
--fits: whether that peak fits an 80 GB and a 141 GB card and, where not, the cheapest change that does,
measured: micro-batch 1, smaller chunks, gradient checkpointing, T5 off (sd3) (benchmarks/memory_fit.py).
Families: sd SD-Turbo (sd_turbo_aesthetic), sdxl SDXL-Turbo, sd3 SD3.5-Large-Turbo, flux FLUX.1-schnell,
flux2_klein FLUX.2-klein-4B, sana_sprint SANA-Sprint 1.6B, each with its *_aesthetic preset. Several
families run one after another, each in its own process (a fresh CUDA context and peak), smallest
first, within --budget-s. A table goes to stderr, one JSON line to stdout (and --out, rewritten after
each family). Needs a CUDA GPU and exits 2 at once without one, unless --cpu-smoke: then the same code
runs on CPU at real_size scale 1/64, 128 px, T = 3, 2 pairs, 1 repeat, float32, no compile, and --fits
goes through every change of its ladder (there is no GPU memory to measure: its figures are 0).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from benchmarks.cuda import Stopwatch, gib, gpu_and_peak, no_gpu

PRESETS = {
    "sd": "sd_turbo_aesthetic",
    "sdxl": "sdxl_turbo_aesthetic",
    "sd3": "sd35_large_turbo_aesthetic",
    "flux": "flux_schnell_aesthetic",
    "flux2_klein": "flux2_klein_aesthetic",
    "sana_sprint": "sana_sprint_aesthetic",
}
ORDER = ("sana_sprint", "sd", "sdxl", "flux2_klein", "sd3", "flux")  # by size: a budget cuts the largest
START = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - START:7.1f}s] {msg}", file=sys.stderr, flush=True)


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


# ---------------------------------------------------------------------------------- one family, in process
@contextmanager
def prebuilt(pipe):
    """Workers created inside load this in-memory pipeline through the family's own post-load steps
    (ModelFamily.prepare: device, resolution, scheduler, checkpointing, LoRA, compile) instead of
    from_pretrained: the rest of the worker is the code the runs execute."""
    from unittest import mock

    import torch

    from actors.families import family_of
    from learner.worker import learner_worker

    def load(model, device="cpu", with_lora=True, seed=0):
        return family_of(pipe).prepare(pipe, model, torch.device(device), with_lora, seed)

    with mock.patch.object(learner_worker, "load_pipeline", load):
        yield


def configs(family: str, args):
    """The preset's model, sampling, rollout and train sections, with this run's changes."""
    from learner.config import load_config
    from learner.worker.config import TrainConfig

    cfg = load_config(args.preset or PRESETS[family])
    model = cfg.model.model_copy(
        update={
            "pretrained": f"real-size {family} (random weights)",
            "local_files_only": True,
            "compile": cfg.model.compile and not args.no_compile,
            "resolution": args.resolution or cfg.model.resolution,
        }
    )
    steps = args.steps or cfg.sampling.num_steps
    sampling = cfg.sampling.model_copy(update={"num_steps": steps})
    train_steps = min(args.train_steps or steps, steps)
    changes = {"timestep_fraction": min(1.0, (train_steps + 0.5) / steps)}  # int(T * fraction) == train_steps
    if args.train_batch:
        changes["batch_size"] = args.train_batch
    if args.micro_batch:
        changes["micro_batch_size"] = args.micro_batch
    if args.device == "cpu":
        changes["mixed_precision"] = "no"
    train = TrainConfig(**(cfg.train.model_dump() | changes))
    chunk = min(cfg.rollout.chunk_size, args.pairs) if args.pairs else cfg.rollout.chunk_size
    return cfg, model, sampling, train, chunk, args.pairs or chunk


class Bench:
    """One PolicyWorker and the rounds it is timed on."""

    def __init__(self, worker, chunk: int, pairs: int):
        self.worker, self.chunk, self.pairs = worker, chunk, pairs
        self.prompts = [f"a photo of animal {i}" for i in range(pairs)]
        self.epoch, self.held = 0, []
        self.clock = Stopwatch(worker.device == "cuda")  # each round's seconds and peak memory

    def rollout(self, chunk: int | None = None) -> dict:
        w, chunk = self.worker, chunk or self.chunk
        t0 = self.clock.start()
        self.epoch += 1
        w.held, flops = [], 0.0
        for first in range(0, self.pairs, chunk):
            idx = list(range(first, min(first + chunk, self.pairs)))
            flops += w.rollout(self.epoch, idx, [self.prompts[i] for i in idx], w.version).queries.flops
        out = self.clock.stop(t0) | {"flops": flops}
        self.held = list(w.held)  # the update below trains on these, again for every measured setting
        return out

    def update(self) -> dict:
        import torch

        from learner.worker.batch import ShardAdvantages, UpdateRequest

        w, T = self.worker, self.worker.sampling.num_steps
        adv = torch.randn(self.pairs, 2, T, generator=torch.Generator().manual_seed(self.epoch)).clamp(
            -5, 5
        )  # (B, 2, T)
        shard = ShardAdvantages(shard=0, pair_index=torch.arange(self.pairs), advantages=adv)
        request = UpdateRequest(w.version, self.epoch, num_shards=1, max_pairs=self.pairs, shards=[shard])
        t0 = self.clock.start()
        w.held = []
        metrics = w.update(request, *self.held)
        return self.clock.stop(t0) | {"flops": metrics["flops"], "backward_passes": int(metrics["backward_passes"])}


def measure(family: str, args) -> dict:
    """Build the family at its real size, load a PolicyWorker on it and time (1 + repeats) rounds."""
    import torch

    from benchmarks import real_size
    from learner.algo.minibatches import num_train_steps
    from learner.worker.policy_worker import PolicyWorker

    cfg, model, sampling, train, chunk, pairs = configs(family, args)
    t5 = not args.no_t5
    log(
        f"{family}: preset {args.preset or PRESETS[family]}, {model.resolution or 'native'} px, {model.dtype}, LoRA "
        f"rank {model.lora_rank}, T={sampling.num_steps}, {pairs} pairs in chunks of {chunk}, micro-batch "
        f"{train.micro_batch_size or train.batch_size}, compile {model.compile}{'' if t5 else ', no T5'}"
    )
    cuda = args.device == "cuda"
    t0 = time.perf_counter()
    dtype = real_size.DTYPES[model.dtype] if cuda else torch.float32  # as the family loads a model on CPU
    pipe = real_size.build(family, args.scale, device=args.device, dtype=dtype, t5=t5)
    build_s = time.perf_counter() - t0
    params = {
        k: sum(p.numel() for p in m.parameters()) for k, m in pipe.components.items() if isinstance(m, torch.nn.Module)
    }
    t0 = time.perf_counter()
    with prebuilt(pipe):
        worker = PolicyWorker(
            model=model, sampling=sampling, train=train, seed=0, device=args.device, rollout_threads=2
        )
    del pipe
    setup_s, weights = time.perf_counter() - t0, torch.cuda.memory_allocated() if cuda else 0
    log(
        f"{family}: built in {build_s:.1f} s ({sum(params.values()) / 1e9:.2f} B parameters), worker ready in "
        f"{setup_s:.1f} s, {gib(weights)} GiB allocated"
    )
    bench, rounds = Bench(worker, chunk, pairs), []
    for r in range(args.repeats + 1):  # round 0 warms up (and compiles)
        roll = bench.rollout()
        upd = bench.update()
        log(
            f"{family} {'warm-up' if r == 0 else f'repeat {r}/{args.repeats}'}: rollout {roll['s']:.2f} s "
            f"({gib(roll['peak'])} GiB), update {upd['s']:.2f} s ({gib(upd['peak'])} GiB, {upd['backward_passes']} "
            "passes)"
        )
        rounds.append((roll, upd))
    timed = rounds[1:]
    roll_s = statistics.median(r["s"] for r, _ in timed)
    upd_s = statistics.median(u["s"] for _, u in timed)
    items = pairs * num_train_steps(sampling.num_steps, train.timestep_fraction)  # (pair, step) items per update
    peak = worker.peak_flops if worker.peak_flops == worker.peak_flops else None  # NaN: unknown
    last_roll, last_upd = timed[-1]
    out = {
        "preset": args.preset or PRESETS[family],
        "resolution": model.resolution,
        "dtype": model.dtype,
        "lora_rank": model.lora_rank,
        "compile": model.compile,
        "t5": t5 if family == "sd3" else None,
        "steps": sampling.num_steps,
        "pairs": pairs,
        "chunk_size": chunk,
        "train_steps": num_train_steps(sampling.num_steps, train.timestep_fraction),
        "micro_batch": train.micro_batch_size or train.batch_size,
        "params": params,
        "build_s": round(build_s, 1),
        "setup_s": round(setup_s, 1),
        "rollout_s": [round(r["s"], 3) for r, _ in timed],
        "update_s": [round(u["s"], 3) for _, u in timed],
        "rollout_pairs_per_s": round(pairs / roll_s, 4),
        "update_pairs_per_s": round(items / sampling.num_steps / upd_s, 4),
        "scale": args.scale,
        "device": args.device,
        "rollout_mfu": peak and round(last_roll["flops"] / last_roll["s"] / peak, 4),
        "update_mfu": peak and round(last_upd["flops"] / last_upd["s"] / peak, 4),
        "memory_gib": {
            "weights": gib(weights),
            "rollout_peak": gib(max(r["peak"] for r, _ in timed)),
            "update_peak": gib(max(u["peak"] for _, u in timed)),
            "rollout_reserved": gib(max(r["reserved"] for r, _ in timed)),
            "update_reserved": gib(max(u["reserved"] for _, u in timed)),
        },
    }
    out["memory_gib"]["peak"] = max(out["memory_gib"]["rollout_peak"], out["memory_gib"]["update_peak"])
    if args.fits:
        out["fits"] = fit_ladder(family, bench, out, roll_s, upd_s)
    return out


def fit_ladder(family: str, bench: Bench, result: dict, roll_s: float, upd_s: float) -> dict:
    """The baseline's phases, and where it does not fit the smallest card, the knobs that lower them."""
    import torch

    from benchmarks.memory_fit import CAPACITIES_GIB, Phase, Setting, advise, combine, fits

    w, pairs = bench.worker, bench.pairs
    micro0, chunk0 = result["micro_batch"], result["chunk_size"]
    mem = result["memory_gib"]
    rollout = {(True, chunk0): Phase(mem["rollout_reserved"], roll_s / pairs)}
    update = {(True, micro0, False): Phase(mem["update_reserved"], upd_s / pairs)}
    cuda = w.device == "cuda"
    card = gib(torch.cuda.mem_get_info()[1]) if cuda else 0.0
    smallest = min(CAPACITIES_GIB.values())

    def run(phase: str, **knobs) -> Phase:
        from learner.worker.config import TrainConfig

        denoiser = w.family.denoiser(w.pipe)
        train0 = w.train
        try:
            if knobs.get("micro"):
                w.train = TrainConfig(**(train0.model_dump() | {"micro_batch_size": knobs["micro"]}))
            if knobs.get("ckpt"):
                denoiser.enable_gradient_checkpointing()
            res = bench.rollout(knobs.get("chunk")) if phase == "rollout" else bench.update()
            log(f"{family} fits: {phase} {knobs}: {res['s']:.2f} s, {gib(res['reserved'])} GiB reserved")
            return Phase(gib(res["reserved"]), res["s"] / pairs)
        except torch.cuda.OutOfMemoryError:
            log(f"{family} fits: {phase} {knobs}: out of memory")
            return Phase(None, None)
        finally:
            w.train = train0
            denoiser.disable_gradient_checkpointing()
            w.optimizer.zero_grad(set_to_none=True)
            gc.collect()
            bench.clock.release()

    def too_big(phase: Phase) -> bool:
        return not cuda or not fits(phase, smallest, card)  # on CPU (smoke): every change is tried

    if too_big(rollout[(True, chunk0)]):
        chunk = chunk0 // 2
        while chunk >= 1:
            rollout[(True, chunk)] = run("rollout", chunk=chunk)
            if not too_big(rollout[(True, chunk)]):
                break
            chunk //= 2
    if too_big(update[(True, micro0, False)]):
        for micro, ckpt in ((1, False), (micro0, True), (1, True)):
            if (True, micro, ckpt) not in update:
                update[(True, micro, ckpt)] = run("update", micro=micro, ckpt=ckpt)
    best_fits = cuda and any(fits(p, smallest, card) for p in combine(rollout, update).values())
    if family == "sd3" and not best_fits and w.pipe.text_encoder_3 is not None:
        w.pipe.text_encoder_3, w.pipe.tokenizer_3 = None, None  # the pipeline without T5, as the family loads one
        gc.collect()
        bench.clock.release()
        rollout[(False, min(c for _, c in rollout))] = run("rollout", chunk=min(c for _, c in rollout))
        for _, micro, ckpt in list(update):
            update[(False, micro, ckpt)] = run("update", micro=micro, ckpt=ckpt)
    settings = combine(rollout, update)
    return {
        "card_gib": card,
        "settings": [
            {
                "chunk_size": s.chunk_size,
                "micro_batch_size": s.micro_batch_size,
                "gradient_checkpointing": s.gradient_checkpointing,
                "t5": s.t5,
                "peak_reserved_gib": p.peak_gib,
                "s_per_pair": p.s_per_pair and round(p.s_per_pair, 3),
            }
            for s, p in settings.items()
        ],
        "advice": advise(settings, Setting(chunk0, micro0), card),
    }


# ---------------------------------------------------------------------------------- several families, one process each
def run_children(families: list[str], args, argv: list[str]) -> dict:
    results = {}
    for family in families:
        left = args.budget_s - (time.perf_counter() - START)
        if left < 60:
            results[family] = {"skipped": f"time budget ({args.budget_s:.0f} s) spent"}
            log(f"{family}: skipped, the time budget is spent")
            continue
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.gpu_throughput",
            *strip_family(argv),
            "--family",
            family,
            "--budget-s",
            str(int(left)),
            "--child",
        ]
        try:
            res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, text=True, timeout=left)
            lines = res.stdout.strip().splitlines()
            results[family] = (
                json.loads(lines[-1])["families"][family] if lines else {"failed": f"exit {res.returncode}, no output"}
            )
        except subprocess.TimeoutExpired:
            results[family] = {"failed": f"timed out after {left:.0f} s (the time budget)"}
        except (ValueError, KeyError) as err:
            results[family] = {"failed": first_line(err)}
        if args.out:  # what is measured so far survives a run killed at its time limit
            Path(args.out).write_text(json.dumps(summary(results, complete=False)) + "\n")
    return results


def strip_family(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in ("--family", "--budget-s", "--out"):
            skip = True
        elif not a.startswith(("--family=", "--budget-s=", "--out=")):
            out.append(a)
    return out


def summary(results: dict, complete: bool) -> dict:
    import torch

    gpu, peak = gpu_and_peak(torch.cuda.is_available())
    return {
        "gpu": gpu,
        "torch": torch.__version__,
        "peak_tflops": peak and peak / 1e12,
        "families": results,
        "complete": complete,
        "total_s": round(time.perf_counter() - START, 1),
    }


def table(results: dict) -> str:
    head = (
        "| family | preset | px | dtype | rollout pairs/s | update pairs/s | rollout MFU | update MFU | peak GiB "
        "| 80GB | 141GB |"
    )
    rows = [head, "|" + " --- |" * (head.count("|") - 1)]
    for fam, r in results.items():
        if "failed" in r or "skipped" in r:
            rows.append(f"| {fam} | {r.get('failed') or r.get('skipped')} |")
            continue
        advice = r.get("fits", {}).get("advice", {})
        verdict = [
            ("yes" if a["fits"] else "?" if a["fits"] is None else f"no: {a.get('cheapest_change')}")
            for a in advice.values()
        ]
        pct = lambda x: "-" if x is None else f"{100 * x:.1f} %"  # noqa: E731
        rows.append(
            f"| {fam} | {r['preset']} | {r['resolution']} | {r['dtype']} | {r['rollout_pairs_per_s']} | "
            f"{r['update_pairs_per_s']} | {pct(r['rollout_mfu'])} | {pct(r['update_mfu'])} | {r['memory_gib']['peak']} "
            f"| {' | '.join(verdict) or '- | -'} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_throughput", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--family", default="sd", choices=(*PRESETS, "all"), help="model family at its real size (default sd: SD-Turbo)"
    )
    p.add_argument("--preset", help="preset to take the settings from (default: the family's *_aesthetic preset)")
    p.add_argument(
        "--pairs", type=int, help="pairs per round (B; default: the preset's rollout.chunk_size, one rollout call)"
    )
    p.add_argument("--steps", type=int, help="T (default: the preset's sampling.num_steps)")
    p.add_argument("--train-steps", type=int, help="steps of each pair's T trained per update (default: all T)")
    p.add_argument("--repeats", type=int, default=2, help="timed rounds after the warm-up (median)")
    p.add_argument("--train-batch", type=int, help="train.batch_size (default: the preset's)")
    p.add_argument("--micro-batch", type=int, help="train.micro_batch_size (default: the preset's)")
    p.add_argument("--resolution", type=int, help="model.resolution in pixels (default: the preset's)")
    p.add_argument("--no-compile", action="store_true", help="model.compile off (compiling costs minutes per worker)")
    p.add_argument("--no-t5", action="store_true", help="sd3: build without T5 (text_encoder_3 = None)")
    p.add_argument(
        "--fits",
        action="store_true",
        help="also say which presets fit 80 GB and 141 GB and, if not, the cheapest change that does",
    )
    p.add_argument(
        "--budget-s", type=float, default=3600.0, help="start no family after this many seconds (several families)"
    )
    p.add_argument("--out", help="also write the JSON line to this file")
    p.add_argument(
        "--cpu-smoke", action="store_true", help="CPU, scale 1/64, 128 px, T=3, 2 pairs, 1 repeat: the script's logic"
    )
    p.add_argument(
        "--child", action="store_true", help=argparse.SUPPRESS
    )  # one family of several: the parent prints the table
    args = p.parse_args(argv)
    if args.preset and args.family == "all":
        p.error("--preset needs one --family")

    import torch

    args.device, args.scale = "cuda", 1.0
    if args.cpu_smoke:
        args.device, args.scale, args.no_compile = "cpu", 1 / 64, True
        args.resolution, args.steps, args.pairs, args.repeats = (
            args.resolution or 128,
            args.steps or 3,
            args.pairs or 2,
            1,
        )
    elif not torch.cuda.is_available():
        return no_gpu("benchmarks/gpu_throughput.py")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.family == "all":
        results = run_children(list(ORDER), args, argv)
    else:
        try:
            results = {args.family: measure(args.family, args)}
        except Exception as err:  # one line, and the JSON still printed
            results = {args.family: {"failed": first_line(err)}}
            log(f"{args.family}: FAILED: {results[args.family]['failed']}")
    if not args.child:
        print(table(results), file=sys.stderr)
    line = json.dumps(summary(results, complete=True))
    print(line)
    if args.out:
        Path(args.out).write_text(line + "\n")
    return 0 if any("failed" not in r and "skipped" not in r for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
