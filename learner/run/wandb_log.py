"""Optional Weights & Biases logging (`output.wandb`): the same scalars as TensorBoard, the sample
and evaluation grids, and the resolved config.

The W&B run id is kept in <run_dir>/wandb_run_id, so a resumed run continues the same W&B run
(`resume="allow"`). Every record carries `epoch`, W&B's x-axis for every metric, so epochs that a
resumed attempt logs again (those after its checkpoint) land on the same x values, not on new steps.
Offline mode writes under <run_dir>/wandb; `wandb sync <that folder>` uploads it later.
"""

from __future__ import annotations

import math
import secrets
from pathlib import Path

from actors.errors import UsageError
from learner.config import WandbConfig

RUN_ID_FILE = "wandb_run_id"


class WandbUnavailableError(UsageError):
    """output.wandb.enabled without the wandb package installed."""


def run_id(run_dir: Path) -> str:
    """The run directory's W&B run id: read from <run_dir>/wandb_run_id, or created there."""
    path = run_dir / RUN_ID_FILE
    if path.exists():
        return path.read_text().strip()
    new = secrets.token_hex(4)  # 8 lowercase hex characters, valid as a W&B id
    path.write_text(new + "\n")
    return new


def scalars(metrics: dict) -> dict[str, float]:
    """The finite numbers of a metrics record (what TensorBoard gets too)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


class WandbLogger:
    def __init__(self, cfg: WandbConfig, run_dir: Path, config: dict):
        try:
            import wandb
        except ImportError:
            raise WandbUnavailableError("output.wandb.enabled needs the wandb package: pip install -e '.[wandb]'") from None
        self.wandb = wandb
        self.run = wandb.init(
            project=cfg.project,
            entity=cfg.entity,
            name=cfg.name or run_dir.name,
            tags=list(cfg.tags),
            mode=cfg.mode,
            dir=str(run_dir),
            id=run_id(run_dir),
            resume="allow",
            config=config,
            settings=wandb.Settings(silent=True, console="off"),  # the console stays the job's own
        )
        self.run.define_metric("epoch")
        self.run.define_metric("*", step_metric="epoch")
        where = f"{run_dir / 'wandb'} (upload: wandb sync)" if cfg.mode == "offline" else cfg.mode
        print(f"W&B: run {self.run.id} in project {cfg.project}, {where}", flush=True)

    def log(self, metrics: dict) -> None:
        self.run.log(scalars(metrics))

    def log_image(self, key: str, path: Path, epoch: int, caption: str = "") -> None:
        self.run.log({"epoch": epoch, key: self.wandb.Image(str(path), caption=caption or None)})

    def finish(self) -> None:
        self.run.finish()
