"""The config sections the driver consumes: the learner ranks it launches (`learner`), the Ray cluster
(`ray`), the held-out evaluation (`eval`) and the reward-hacking monitors (`monitor`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from plumbing.config import Section


class LearnerConfig(Section):
    num_cpus: float = Field(0.5, gt=0, le=4096, description="CPUs reserved for the learner actor.")
    num_gpus: float = Field(0.0, ge=0, le=4096, description="GPUs for the learner actor.")
    torch_threads: int = Field(1, ge=1, le=1024, description="torch intra-op threads in a CPU learner.")
    num_workers: int = Field(
        1,
        ge=1,
        le=4096,
        description="Data-parallel learner ranks (torch.distributed: NCCL on GPU, gloo on CPU), each with these "
        "resources; rank r trains shard r of each epoch's pairs. In the hybrid layout each rank also samples its "
        "shard. With ray.enabled=false one process computes the same N-shard update.",
    )
    max_restarts: int = Field(
        3,
        ge=0,
        le=1_000_000,
        description="With more than one rank: times Ray restarts a lost learner rank (a hybrid policy worker, or a "
        "learner worker) in place: the group is formed again, the new rank takes the state of a surviving rank, and "
        "the epoch runs again with the same seeds. 0, a single rank, or no surviving rank: a lost rank ends the run "
        "(exit 1; rerunning resumes from the last checkpoint).",
    )
    restart_timeout_s: float = Field(
        600.0,
        gt=0,
        le=604_800,
        description="Give up (exit 1) on a lost learner rank that is not back within this time.",
    )


class RayConfig(Section):
    enabled: bool = Field(True, description="Run on Ray actors; false runs every worker in this process.")
    address: str | None = Field(
        None,
        description="Ray address to join ('auto': the cluster `ray start` made on this machine); None uses RAY_ADDRESS "
        "if set, else starts a local cluster of this run's own ('local' too).",
    )
    num_cpus: float | None = Field(
        None, gt=0, le=1_000_000, description="CPUs of a locally started cluster (None = all)."
    )
    connect_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Give up (exit 1) when the cluster at `address` / RAY_ADDRESS does not answer within this time.",
    )
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = Field(
        "PACK",
        description="Ray placement-group strategy for all actors' bundles; STRICT_PACK keeps everything on one node "
        "(the colocated single-GPU mode).",
    )
    placement_timeout_s: float = Field(
        120.0,
        gt=0,
        le=604_800,
        description="Fail with a clear error if the actors' placement group is not placed in this time.",
    )


class EvalConfig(Section):
    enabled: bool = Field(
        True, description="Evaluate on held-out prompts every `every` epochs and after the last epoch."
    )
    every: int = Field(
        5,
        ge=1,
        le=1_000_000,
        description="Evaluate the policy after every this many epochs' updates (and after the last).",
    )
    steps: tuple[int, ...] = Field(
        (1, 2, 4, 8),
        min_length=1,
        description="Step counts k of the deterministic (eta = 0) DDIM samples scored at each evaluation.",
    )
    prompts: str = Field(
        "heldout_animals",
        description="Held-out prompts: a built-in list ('heldout_animals': 8 animals in no training list) or a text "
        "file, one per line.",
    )
    num_prompts: int = Field(
        8,
        ge=1,
        le=100_000,
        description="Evaluate on the first this many held-out prompts (all if the source has fewer).",
    )
    samples_per_prompt: int = Field(
        1,
        ge=1,
        le=1024,
        description="Fixed initial noises per held-out prompt; the metrics average all of them (more: a "
        "steadier estimate), the grids show the first.",
    )
    seed: int = Field(
        1234,
        ge=0,
        le=2**63 - 1,
        description="Seed of the held-out initial noises: the same noise per prompt at every evaluation and step "
        "count.",
    )

    @model_validator(mode="after")
    def _steps_valid(self) -> "EvalConfig":
        if any(k < 1 or k > 1000 for k in self.steps) or len(set(self.steps)) != len(self.steps):
            raise ValueError(f"eval.steps must be distinct step counts in 1..1000, got {list(self.steps)}")
        return self


MONITOR_STATS = (
    "brightness",
    "dark_fraction",
    "bright_fraction",
    "saturation",
    "colourfulness",
    "edge_density",
    "diversity",
)
DEFAULT_BANDS = {  # absolute, in each statistic's units (docs/monitors.md)
    "brightness": 0.15,
    "dark_fraction": 0.2,
    "bright_fraction": 0.2,
    "saturation": 0.2,
    "colourfulness": 0.15,
    "edge_density": 0.1,
    "diversity": 0.05,
}


class MonitorConfig(Section):
    enabled: bool = Field(
        True,
        description="Reward-hacking monitors: image statistics of the training and held-out samples each epoch "
        "(img_*, eval_img_*), monitor_curves.png, and a warning when one leaves its band while the reward rises.",
    )
    bands: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_BANDS),
        description=f"Statistic -> allowed absolute distance from the initial policy's value (given ones replace the "
        f"defaults {DEFAULT_BANDS}); statistics: {', '.join(MONITOR_STATS)}.",
    )

    @model_validator(mode="after")
    def _bands_known(self) -> "MonitorConfig":
        unknown = sorted(set(self.bands) - set(MONITOR_STATS))
        if unknown:
            raise ValueError(f"monitor.bands: unknown statistic(s) {unknown}; known: {list(MONITOR_STATS)}")
        bad = {k: v for k, v in self.bands.items() if not 0 < v <= 1000}
        if bad:
            raise ValueError(f"monitor.bands must be positive (at most 1000), got {bad}")
        object.__setattr__(self, "bands", DEFAULT_BANDS | self.bands)
        return self
