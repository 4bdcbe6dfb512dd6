"""The epoch loop, as one would draw it: publish weights -> roll out pairs (sparse images to the
reward pool as they arrive) -> dense rewards and advantages -> update -> evaluate -> outputs ->
checkpoint. Each stage is one timed helper (learner.driver.stages)."""

from __future__ import annotations

import copy
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

from learner.algo.advantages import StepStatTracker
from learner.algo.registry import Algorithm, get_algorithm
from learner.config import Config, to_yaml
from learner.driver import resume, stages
from learner.driver.connect import init_ray
from learner.driver.evaluation import Evaluator
from learner.driver.faults import WorkerNames
from learner.driver.launch import Workers, launch_workers
from learner.driver.monitors import MonitorStage
from learner.driver.preemption import Preemption
from learner.driver.ray_metrics import RayMetrics
from learner.driver.recovery import RankRecovery
from learner.run.checkpoint import driver_rng_state, restore_driver_rng
from learner.run.lock import RunDirLock
from learner.run.model_card import finish_lora
from learner.run.outputs import RunOutputs, eval_grid_path
from learner.run.plots import Curves
from learner.run.progress import Progress, TimeBreakdown
from plumbing.remote import get
from rewards.pool import PoolStats, RewardPool


@contextmanager
def timed(times: dict[str, float], key: str):
    start = time.perf_counter()
    yield
    times[key] = round(time.perf_counter() - start, 4)


def run(
    cfg: Config,
    run_dir: Path,
    prompt_list: list[str],
    preemption: Preemption | None = None,
    names: WorkerNames | None = None,
) -> Path:
    """The run; `names` receives the workers' names (for the caller's report of a failure)."""
    lock = RunDirLock(run_dir).acquire()  # one driver per run directory (released when this process ends)
    try:
        return _run(cfg, run_dir, prompt_list, preemption, names)
    finally:
        lock.release()


