"""SDPO driver: ``python -m learner.main [--config FILE.yaml] [--run-dir DIR] [--epochs N] [--print-config] [KEY=VALUE ...]``.

Each epoch: publish weights -> roll out pairs (sparse images to the reward pool as they arrive)
-> dense rewards -> advantages -> update -> outputs -> checkpoint. Run again with the same --run-dir,
it resumes from the newest complete checkpoint; exit codes and faults: learner/faults.py,
docs/fault-tolerance.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from learner.config import Config, ConfigError, load_config, to_yaml


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m learner.main",
        description="Fine-tune a few-step diffusion model with SDPO on Ray. With no arguments, runs the "
        "'tiny' preset: the embedded tiny model with the offline JPEG-compressibility reward.",
        epilog="Overrides: KEY=VALUE with KEY a dotted config path, e.g. train.learning_rate=5e-5 "
        "rollout.num_actors=4. See --print-config for every key. Invalid configuration exits with code 2.",
    )
    p.add_argument("--config", default="tiny", help="YAML config file, or a preset name (tiny, sd_turbo_aesthetic). Default: tiny.")
    p.add_argument("--run-dir", help="Run directory for all outputs (default: runs/<name>-<timestamp>).")
    p.add_argument("--epochs", type=int, help="Number of training epochs (overrides the config's `epochs`).")
    p.add_argument("--print-config", action="store_true", help="Print the resolved config as YAML and exit.")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Config overrides by dotted key.")
    return p.parse_intermixed_args(argv)


def resolve_config(args: argparse.Namespace) -> Config:
    extra = list(args.overrides)
    if args.epochs is not None:
        extra.append(f"epochs={args.epochs}")
    if args.run_dir is not None:
        extra.append(f"output.run_dir={args.run_dir}")
    return load_config(args.config, extra)


@contextmanager
def timed(times: dict[str, float], key: str):
    start = time.perf_counter()
    yield
    times[key] = round(time.perf_counter() - start, 4)


def run(cfg: Config, run_dir: Path, prompt_list: list[str], preemption=None) -> Path:
    from learner import resume, stages
    from learner.advantages import StepStatTracker
    from learner.evaluation import Evaluator
    from learner.faults import Preemption, name_workers
    from learner.launch import get, init_ray, launch_workers
    from learner.outputs import RunOutputs
    from learner.reward_pool import RewardPool

    state = resume.find_resume(run_dir, cfg)  # the newest complete checkpoint, or None
    if state is not None and state.epoch >= cfg.epochs:
        return resume.finish_completed(run_dir, state)
    out = RunOutputs(run_dir, to_yaml(cfg), cfg.output.tensorboard, first_epoch=state.epoch if state else 0)
    if cfg.ray.enabled:
        init_ray(cfg)
    preemption = (preemption or Preemption(cfg.checkpoint.grace_s)).install()  # after ray.init, which sets its own
    rollouts, reward_servers, learner = launch_workers(cfg)
    pool = RewardPool(reward_servers, cfg.reward.batch_size, cfg.reward.timeout_s, cfg.reward.max_retries)
    tracker = StepStatTracker(cfg.train.stat_buffer_size, cfg.train.stat_min_count) if cfg.train.per_step_stat_tracking else None
    evaluator = Evaluator.from_config(cfg, rollouts, reward_servers, learner, run_dir)
    start = resume.restore(state, learner, tracker)  # the first epoch to run: 0 for a new run
    print(f"{cfg.algorithm.upper()}: {cfg.epochs} epochs x {cfg.rollout.pairs_per_epoch} pairs on {len(rollouts)} rollout actors; run dir {run_dir}", flush=True)
    print("workers: " + ", ".join(name_workers([learner, *rollouts, *reward_servers])), flush=True)
    for epoch in range(start, cfg.epochs):
        preemption.epoch_started()
        times: dict[str, float] = {}
        with timed(times, "time_epoch_s"):
            with timed(times, "time_publish_s"):
                weights = stages.publish_weights(learner, rollouts)
            version = weights.version
            prompts = stages.prompts_for_epoch(prompt_list, cfg.seed, epoch, cfg.rollout.pairs_per_epoch)
            pool.stats = type(pool.stats)()
            scored = stages.rollout_and_score(rollouts, pool, epoch, prompts, cfg.rollout.chunk_size, weights, cfg.rollout.restart_timeout_s)
            stages.check_dropped(scored, len(prompts), cfg.reward.max_dropped_fraction)
            times |= scored.times
            advantages = stages.algorithm_advantages(cfg.algorithm, scored, cfg.sampling.similarity_floor, cfg.train, tracker)  # (B, P, T)
            with timed(times, "time_update_s"):
                update = get(learner.update.remote(stages.train_batch(scored.rollout, advantages)))
        metrics = epoch_metrics(epoch, version, scored, pool.stats) | update | times
        metrics |= evaluator.after_epoch(epoch, metrics)  # held-out eval at eval.steps when due; reward_curves.png
        out.log_metrics(metrics)
        print(
            f"epoch {epoch + 1}/{cfg.epochs}  v{version}  reward 1-step {metrics['reward_1step_mean']:.4f}  "
            f"final {metrics['reward_final_mean']:.4f}  loss {metrics['loss']:.4f}  {times['time_epoch_s']:.1f}s",
            flush=True,
        )
        if (epoch + 1) % cfg.output.image_every == 0 or epoch + 1 == cfg.epochs:
            out.save_grid(scored.rollout.images[:8, 0][:, [0, -1]], epoch)  # trajectory 1 of up to 8 pairs: 1-step, final
        if resume.is_due(epoch + 1, cfg) or preemption.requested:
            with preemption.critical():
                resume.save_checkpoint(run_dir, epoch + 1, learner, tracker, cfg)
        preemption.exit_if_requested()
    lora_file = get(learner.save_lora.remote(str(run_dir / "lora")))
    out.close()
    print(f"done: outputs in {run_dir} (metrics.jsonl, samples/, tensorboard/, LoRA {lora_file})", flush=True)
    return run_dir


def epoch_metrics(epoch: int, version: int, scored, stats) -> dict[str, float]:
    """The epoch's sampling and reward figures (metrics.jsonl); the update and timings are added to it."""
    import numpy as np

    sparse = scored.sparse_rewards  # (B, P, K+2): first, anchors, last
    out = {
        "epoch": epoch,
        "weights_version": version,
        "pairs": scored.rollout.num_pairs,
        "pairs_dropped": scored.pairs_dropped,
        "reward_queries": stats.images,
        "reward_1step_mean": float(np.mean(sparse[:, :, 0])),
        "reward_final_mean": float(np.mean(sparse[:, :, -1])),
        "reward_1step_std": float(np.std(sparse[:, :, 0])),
        "reward_final_std": float(np.std(sparse[:, :, -1])),
    }
    return out | reward_metrics(scored, stats)


