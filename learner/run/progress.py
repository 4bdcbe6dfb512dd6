"""The console's epoch line: the epoch's figures, its throughput in pairs per second, and the time
the run still needs (ETA), estimated from this attempt's mean wall time per epoch so far (evaluation
and checkpoints included, as they recur)."""

from __future__ import annotations

import time
from typing import Callable


def format_duration(seconds: float) -> str:
    """Seconds -> 'M:SS' under an hour, else 'H:MM:SS' (rounded to the second)."""
    s = max(0, int(round(seconds)))
    h, m, s = s // 3600, s // 60 % 60, s % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def eta_seconds(elapsed_s: float, epochs_done: int, epochs_left: int) -> float:
    """Remaining time at this attempt's mean epoch time: elapsed / done * left."""
    return elapsed_s / epochs_done * epochs_left if epochs_done else float("nan")


class Progress:
    def __init__(self, first_epoch: int, epochs: int, clock: Callable[[], float] = time.monotonic):
        self.first_epoch, self.epochs, self.clock = first_epoch, epochs, clock
        self.started = clock()

    def epoch_line(self, epoch: int, metrics: dict) -> str:
        """The line printed after epoch `epoch` (0-based) with its metrics."""
        elapsed = self.clock() - self.started
        eta = eta_seconds(elapsed, epoch + 1 - self.first_epoch, self.epochs - epoch - 1)
        seconds = metrics["time_epoch_s"]
        rate = metrics["pairs"] / seconds if seconds > 0 else float("nan")
        first = f"reward 1-step {metrics['reward_1step_mean']:.4f}  " if "reward_1step_mean" in metrics else "reward "
        return (
            f"epoch {epoch + 1}/{self.epochs}  v{metrics['weights_version']}  {first}final "
            f"{metrics['reward_final_mean']:.4f}  loss {metrics['loss']:.4f}  {seconds:.1f}s  {rate:.2f} pairs/s  ETA "
            f"{format_duration(eta)}"
        )


class TimeBreakdown:
    """Where a run's wall time went, for the line printed at its end: start-up (Ray, workers, model
    loads), the held-out evaluations (the initial policy's included), the epochs' rollout, reward,
    update and the rest of the epoch (weight publish, advantages), checkpoints, and everything else
    (outputs, the LoRA and its card). `add` accumulates seconds per part; `line` formats them."""

    PARTS = ("start-up", "evaluation", "rollout", "reward", "update", "epoch other", "checkpoints")

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock, self.started = clock, clock()
        self.seconds = dict.fromkeys(self.PARTS, 0.0)

    def elapsed(self) -> float:
        return self.clock() - self.started

    def add(self, part: str, seconds: float) -> None:
        self.seconds[part] += seconds

    def add_epoch(self, times: dict[str, float]) -> None:
        """An epoch's own timings (metrics.jsonl's time_*_s)."""
        parts = {
            "rollout": times.get("time_rollout_s", 0.0),
            "reward": times.get("time_reward_s", 0.0),
            "update": times.get("time_update_s", 0.0),
        }
        for part, seconds in parts.items():
            self.add(part, seconds)
        self.add("epoch other", max(0.0, times.get("time_epoch_s", 0.0) - sum(parts.values())))

    def line(self) -> str:
        total = self.elapsed()
        other = max(0.0, total - sum(self.seconds.values()))
        parts = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in [*self.seconds.items(), ("other", other)])
        return f"time: {format_duration(total)} in all: {parts}"
