"""Weight broadcast: publish-and-load of the LoRA weights to N rollout actors against a raw
object-store put/get of the same bytes.

    python -m benchmarks.weight_sync [--actors 1 2 4] [--ranks 4 332] [--repeats 20] [--out FILE.json]

For each LoRA rank, a real LearnerWorker and real RolloutWorker actors on local Ray hold the tiny
pipeline. `publish` is learner.driver.stages.publish_weights, the path every epoch of the
disaggregated layout takes: the learner's get_weights call leaves its LoRA state in the object store
as the call's result, and every actor's set_weights (peft load) reads that one object; the driver
only passes the reference. `raw` is ray.put of the same PolicyWeights object and a ray.get of it in N
trivial actors; `put_and_load` is a driver-side ray.put plus the peft load on every actor (the old
path without its learner-to-driver fetch); `learner_fetch` is what that fetch cost. Rank 4 is the tiny preset
(39.9 KB); rank 332 gives 3.31 MB, the size of SD-Turbo's rank-4 LoRA (3.32 MB, 829,952 fp32
parameters). Prints progress and a final JSON line of medians in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from benchmarks.output import emit

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


class Sink:
    """A trivial actor: receives the weights (Ray resolves the ref before the call) and touches them."""

    def take(self, weights) -> int:
        return sum(v.numel() * v.element_size() for v in weights.lora.values())


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times) * 1e3, 3)


def measure_rank(rank: int, actor_counts: list[int], repeats: int, tiny_cache: str) -> list[dict]:
    import ray

    from actors.config import ModelConfig, SamplingConfig
    from actors.rollout_worker import RolloutWorker
    from learner.driver.launch import RankGroup, Workers
    from learner.driver.stages import publish_weights
    from learner.worker.config import TrainConfig
    from learner.worker.learner_worker import LearnerWorker

    model = ModelConfig(lora_rank=rank, lora_alpha=float(rank), tiny_cache_dir=tiny_cache)
    sampling = SamplingConfig(num_steps=4)
    n_max = max(actor_counts)
    learner = (
        ray.remote(LearnerWorker)
        .options(num_cpus=0.1)
        .remote(model=model, sampling=sampling, train=TrainConfig(), seed=0)
    )
    rollouts = [
        ray.remote(RolloutWorker).options(num_cpus=0.1).remote(model=model, sampling=sampling, seed=0)
        for _ in range(n_max)
    ]
    sinks = [ray.remote(Sink).options(num_cpus=0.1).remote() for _ in range(n_max)]
    ray.get([a.identity.remote() for a in [learner, *rollouts]])  # all pipelines loaded
    weights = ray.get(learner.get_weights.remote())
    nbytes = sum(v.numel() * v.element_size() for v in weights.lora.values())
    print(f"rank {rank}: {len(weights.lora)} LoRA tensors, {nbytes / 1e6:.3f} MB", flush=True)
    rows = []
    for n in actor_counts:
        actors, sink_n = rollouts[:n], sinks[:n]
        workers = Workers(actors, RankGroup([learner]), [], hybrid=False, num_shards=1, device_share={})
        publish = median_ms(lambda workers=workers: publish_weights(workers, 0), repeats)
        fetch = median_ms(lambda: ray.get(learner.get_weights.remote()), repeats)

        def raw_put_get(sink_n=sink_n):
            ref = ray.put(weights)
            ray.get([s.take.remote(ref) for s in sink_n])

        raw = median_ms(raw_put_get, repeats)

        def put_and_load(
            actors=actors,
        ):  # publish without the learner fetch: the same transfer as raw, plus the peft load
            ref = ray.put(weights)
            ray.get([a.set_weights.remote(ref) for a in actors])

        put_load = median_ms(put_and_load, repeats)
        row = {
            "lora_rank": rank,
            "lora_mb": round(nbytes / 1e6, 4),
            "actors": n,
            "publish_ms": publish,
            "learner_fetch_ms": fetch,
            "put_and_load_ms": put_load,
            "raw_put_get_ms": raw,
            "publish_over_raw": round(publish / raw, 2),
        }
        print(
            f"  N={n}: publish {publish:.2f} ms (learner fetch {fetch:.2f} ms; put + load {put_load:.2f} ms), "
            f"raw put/get {raw:.2f} ms, ratio {row['publish_over_raw']}",
            flush=True,
        )
        rows.append(row)
    for a in [learner, *rollouts, *sinks]:
        ray.kill(a)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.weight_sync", description=__doc__.split("\n\n")[0])
    p.add_argument("--actors", type=int, nargs="+", default=[1, 2, 4], help="numbers of rollout actors N")
    p.add_argument("--ranks", type=int, nargs="+", default=[4, 332], help="LoRA ranks of the tiny pipeline")
    p.add_argument("--repeats", type=int, default=20, help="timed repeats per point (median reported)")
    p.add_argument("--tiny-cache", default="~/.cache/sdpo-ray/tiny-sd", help="where the tiny pipeline is built")
    p.add_argument("--out", help="also write the result JSON to this file")
    args = p.parse_args()

    import ray

    from actors.tiny_model import ensure_tiny_pipeline

    cache = str(Path(args.tiny_cache).expanduser())
    ensure_tiny_pipeline(cache)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        rows = [row for rank in args.ranks for row in measure_rank(rank, args.actors, args.repeats, cache)]
    finally:
        ray.shutdown()
    result = {
        "benchmark": "weight_sync",
        "machine": f"{os.cpu_count()}-core CPU, {platform.machine()}",
        "ray": ray.__version__,
        "repeats": args.repeats,
        "rows": rows,
    }
    return emit(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