def _run(
    cfg: Config, run_dir: Path, prompt_list: list[str], preemption: Preemption | None, names: WorkerNames | None
) -> Path:
    breakdown = TimeBreakdown()  # where the wall time goes: printed at the end
    state = resume.find_resume(run_dir, cfg, prompt_list)  # the newest complete checkpoint, or None
    if state is not None and state.epoch >= cfg.epochs:
        resume.finish_completed(run_dir, state)
        finish_lora(run_dir, cfg, state.epoch)
        return run_dir
    preemption = (preemption or Preemption(cfg.checkpoint.grace_s)).install()  # a SIGTERM while Ray starts: exit 143
    if cfg.ray.enabled:
        with preemption.critical(
            "Ray's start-up"
        ):  # a signal now waits for it: raised inside, it would leave Ray half started
            init_ray(cfg)
        preemption.install()  # again, in case Ray's own SIGTERM handler got in (learner/driver/connect.py keeps it out)
    out = RunOutputs(
        run_dir,
        to_yaml(cfg),
        cfg.output.tensorboard,
        first_epoch=state.epoch if state else 0,
        wandb=_wandb(cfg, run_dir),
    )
    ray_metrics = RayMetrics(run_dir.name) if cfg.ray.enabled else None
    preemption.exit_if_requested()
    workers = launch_workers(cfg, names)
    preemption.exit_if_requested()
    pool = RewardPool(workers.reward_servers, cfg.reward.batch_size, cfg.reward.timeout_s, cfg.reward.max_retries)
    tracker = (
        StepStatTracker(cfg.train.stat_buffer_size, cfg.train.stat_min_count)
        if cfg.train.per_step_stat_tracking
        else None
    )
    evaluator = Evaluator.from_config(cfg, workers, run_dir)
    algorithm = get_algorithm(cfg.algorithm)
    start, version = resume.restore(state, workers.learner, tracker)  # (0, 0) for a new run
    where = (
        f"{cfg.learner.num_workers} hybrid policy workers"
        if workers.hybrid
        else f"{len(workers.samplers)} rollout actors"
    )
    print(
        f"{cfg.algorithm.upper()}: {cfg.epochs} epochs x {cfg.rollout.pairs_per_epoch} pairs on {where}; run dir "
        f"{run_dir}",
        flush=True,
    )
    print("workers: " + ", ".join(workers.names.record(workers.named())), flush=True)
    breakdown.add("start-up", breakdown.elapsed())
    initial_times: dict[str, float] = {}
    with timed(initial_times, "eval"):
        evaluator.evaluate_initial(fresh=start == 0)  # the initial policy's held-out eval, beside every later one
    breakdown.add("evaluation", initial_times["eval"])
    plan = stages.ShardPlan.of(workers, cfg.rollout.pairs_per_epoch)  # pairs -> shards -> ranks, for every stage
    curves = Curves(run_dir, cfg.epochs, evaluator.initial_metrics, cfg.monitor.bands if cfg.monitor.enabled else None)
    monitor = MonitorStage(
        cfg.monitor, list(curves.history), evaluator.initial_metrics
    )  # replays a resumed run's records
    published, progress = None, Progress(start, cfg.epochs)
    recovery = RankRecovery(
        workers, cfg.learner, cfg.ray.enabled
    )  # a lost learner rank: restarted, the epoch runs again
    epoch_run = EpochRun(cfg, workers, pool, plan, algorithm, tracker, evaluator, prompt_list)
    for epoch in range(start, cfg.epochs):
        preemption.epoch_started()
        attempt = partial(epoch_run.train, epoch, version, published)
        scored, update, stats, eval_metrics, published, times = recovery.run(
            attempt, version, f"epoch {epoch}", epoch_run.restorer(epoch)
        )
        metrics = epoch_metrics(epoch, version, scored, stats) | times | _update_metrics(update, stats, workers, times)
        version = update["policy_version"]
        breakdown.add_epoch(times)
        breakdown.add("evaluation", times["time_eval_s"])
        metrics |= eval_metrics | {"time_eval_s": times["time_eval_s"]}
        metrics |= monitor.after_epoch(metrics, scored.queries.images[:, :, -1])  # img_* statistics, hacking_alerts
        curves.add(epoch, metrics)  # reward_curves.png, monitor_curves.png when due
        out.log_metrics(metrics)
        if eval_metrics:
            out.log_image(
                "eval",
                eval_grid_path(run_dir, epoch),
                epoch,
                "rows: initial and trained policy per step count; columns: held-out prompts",
            )
        if ray_metrics is not None:
            ray_metrics.record(metrics, stats.latencies, version)
        print(progress.epoch_line(epoch, metrics), flush=True)
        if (epoch + 1) % cfg.output.image_every == 0 or epoch + 1 == cfg.epochs:
            n = min(8, scored.queries.num_pairs)  # trajectory 1 of up to 8 pairs: its 1-step and final samples
            out.save_grid(
                scored.queries.images[:n, 0][:, [0, -1]], epoch, scored.queries.prompts[:n], cfg.sampling.num_steps
            )
        if resume.is_due(epoch + 1, cfg) or preemption.requested:
            with preemption.critical(), timed(times, "checkpoint"):
                save = partial(resume.save_checkpoint, run_dir, epoch + 1, workers.learner, tracker, cfg, prompt_list)
                recovery.run(save, version, f"the checkpoint after epoch {epoch}")
            breakdown.add("checkpoints", times["checkpoint"])
        preemption.exit_if_requested()
    lora_file = get(workers.learner.save_lora.remote(str(run_dir / "lora")))
    finish_lora(run_dir, cfg, cfg.epochs)  # the model card (and the upload, with output.push_to_hub)
    out.close()
    print(breakdown.line(), flush=True)
    print(
        f"done: outputs in {run_dir} (metrics.jsonl, samples/, tensorboard/, LoRA {lora_file} with its model card)",
        flush=True,
    )
    return run_dir


