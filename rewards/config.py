"""Config section consumed by the reward service."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RewardConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field("jpeg_compressibility", description="Registered reward name (see `rewards.registry`).")
    num_servers: int = Field(1, ge=1, description="Reward-server actors in the pool.")
    num_cpus: float = Field(0.25, gt=0, description="CPUs reserved per reward server.")
    num_gpus: float = Field(0.0, ge=0, description="GPU fraction per reward server.")
    batch_size: int = Field(32, ge=1, description="Most images one reward-model call scores at once.")
