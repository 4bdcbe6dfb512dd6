"""The one config tree. Each package owns its section; this module composes them.

Load order: defaults <- preset/--config YAML <- CLI flags (--run-dir, --epochs) <- KEY=VALUE overrides.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from actors.config import ModelConfig, PromptConfig, RolloutConfig, SamplingConfig
from actors.prompts import read_bounded_text
from learner.algo.minibatches import items_per_optimizer_step, num_train_steps, trainable_steps
from learner.algo.registry import ALGORITHMS
from plumbing.config import Section
from plumbing.errors import UsageError
from rewards.config import RewardConfig

PRESET_DIR = Path(__file__).parent / "presets"
DEFAULT_PRESET = "shapes"  # the default job: SDPO on the pretrained shapes model with the learned reward
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)")


class TrainConfig(Section):
    learning_rate: float = Field(1e-4, gt=0, description="AdamW learning rate.")
    peak_tflops: float | None = Field(
        None,
        gt=0,
        le=1_000_000,
        description="Peak TFLOP/s of one device, for the mfu_rollout / mfu_update metrics; None: "
        "the dense 16-bit peak of a known GPU when the model computes in float16/bfloat16, else MFU is not reported.",
    )
    adam_beta1: float = Field(0.9, ge=0, lt=1, description="AdamW beta1.")
    adam_beta2: float = Field(0.999, ge=0, lt=1, description="AdamW beta2.")
    adam_weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay.")
    adam_epsilon: float = Field(1e-8, gt=0, description="AdamW epsilon.")
    batch_size: int = Field(
        2,
        ge=1,
        le=65536,
        description="Pairs per minibatch, as the reference counts it: each rank's optimizer step averages "
        "batch_size x gradient_accumulation_steps (pair, step) samples.",
    )
    gradient_accumulation_steps: int = Field(
        8, ge=1, le=1_000_000, description="Minibatches per optimizer step (per rank)."
    )
    micro_batch_size: int | None = Field(
        None,
        ge=1,
        le=65536,
        description="Pairs in one backward pass (None = batch_size). Changes speed, not the math: the same "
        "samples share each optimizer step. Must divide batch_size x gradient_accumulation_steps.",
    )
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient-norm clip.")
    max_nonfinite_steps: int = Field(
        3,
        ge=0,
        le=1_000_000,
        description="Optimizer steps per update that may be skipped for a non-finite loss or gradient (metric "
        "nonfinite_steps); one more stops the run (exit 1) before anything is checkpointed. Under fp16 the grad "
        "scaler's own skipped steps (overflow while it calibrates its scale) are normal and not counted.",
    )
    num_inner_epochs: int = Field(1, ge=1, le=1000, description="Passes over each epoch's samples.")
    timestep_fraction: float = Field(1.0, gt=0, le=1, description="Fraction of the T permuted steps trained on.")
    skip_last_step: bool = Field(
        False,
        description="Leave the last transition (x_{T-1} -> x_T) out of the update. No reward sees its action: r_last "
        "scores x0_{T-1}, computed before it (SDPO and this DDPO alike), so its loss term is pure noise, and with the "
        "last step's small sigma a large one. Off (all T steps) as the reference trains; docs/shapes.md measures it.",
    )
    schedule: Literal["auto", "step_shuffled", "trajectory"] = Field(
        "auto",
        description="Which (pair, step) items share an optimizer step. 'step_shuffled' (the SDPO reference): each takes "
        "batch_size x gradient_accumulation_steps items, steps of many pairs mixed; 'trajectory' (ddpo-pytorch): each takes "
        "every trained step of batch_size x gradient_accumulation_steps pairs. 'auto': the algorithm's own (SDPO: "
        "step_shuffled, DDPO: trajectory); DDPO with step_shuffled is the ablation that gives DDPO SDPO's schedule.",
    )
    clip_range: float = Field(
        1e-4,
        ge=0,
        description="SDPO: new log-probs clamped to old +- this in the clipped loss; DDPO: ratio clipped to 1 +- this (0 = off).",
    )
    adv_clip_max: float = Field(5.0, gt=0, description="Advantages clipped to [-adv_clip_max, adv_clip_max].")
    lam: float = Field(0.99, gt=0, le=1, description="Temporal weight base: w_j = lam**j / log_scale.")
    log_scale: float = Field(1.0, gt=0, description="Temporal weight divisor.")
    gamma: float = Field(0.99, ge=0, le=1, description="Discount of the dense rewards (0 = rewards as they are).")
    per_step_stat_tracking: bool = Field(
        True, description="Normalize returns per (prompt, step) (DDPO: final rewards per prompt); else over the batch."
    )
    stat_buffer_size: int = Field(
        32, ge=1, le=1_000_000, description="FIFO size per (prompt, step) in the stat tracker."
    )
    stat_min_count: int = Field(
        16, ge=1, le=1_000_000, description="Values needed before a (prompt, step) uses its own stats."
    )
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = Field(
        "auto", description="accelerate mixed precision; 'auto' = fp16 on GPU, none on CPU."
    )
    allow_tf32: bool = Field(True, description="Allow TF32 matmuls on Ampere+ GPUs.")

    @model_validator(mode="after")
    def _min_count_fits(self) -> "TrainConfig":
        if self.stat_min_count > self.stat_buffer_size:
            raise ValueError("train.stat_min_count must not exceed train.stat_buffer_size")
        if self.micro_batch_size and (self.batch_size * self.gradient_accumulation_steps) % self.micro_batch_size:
            raise ValueError(
                f"train.micro_batch_size ({self.micro_batch_size}) must divide train.batch_size x "
                f"train.gradient_accumulation_steps ({self.batch_size * self.gradient_accumulation_steps})"
            )
        return self


class LearnerConfig(Section):
    num_cpus: float = Field(0.5, gt=0, le=4096, description="CPUs reserved for the learner actor.")
    num_gpus: float = Field(0.0, ge=0, le=4096, description="GPUs for the learner actor.")
    torch_threads: int = Field(1, ge=1, le=1024, description="torch intra-op threads in a CPU learner.")
    num_workers: int = Field(
        1,
        ge=1,
        le=4096,
        description="Data-parallel learner ranks (torch.distributed: NCCL on GPU, gloo on CPU), each with these "
        "resources; rank r trains shard r of each epoch's pairs. In the hybrid layout each rank also samples its shard. "
        "With ray.enabled=false one process computes the same N-shard update.",
    )
    max_restarts: int = Field(
        3,
        ge=0,
        le=1_000_000,
        description="With more than one rank: times Ray restarts a lost learner rank (a hybrid policy worker, or a learner "
        "worker) in place: the group is formed again, the new rank takes the state of a surviving rank, and the epoch runs again with the "
        "same seeds. 0, a single rank, or no surviving rank: a lost rank ends the run (exit 1; rerunning resumes from the last checkpoint).",
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


class WandbConfig(Section):
    enabled: bool = Field(
        False,
        description="Log to Weights & Biases (needs the optional `wandb` extra): scalars, sample and evaluation grids, the config.",
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
        description="Hugging Face Hub repo id (user/name) to upload <run_dir>/lora to (weights and model card) when the run "
        "completes; None = no upload.",
    )
    hub_private: bool = Field(True, description="With push_to_hub: create the repo as private.")


class CheckpointConfig(Section):
    every: int = Field(
        1,
        ge=1,
        le=1_000_000,
        description="Checkpoint (atomically, into <run_dir>/checkpoints) after every this many epochs, and after the last.",
    )
    keep: int = Field(3, ge=1, le=1_000_000, description="Keep only the newest this many checkpoints.")
    grace_s: float = Field(
        20.0,
        ge=0,
        le=86_400,
        description="On SIGTERM, finish the current epoch and checkpoint it if that should take at most this many "
        "seconds (keep it below the pod's terminationGracePeriodSeconds); else abandon the epoch at once. Exit code 143.",
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
        description="Held-out prompts: a built-in list ('heldout_animals': 8 animals in no training list) or a text file, one per line.",
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
        description="Seed of the held-out initial noises: the same noise per prompt at every evaluation and step count.",
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


class Config(Section):
    name: str = Field("sdpo", description="Run name, used in the default run directory.")
    seed: int = Field(
        0, ge=0, le=2**63 - 1, description="Seed of all sampling and shuffling (pairs are seeded by epoch and index)."
    )
    epochs: int = Field(100, ge=1, le=1_000_000, description="Training epochs (one rollout + one update each).")
    layout: Literal["disaggregated", "hybrid"] = Field(
        "disaggregated",
        description="'hybrid': learner.num_workers policy workers each sample their shard of the pairs and train on it with "
        "the same UNet (every GPU busy in every phase; set rollout.num_actors=0). 'disaggregated': rollout.num_actors "
        "rollout actors sample, separate learner ranks train, weights are broadcast each epoch.",
    )
    algorithm: Literal["sdpo", "ddpo"] = Field(
        "sdpo",
        description="'sdpo': stepwise dense-reward difference loss; 'ddpo': PPO clipped loss on the final-image reward "
        "(per-prompt stat tracking, as ddpo-pytorch), on the same actors, rewards and learner.",
    )
    model: ModelConfig = Field(default_factory=ModelConfig, description="Base pipeline and LoRA.")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="DDIM policy and dense rewards.")
    prompts: PromptConfig = Field(default_factory=PromptConfig, description="Training prompts.")
    rollout: RolloutConfig = Field(default_factory=RolloutConfig, description="Rollout actors.")
    reward: RewardConfig = Field(default_factory=RewardConfig, description="Reward model and server pool.")
    train: TrainConfig = Field(
        default_factory=TrainConfig, description="Policy update (SDPO, or DDPO with algorithm=ddpo)."
    )
    learner: LearnerConfig = Field(default_factory=LearnerConfig, description="Learner resources.")
    ray: RayConfig = Field(default_factory=RayConfig, description="Ray cluster.")
    output: OutputConfig = Field(default_factory=OutputConfig, description="Run outputs.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Held-out step-generalization evaluation.")
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig, description="Checkpoints and resume.")
    monitor: MonitorConfig = Field(default_factory=MonitorConfig, description="Reward-hacking monitors.")

    @model_validator(mode="before")
    @classmethod
    def _algorithm_defaults(cls, data: Any) -> Any:
        """'auto' (or unset) train.schedule and sampling.reward_queries become the algorithm's own, so the
        resolved config names what runs: SDPO step_shuffled + anchors, DDPO trajectory + final."""
        if not isinstance(data, dict):
            return data
        algorithm = ALGORITHMS.get(data.get("algorithm", "sdpo"))
        if algorithm is None:
            return data  # the field's own validation names the bad value
        data = dict(data)
        for section, key, value in (
            ("train", "schedule", algorithm.schedule),
            ("sampling", "reward_queries", algorithm.reward_queries),
        ):
            part = data.get(section, {})
            if isinstance(part, dict) and part.get(key, "auto") == "auto":
                data[section] = {**part, key: value}
            elif isinstance(part, Section) and getattr(part, key) == "auto":  # a section built in code
                data[section] = part.model_copy(update={key: value})
        return data

    @model_validator(mode="after")
    def _queries_fit_algorithm(self) -> "Config":
        if self.algorithm == "sdpo" and self.sampling.reward_queries == "final":
            raise ValueError(
                "sampling.reward_queries: SDPO's dense rewards need the anchor queries ('anchors'); 'final' is DDPO's"
            )
        return self

    @model_validator(mode="after")
    def _learner_group_fits(self) -> "Config":
        n, r = self.learner.num_workers, self.rollout
        if self.layout == "hybrid" and r.num_actors:
            raise ValueError(
                "rollout.num_actors: the hybrid layout samples on its learner.num_workers policy workers; set rollout.num_actors=0"
            )
        if self.layout == "disaggregated" and not r.num_actors:
            raise ValueError(
                "rollout.num_actors: the disaggregated layout needs at least one rollout actor (or use layout=hybrid)"
            )
        if r.pairs_per_epoch % (n * r.chunk_size):
            raise ValueError(
                f"rollout.pairs_per_epoch ({r.pairs_per_epoch}) must be a multiple of learner.num_workers x rollout.chunk_size "
                f"({n * r.chunk_size}): every rank's shard is whole chunks"
            )
        return self

    @model_validator(mode="after")
    def _runtime_env_needs_ray(self) -> "Config":
        if self.reward.runtime_env is not None and not self.ray.enabled:
            raise ValueError(
                "reward.runtime_env: a runtime_env is applied by Ray to the reward-server actors; with ray.enabled=false "
                "everything runs in this process and it cannot be honoured (set ray.enabled=true, or remove reward.runtime_env)"
            )
        return self

    @property
    def samples_per_optimizer_step(self) -> int:
        """(pair, step) samples averaged by one optimizer step, over all ranks."""
        return self.learner.num_workers * self._items_per_step

    @property
    def _items_per_step(self) -> int:
        t = self.train
        steps = trainable_steps(self.sampling.num_steps, t.skip_last_step)
        return items_per_optimizer_step(
            t.schedule, steps, t.batch_size, t.gradient_accumulation_steps, t.timestep_fraction
        )

    @property
    def optimizer_steps_per_epoch(self) -> int:
        """Optimizer steps per epoch (with every pair rewarded)."""
        per_rank = self.rollout.pairs_per_epoch // self.learner.num_workers
        steps = trainable_steps(self.sampling.num_steps, self.train.skip_last_step)
        items = per_rank * num_train_steps(steps, self.train.timestep_fraction) * self.train.num_inner_epochs
        return -(-items // self._items_per_step)


class ConfigError(UsageError):
    """A user-facing configuration error; its message is one line naming the key or file."""


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{key}: '{part}' is not a config section")
        node = child
    node[parts[-1]] = value


def parse_override(item: str) -> tuple[str, Any]:
    """'train.learning_rate=5e-5' -> ('train.learning_rate', 5e-05); values are parsed as YAML scalars."""
    key, sep, raw = item.partition("=")
    if not sep or not key or any(not p for p in key.split(".")):
        raise ConfigError(f"override '{item}' is not KEY=VALUE with KEY a dotted config path")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    except RecursionError:  # the YAML parser recurses once per nesting level
        raise ConfigError(
            f"{key}: its value is nested deeper than {MAX_CONFIG_DEPTH} levels; a config value is a small mapping or list"
        ) from None
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        value = float(value)  # YAML 1.1 reads '5e-5' (no dot) as a string
    return key, value


MAX_CONFIG_BYTES = 1 << 20  # a config file is a few KB; anything near this is a mistake or an attack
MAX_CONFIG_NODES = 10_000  # values and keys, counting every repetition of a YAML alias
MAX_CONFIG_DEPTH = 16


def check_config_size(tree: Any, source: str) -> None:
    """ConfigError if `tree` (plain YAML data) has more than MAX_CONFIG_NODES nodes, counting every
    repetition of a YAML alias (so an alias bomb is refused before anything expands it), or is nested
    deeper than MAX_CONFIG_DEPTH."""
    nodes, stack = 0, [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > MAX_CONFIG_NODES or depth > MAX_CONFIG_DEPTH:
            what = (
                f"more than {MAX_CONFIG_NODES} values"
                if nodes > MAX_CONFIG_NODES
                else f"nesting deeper than {MAX_CONFIG_DEPTH}"
            )
            raise ConfigError(
                f"{source}: {what} (YAML aliases count once per use); a config is a small mapping of keys"
            )
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for kv in node.items() for v in kv)
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a config file, or a preset by name (e.g. 'tiny')."""
    p = Path(path)
    if (
        not p.is_file() and (PRESET_DIR / f"{path}.yaml").exists()
    ):  # a folder named like a preset (./shapes) is not a config
        p = PRESET_DIR / f"{path}.yaml"
    if not p.is_file():
        presets = ", ".join(sorted(x.stem for x in PRESET_DIR.glob("*.yaml")))
        raise ConfigError(f"config file '{path}' does not exist (presets: {presets})")
    try:
        text = read_bounded_text(p, MAX_CONFIG_BYTES)
    except ValueError as why:
        raise ConfigError(f"config file '{path}' {why}") from None
    try:
        data = yaml.safe_load(text)
    except RecursionError:
        raise ConfigError(
            f"config file '{path}': nesting deeper than {MAX_CONFIG_DEPTH}; a config is a small mapping of keys"
        ) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file '{path}' is not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping of config keys, not {type(data).__name__}")
    check_config_size(data, f"config file '{path}'")
    return data


def _format_error(err: ValidationError) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "config"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    extra = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{key}: {msg}{extra}"


def build_config(data: dict[str, Any], overrides: list[str] = ()) -> Config:
    """Validate a raw mapping plus KEY=VALUE overrides into a Config, or raise ConfigError."""
    check_config_size(data, "config")
    tree = yaml.safe_load(yaml.safe_dump(data))  # deep copy of plain data
    for item in overrides:
        key, value = parse_override(item)
        check_config_size(value, key)
        _set_dotted(tree, key, value)
    try:
        return Config.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_format_error(err)) from None


def load_config(path: str | None = DEFAULT_PRESET, overrides: list[str] = ()) -> Config:
    return build_config(read_yaml(path) if path else {}, overrides)


def to_yaml(config: Config) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
