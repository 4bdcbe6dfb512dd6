"""Config section consumed by the reward service."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class RewardConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)  # every float finite

    name: str = Field(
        "jpeg_compressibility",
        description="Registered reward name (`python -m rewards list`), or 'weighted' for the weighted sum in `weights`.",
    )
    weights: dict[str, float] = Field(
        default_factory=dict, description="With name 'weighted': reward name -> weight w_k of r = sum_k w_k r_k."
    )
    options: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Reward name -> keyword options of its factory, e.g. {aesthetic: {head: /path/head.pth}}.",
    )
    modules: tuple[str, ...] = Field(
        (), description="Python modules imported on the reward servers (and driver) first: your own rewards, registered with @register_reward."
    )
    num_servers: int = Field(1, ge=1, le=4096, description="Reward-server actors in the pool.")
    num_cpus: float = Field(0.25, gt=0, description="CPUs reserved per reward server.")
    num_gpus: float = Field(0.0, ge=0, description="GPU fraction per reward server.")
    batch_size: int = Field(32, ge=1, le=65536, description="Images gathered (across rollout chunks) into one server call, and the most one model call scores.")
    timeout_s: float = Field(300.0, gt=0, description="A reward call not answered in this time is retried on another server.")
    max_retries: int = Field(2, ge=0, description="Retries of a failed or timed-out reward call before its pairs are dropped.")
    max_restarts: int = Field(3, ge=0, description="Times Ray restarts a crashed reward server (it rebuilds its model).")
    max_dropped_fraction: float = Field(
        0.5, ge=0, le=1, description="Stop the run when more than this fraction of an epoch's pairs lack a valid reward."
    )

    @model_validator(mode="after")
    def _weighted_needs_weights(self) -> "RewardConfig":
        if (self.name == "weighted") != bool(self.weights):
            raise ValueError("reward.weights is used exactly when reward.name is 'weighted'")
        return self

    @property
    def reward_names(self) -> list[str]:
        return sorted(self.weights) if self.name == "weighted" else [self.name]
