"""What a run leaves in its directory: config.yaml, metrics.jsonl, TensorBoard events, sample grids
(and, with output.wandb, the same in a Weights & Biases run)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from learner.run.grids import write_labelled_grid


class RunOutputs:
    """`first_epoch`: the epoch this (possibly resumed) run starts at. Metrics of that epoch and later,
    left by an earlier attempt that ran past its last checkpoint, are dropped, in metrics.jsonl and
    in TensorBoard (purge_step), so that every epoch is logged once."""

    def __init__(
        self, run_dir: str | Path, config_yaml: str, tensorboard: bool = True, first_epoch: int = 0, wandb=None
    ):
        """`wandb`: a learner.run.wandb_log.WandbLogger, or None."""
        self.dir, self.wandb = Path(run_dir), wandb
        (self.dir / "samples").mkdir(parents=True, exist_ok=True)
        write_atomic(self.dir / "config.yaml", config_yaml.encode())
        self.metrics_path = self.dir / "metrics.jsonl"
        keep_metrics_before(self.metrics_path, first_epoch)
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.dir / "tensorboard"), purge_step=first_epoch or None)

    def log_metrics(self, metrics: dict) -> None:
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(metrics) + "\n")
        if self.writer is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and k != "epoch" and math.isfinite(v):
                    self.writer.add_scalar(k, v, metrics["epoch"])
            self.writer.flush()
        if self.wandb is not None:
            self.wandb.log(metrics)

    def save_grid(self, images: np.ndarray, epoch: int, prompts: list[str], num_steps: int) -> Path:
        """images (N, 2, H, W, 3) uint8, the 1-step and final samples of N pairs' first trajectories ->
        samples/epoch_XXXX.png, labelled: rows '1-step' and '<T>-step', columns the N prompts."""
        rows = images.transpose(1, 0, 2, 3, 4)  # (2, N, H, W, 3)
        path = write_labelled_grid(
            rows, ["1-step", f"{num_steps}-step"], list(prompts), self.dir / "samples" / f"epoch_{epoch:04d}.png"
        )
        self.log_image("samples", path, epoch, f"rows: 1-step and {num_steps}-step samples; columns: training prompts")
        return path

    def log_image(self, key: str, path: Path, epoch: int, caption: str = "") -> None:
        """An image already written to the run directory, sent to the trackers that take images."""
        if self.wandb is not None and path.exists():
            self.wandb.log_image(key, path, epoch, caption)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.wandb is not None:
            self.wandb.finish()


def _records(path: Path) -> tuple[list[tuple[str, dict]], int]:
    """The metrics records of a metrics.jsonl as (line, record), and how many lines were not records
    of this project's (torn by a kill, binary bytes, not JSON, no whole non-negative epoch)."""
    good, bad = [], 0
    for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        epoch = record.get("epoch") if isinstance(record, dict) else None
        if isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 0 and "\ufffd" not in line:
            good.append((line, record))
        else:
            bad += 1
    return good, bad


def keep_metrics_before(path: Path, epoch: int) -> None:
    """Rewrite a metrics.jsonl (atomically) with only its complete records of epochs before `epoch`
    (a resumed run redoes the later ones), saying how many damaged or foreign lines it dropped."""
    if not path.exists():
        return
    records, bad = _records(path)
    kept = [line + "\n" for line, record in records if record["epoch"] < epoch]
    if len(kept) < len(records):
        print(
            f"{path}: dropped {len(records) - len(kept)} record(s) of epoch {epoch} or later (this attempt redoes "
            "them)",
            flush=True,
        )
    if bad:
        print(
            f"warning: {path}: dropped {bad} line(s) that are not this run's records (damaged or foreign)", flush=True
        )
    write_atomic(path, "".join(kept).encode())


def eval_grid_path(run_dir: str | Path, epoch: int) -> Path:
    """Where the held-out evaluation after epoch `epoch` leaves its grid."""
    return Path(run_dir) / "eval" / f"epoch_{epoch:04d}.png"


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path` and rename it into place."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The run's metrics records; lines that are not records (torn, binary, foreign) are skipped."""
    path = Path(run_dir) / "metrics.jsonl"
    return [record for _, record in _records(path)[0]] if path.exists() else []


RUN_FILES = (".lock", "config.yaml", "metrics.jsonl", "reward_curves.png")  # what a run writes as files
RUN_DIRS = ("checkpoints", "eval", "samples", "tensorboard", "lora", "wandb")  # and as folders


def run_dir_obstacles(run_dir: Path) -> str | None:
    """What would stop a run from writing its outputs into `run_dir`, found before any work: the
    directory (or a parent) being a file, an output file being a folder or an output folder a file,
    or no write permission. None when there is none."""
    for parent in [run_dir, *run_dir.parents]:
        if parent.exists():
            if not parent.is_dir():
                return f"'{parent}' is a file, so '{run_dir}' cannot be a run directory"
            if not os.access(parent, os.W_OK | os.X_OK):
                return f"'{parent}' is not writable"
            break
    for name in RUN_FILES:
        if (run_dir / name).is_dir():
            return f"'{run_dir / name}' is a folder where the run writes a file; move it away"
    for name in RUN_DIRS:
        path = run_dir / name
        if path.exists() and not path.is_dir():
            return f"'{path}' is a file where the run writes a folder; move it away"
        if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
            return f"'{path}' is not writable"
    return None
