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

from learner.run.config import WandbConfig
from plumbing.errors import UsageError

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
    return {
        k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


def api_key_present(environ: dict | None = None) -> bool:
    """Whether W&B online mode has credentials here: WANDB_API_KEY, or a ~/.netrc entry for the W&B
    host (what `wandb login` writes), without asking the network."""
    import netrc
    import os
    from urllib.parse import urlparse

    env = os.environ if environ is None else environ
    if env.get("WANDB_API_KEY"):
        return True
    host = urlparse(env.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    try:
        return netrc.netrc(env.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def check_wandb(cfg: WandbConfig, environ: dict | None = None) -> None:
    """Before any work: the package is there, and online mode has an API key."""
    import os

    env = os.environ if environ is None else environ
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise WandbUnavailableError("output.wandb.enabled needs the wandb package: pip install -e '.[wandb]'") from None
    mode = env.get("WANDB_MODE", cfg.mode)
    if mode == "online" and not api_key_present(env):
        raise WandbUnavailableError(
            "output.wandb: no W&B API key (set WANDB_API_KEY or run `wandb login`), or set output.wandb.mode=offline "
            "to log under the run directory and `wandb sync` it later"
        )


INIT_TIMEOUT_S = 20.0  # an online start that cannot reach W&B falls back to offline mode after this


class WandbLogger:
    def __init__(self, cfg: WandbConfig, run_dir: Path, config: dict):
        try:
            import wandb
        except ImportError:
            raise WandbUnavailableError(
                "output.wandb.enabled needs the wandb package: pip install -e '.[wandb]'"
            ) from None
        self.wandb = wandb
        init = dict(
            project=cfg.project,
            entity=cfg.entity,
            name=cfg.name or run_dir.name,
            tags=list(cfg.tags),
            dir=str(run_dir),
            id=run_id(run_dir),
            resume="allow",
            config=config,
        )
        settings = dict(silent=True, console="off")  # the console stays the job's own
        mode = cfg.mode
        try:
            self.run = wandb.init(mode=mode, settings=wandb.Settings(**settings, init_timeout=INIT_TIMEOUT_S), **init)
        except Exception as err:  # noqa: BLE001  (wandb's CommError, UsageError, timeouts: its server cannot be used)
            if cfg.mode != "online":
                raise
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            wandb.teardown()  # the failed start still holds the run id in this process
            print(
                f"warning: W&B is unreachable ({first[:200]}); logging offline under {run_dir / 'wandb'} instead "
                "(upload later with `wandb sync`)",
                flush=True,
            )
            mode = "offline"
            self.run = wandb.init(mode=mode, settings=wandb.Settings(**settings), **init)
        self.run.define_metric("epoch")
        self.run.define_metric("*", step_metric="epoch")
        where = f"{run_dir / 'wandb'} (upload: wandb sync)" if mode == "offline" else mode
        print(f"W&B: run {self.run.id} in project {cfg.project}, {where}", flush=True)

    def log(self, metrics: dict) -> None:
        self.run.log(scalars(metrics))

    def log_image(self, key: str, path: Path, epoch: int, caption: str = "") -> None:
        self.run.log({"epoch": epoch, key: self.wandb.Image(str(path), caption=caption or None)})

    def finish(self) -> None:
        self.run.finish()