@dataclass
class EpochRun:
    """What one epoch's training touches: the part of it that runs again when a learner rank is lost
    (learner.driver.recovery)."""

    cfg: Config
    workers: Workers
    pool: RewardPool
    plan: stages.ShardPlan
    algorithm: Algorithm
    tracker: StepStatTracker | None
    evaluator: Evaluator
    prompt_list: list[str]

    def train(self, epoch: int, version: int, published):
        """Publish -> roll out and score -> advantages -> update -> evaluate when due; (scored, update,
        the reward pool's stats, eval metrics, the published weights, times)."""
        cfg, workers, times = self.cfg, self.workers, {}
        with timed(times, "time_epoch_s"):
            with timed(times, "time_publish_s"):
                published = stages.publish_weights(workers, version, published)
            prompts = stages.prompts_for_epoch(self.prompt_list, cfg.seed, epoch, cfg.rollout.pairs_per_epoch)
            scored = stages.rollout_and_score(workers, self.pool, self.plan, epoch, prompts, cfg.rollout, published)
            stages.check_dropped(scored, len(prompts), cfg.reward.max_dropped_fraction)
            times |= scored.times
            advantages = stages.advantages(
                self.algorithm, scored, self.plan, cfg.train, cfg.sampling.similarity_floor, self.tracker
            )  # (B, P, T)
            with timed(times, "time_update_s"):
                update = stages.update(workers, self.plan, scored, advantages, epoch, version)
        stats = self.pool.take_stats()
        eval_metrics = {}
        with timed(times, "time_eval_s"):
            if self.evaluator.due(epoch):  # publish this epoch's policy (the next epoch reuses it), then evaluate it
                published = stages.publish_weights(workers, update["policy_version"], published)
                eval_metrics = self.evaluator.evaluate(epoch, published)
        return scored, update, stats, eval_metrics, published, times

    def restorer(self, epoch: int) -> Callable[[], None]:
        """What puts the driver's state back as it was before `epoch`, for the epoch to run again."""
        tracker = copy.deepcopy(self.tracker.state_dict()) if self.tracker is not None else None
        rng = driver_rng_state()

        def restore() -> None:
            if self.tracker is not None:
                self.tracker.load_state_dict(copy.deepcopy(tracker))
            restore_driver_rng(rng)
            self.pool.abandon()

        return restore


def _wandb(cfg: Config, run_dir: Path):
    if not cfg.output.wandb.enabled:
        return None
    from learner.run.wandb_log import WandbLogger

    return WandbLogger(cfg.output.wandb, run_dir, cfg.model_dump(mode="json"))


def _update_metrics(update: dict, stats: PoolStats, workers: Workers, times: dict) -> dict[str, float]:
    """The learner's metrics (rank 0's, averaged over ranks) plus busy seconds per worker kind and
    the epoch's gpu_busy_fraction."""
    out = {k: v for k, v in update.items() if k not in ("policy_version", "busy_s")}
    busy = {"rollout": times["busy_rollout_s"], "learner": update["busy_learner_s"], "reward": stats.model_seconds}
    return out | stages.busy_metrics(busy, workers.device_share, times["time_epoch_s"])


def epoch_metrics(epoch: int, version: int, scored: stages.Scored, stats: PoolStats) -> dict[str, float]:
    """The epoch's sampling and reward figures (metrics.jsonl); the update and timings are added to it."""
    sparse = scored.sparse_rewards  # (B, P, K+2): first, anchors, last; or (B, P, 1): x_T (DDPO's final queries)
    out = {
        "epoch": epoch,
        "weights_version": version,
        "pairs": scored.queries.num_pairs,
        "pairs_dropped": scored.pairs_dropped,
        "reward_queries": stats.images,
        "reward_final_mean": float(np.mean(sparse[:, :, -1])),
        "reward_final_std": float(np.std(sparse[:, :, -1])),
    }
    if sparse.shape[2] > 1:  # the first query is the 1-step sample x0_0
        out |= {
            "reward_1step_mean": float(np.mean(sparse[:, :, 0])),
            "reward_1step_std": float(np.std(sparse[:, :, 0])),
        }
    return out | reward_metrics(scored, stats)


def reward_metrics(scored: stages.Scored, stats: PoolStats) -> dict[str, float]:
    """Per-reward means (weighted rewards) and the reward service's latency and retries."""
    out = {f"reward_{name}_mean": float(np.mean(v)) for name, v in scored.components.items() if v.size}
    out["reward_latency_s"] = round(float(np.mean(stats.latencies)), 4) if stats.latencies else float("nan")
    out["reward_model_s"] = round(stats.model_seconds, 4)
    out["reward_retries"] = stats.retries
    out["reward_failed_calls"] = stats.failed_calls
    return out
