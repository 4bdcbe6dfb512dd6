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
            f"epoch {epoch + 1}/{self.epochs}  v{metrics['weights_version']}  {first}"
            f"final {metrics['reward_final_mean']:.4f}  loss {metrics['loss']:.4f}  {seconds:.1f}s  {rate:.2f} pairs/s  "
            f"ETA {format_duration(eta)}"
        )
