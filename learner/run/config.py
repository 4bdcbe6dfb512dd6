"""The config sections of what a run leaves on disk: its outputs (`output`, with `output.wandb`) and its
checkpoints (`checkpoint`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from plumbing.config import Section


class WandbConfig(Section):
    enabled: bool = Field(
        False,
        description="Log to Weights & Biases (needs the optional `wandb` extra): scalars, sample and evaluation "
        "grids, the config.",
    )
    project: str = Field("sdpo", min_length=1, description="W&B project.")
    entity: str | None = Field(None, description="W&B entity (user or team); None = your default.")
    name: str | None = Field(None, description="W&B run name; None = the run directory's name.")
    tags: tuple[str, ...] = Field((), description="W&B run tags.")
    mode: Literal["online", "offline", "disabled"] = Field(
        "online",
        description="online; offline (written under <run_dir>/wandb, upload later with `wandb sync`); disabled.",
    )


class OutputConfig(Section):
    run_dir: str | None = Field(None, description="Run directory; None = runs/<preset>-<timestamp>.")
    image_every: int = Field(
        5, ge=1, le=1_000_000, description="Write a PNG grid of samples every this many epochs (and at the end)."
    )
    tensorboard: bool = Field(True, description="Write TensorBoard event files.")
    wandb: WandbConfig = Field(WandbConfig(), description="Optional Weights & Biases logging (off by default).")
    push_to_hub: str | None = Field(
        None,
        pattern=r"^([A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}$",
        description="Hugging Face Hub repo id (user/name) to upload <run_dir>/lora to (weights and model card) when "
        "the run completes; None = no upload.",
    )
    hub_private: bool = Field(True, description="With push_to_hub: create the repo as private.")


class CheckpointConfig(Section):
    every: int = Field(
        1,
        ge=1,
        le=1_000_000,
        description="Checkpoint (atomically, into <run_dir>/checkpoints) after every this many epochs, and after the "
        "last.",
    )
    keep: int = Field(3, ge=1, le=1_000_000, description="Keep only the newest this many checkpoints.")
    grace_s: float = Field(
        20.0,
        ge=0,
        le=86_400,
        description="On SIGTERM, finish the current epoch and checkpoint it if that should take at most this many "
        "seconds (keep it below the pod's terminationGracePeriodSeconds); else abandon the epoch at once. Exit code "
        "143.",
    )
