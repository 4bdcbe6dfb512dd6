"""The one config tree, and how it is loaded. Each package owns its section; this module composes them:
``actors.config`` (model, sampling, prompts, rollout), ``rewards.config`` (reward), ``learner.worker.config``
(train), ``learner.driver.config`` (learner, ray, eval, monitor) and ``learner.run.config`` (output, checkpoint).

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
from learner.driver.config import EvalConfig, LearnerConfig, MonitorConfig, RayConfig
from learner.run.config import CheckpointConfig, OutputConfig
from learner.worker.config import TrainConfig
from plumbing.config import Section
from plumbing.errors import UsageError
from rewards.config import RewardConfig

PRESET_DIR = Path(__file__).parent / "presets"
DEFAULT_PRESET = "shapes"  # the default job: SDPO on the pretrained shapes model with the learned reward
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)")


class Config(Section):
    name: str = Field("sdpo", description="Run name, used in the default run directory.")
    seed: int = Field(
        0, ge=0, le=2**63 - 1, description="Seed of all sampling and shuffling (pairs are seeded by epoch and index)."
    )
    epochs: int = Field(100, ge=1, le=1_000_000, description="Training epochs (one rollout + one update each).")
    layout: Literal["disaggregated", "hybrid"] = Field(
        "disaggregated",
        description="'hybrid': learner.num_workers policy workers each sample their shard of the pairs and train on "
        "it with the same UNet (every GPU busy in every phase; set rollout.num_actors=0). 'disaggregated': "
        "rollout.num_actors rollout actors sample, separate learner ranks train, weights are broadcast each epoch.",
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
                "rollout.num_actors: the hybrid layout samples on its learner.num_workers policy workers; set "
                "rollout.num_actors=0"
            )
        if self.layout == "disaggregated" and not r.num_actors:
            raise ValueError(
                "rollout.num_actors: the disaggregated layout needs at least one rollout actor (or use layout=hybrid)"
            )
        if r.pairs_per_epoch % (n * r.chunk_size):
            raise ValueError(
                f"rollout.pairs_per_epoch ({r.pairs_per_epoch}) must be a multiple of learner.num_workers x "
                f"rollout.chunk_size ({n * r.chunk_size}): every rank's shard is whole chunks"
            )
        return self

    @model_validator(mode="after")
    def _runtime_env_needs_ray(self) -> "Config":
        if self.reward.runtime_env is not None and not self.ray.enabled:
            raise ValueError(
                "reward.runtime_env: a runtime_env is applied by Ray to the reward-server actors; with "
                "ray.enabled=false everything runs in this process and it cannot be honoured (set ray.enabled=true, "
                "or remove reward.runtime_env)"
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
            f"{key}: its value is nested deeper than {MAX_CONFIG_DEPTH} levels; a config value is a small mapping or "
            "list"
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