def reward_metrics(scored, stats) -> dict[str, float]:
    """Per-reward means (weighted rewards) and the reward service's latency and retries."""
    import numpy as np

    out = {f"reward_{name}_mean": float(np.mean(v)) for name, v in scored.components.items() if v.size}
    out["reward_latency_s"] = round(float(np.mean(stats.latencies)), 4) if stats.latencies else float("nan")
    out["reward_model_s"] = round(stats.model_seconds, 4)
    out["reward_retries"] = stats.retries
    out["reward_failed_calls"] = stats.failed_calls
    return out


def default_run_dir(cfg: Config) -> Path:
    return Path(cfg.output.run_dir or f"runs/{cfg.name}-{datetime.now():%Y%m%d-%H%M%S}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = resolve_config(args)
        if args.print_config:
            print(to_yaml(cfg), end="")
            return 0
        prompt_list = _check_inputs(cfg)
    except (ConfigError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from learner.faults import Preemption, failure

    run_dir, preemption = default_run_dir(cfg).resolve(), Preemption(cfg.checkpoint.grace_s)
    try:
        run(cfg, run_dir, prompt_list, preemption)
    except BaseException as err:  # one line and an exit code for what is not a bug (learner.faults)
        fail = failure(err, preemption, run_dir)
        if fail is None:
            raise
        print(f"error: {fail.message}", file=sys.stderr)
        return fail.code
    finally:
        _shutdown_ray()
    return 0


def _check_inputs(cfg: Config) -> list[str]:
    """Fail fast, before any cluster starts, on inputs that can never work."""
    from actors.policy import resolve_model_path
    from actors.prompts import load_prompts
    from rewards.registry import import_reward_modules, reward_spec

    import_reward_modules(cfg.reward.modules)
    for name in cfg.reward.reward_names:
        reward_spec(name)
    if cfg.eval.enabled:
        load_prompts(cfg.eval.prompts, "eval.prompts")
    if cfg.model.pretrained != "tiny":
        resolve_model_path(cfg.model)
    if cfg.sampling.num_steps < cfg.sampling.num_anchors + 2:
        raise ConfigError(f"sampling.num_steps: {cfg.sampling.num_anchors} anchor(s) need at least {cfg.sampling.num_anchors + 2} steps")
    return load_prompts(cfg.prompts.source)


def _shutdown_ray() -> None:
    try:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    except ImportError:
        pass


if __name__ == "__main__":
    sys.exit(main())
