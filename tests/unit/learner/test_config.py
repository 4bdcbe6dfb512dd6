"""The config tree, in-process (the CLI contract for bad configuration: tests/e2e/learner/test_config_e2e.py)."""

from __future__ import annotations

import pytest
import yaml

from learner.config import Config, ConfigError, build_config, load_config, parse_override, to_yaml


def test_presets_validate_and_round_trip():
    for name in ("tiny", "sd_turbo_aesthetic"):
        cfg = load_config(name)
        assert Config.model_validate(yaml.safe_load(to_yaml(cfg))) == cfg


def test_a_preset_named_like_a_folder_of_the_working_directory_is_the_preset(tmp_path, monkeypatch):
    """`--config shapes` run from the repository root, where shapes/ is the shapes task's package."""
    (tmp_path / "shapes").mkdir()
    monkeypatch.chdir(tmp_path)
    assert load_config("shapes").name == "shapes"


def test_sd_turbo_preset_has_the_paper_settings():
    cfg = load_config("sd_turbo_aesthetic")
    assert cfg.model.pretrained == "stabilityai/sd-turbo"
    assert (cfg.sampling.num_steps, cfg.sampling.eta, cfg.sampling.guidance_scale) == (50, 1.0, 1.0)
    assert (cfg.train.learning_rate, cfg.train.batch_size, cfg.train.gradient_accumulation_steps) == (1e-4, 2, 8)
    assert (cfg.train.clip_range, cfg.train.adv_clip_max, cfg.train.lam, cfg.train.gamma) == (1e-4, 5.0, 0.99, 0.99)
    assert (cfg.train.stat_buffer_size, cfg.train.stat_min_count, cfg.model.lora_rank) == (32, 16, 4)
    assert cfg.reward.name == "aesthetic" and cfg.epochs == 100


def test_overrides_are_typed_by_yaml():
    assert parse_override("train.learning_rate=5e-5") == ("train.learning_rate", 5e-5)
    assert parse_override("ray.enabled=false") == ("ray.enabled", False)
    cfg = load_config("tiny", ["train.learning_rate=5e-5", "rollout.num_actors=3"])
    assert cfg.train.learning_rate == 5e-5 and cfg.rollout.num_actors == 3


def test_config_is_frozen():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="frozen"):
        load_config("tiny").train.learning_rate = 1.0


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["train.lr=1"], "train.lr"),
        (["train.learning_rate=abc"], "train.learning_rate"),
        (["train.learning_rate=-1"], "train.learning_rate"),
        (["rollout.chunk_size=3"], "rollout"),
        (["nosuchsection.x=1"], "nosuchsection"),
        (["novalue"], "novalue"),
        (["train.stat_min_count=64"], "train"),
        (["output.wandb.mode=cloud"], "output.wandb.mode"),
        (["output.wandb.project="], "output.wandb.project"),
        (["output.push_to_hub=not a/repo id"], "output.push_to_hub"),
        (["output.push_to_hub=a/b/c"], "output.push_to_hub"),
    ],
)
def test_invalid_overrides_name_the_key(overrides, key):
    with pytest.raises(ConfigError) as err:
        load_config("tiny", overrides)
    assert str(err.value).startswith(key) or f"'{key}'" in str(err.value)
    assert "\n" not in str(err.value)


def test_every_field_is_described():
    """Every field of every section, nested models (reward.runtime_env's specs) included."""
    from typing import get_args

    from pydantic import BaseModel

    seen = []

    def walk(model):
        seen.append(model.__name__)
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            for ann in (field.annotation, *get_args(field.annotation)):
                if isinstance(ann, type) and issubclass(ann, BaseModel):
                    walk(ann)

    walk(Config)
    assert {"RewardConfig", "RuntimeEnvConfig", "MonitorConfig", "TrainConfig"} <= set(seen)


@pytest.mark.parametrize(
    "preset, lr, per_step, steps_per_epoch, epochs",
    [
        ("sd_turbo_aesthetic", 1e-4, 64, 100, 100),  # 4 GPUs x batch 2 x accumulation 8
        ("sd_turbo_disaggregated", 1e-4, 64, 100, 100),  # 1 learner x batch 2 x accumulation 32
        ("sd_turbo_hpsv2", 5e-5, 128, 50, 200),  # 4 GPUs x batch 1 x accumulation 32
        ("sd_turbo_imagereward", 5e-5, 128, 50, 200),  # 4 GPUs x batch 1 x accumulation 32
        ("sd_turbo_pickscore", 6e-5, 64, 100, 200),  # 4 GPUs x batch 1 x accumulation 16
    ],
)
def test_paper_presets_are_the_papers_runs(preset, lr, per_step, steps_per_epoch, epochs):
    """128 pairs x T = 50 per epoch; (pair, timestep) samples per optimizer step and steps per epoch
    as the reference's config_sdpo.py on 4 GPUs; the reference's prompt list."""
    cfg = load_config(preset)
    assert (
        cfg.rollout.pairs_per_epoch == 128 and cfg.sampling.num_steps == 50 and cfg.prompts.source == "simple_animals"
    )
    assert cfg.train.learning_rate == lr and cfg.epochs == epochs
    assert cfg.samples_per_optimizer_step == per_step and cfg.optimizer_steps_per_epoch == steps_per_epoch
    assert (
        cfg.train.clip_range == 1e-4
        and cfg.train.adv_clip_max == 5
        and cfg.train.gamma == 0.99
        and cfg.train.lam == 0.99
    )


def test_hpsv3_preset_is_the_hpsv2_run_with_hpsv3():
    """sd_turbo_hpsv3 is not a paper run: the paper's HPSv2 run with HPSv3 as the reward, all else equal."""
    from rewards.registry import check_options

    cfg = load_config("sd_turbo_hpsv3")
    assert Config.model_validate(yaml.safe_load(to_yaml(cfg))) == cfg
    v3, v2 = cfg.model_dump(), load_config("sd_turbo_hpsv2").model_dump()
    assert {k for k in v3 if v3[k] != v2[k]} == {"name", "reward"}
    assert {k for k in v3["reward"] if v3["reward"][k] != v2["reward"][k]} == {"name", "options"}
    assert v3["reward"]["name"] == "hpsv3" and list(v3["reward"]["options"]) == ["hpsv3"]
    check_options("hpsv3", v3["reward"]["options"]["hpsv3"])  # checkpoint, base, dtype: options the reward takes


def test_skip_last_step_counts_t_minus_1_steps_per_pair():
    # the aesthetic preset: 128 pairs x 50 steps / 64 per optimizer step = 100; without the last step
    # 128 x 49 = 6272 items -> ceil(6272 / 64) = 98
    cfg = load_config("sd_turbo_aesthetic")
    assert not cfg.train.skip_last_step and cfg.optimizer_steps_per_epoch == 100
    assert build_config(cfg.model_dump(mode="json"), ["train.skip_last_step=true"]).optimizer_steps_per_epoch == 98


def test_values_and_files_nested_thousands_deep_are_one_line(tmp_path):
    """The YAML parser recurses per nesting level: a value or file nested 5000 deep is a ConfigError naming
    the key or file, not a RecursionError (learner.main and learner.evaluate share this parsing)."""
    deep = "[" * 5000 + "]" * 5000
    with pytest.raises(ConfigError, match="train.learning_rate: its value is nested deeper than 16 levels"):
        parse_override(f"train.learning_rate={deep}")
    path = tmp_path / "deep.yaml"
    path.write_text(f"a: {deep}\n")
    with pytest.raises(ConfigError, match="deep.yaml': nesting deeper than 16"):
        load_config(str(path))


@pytest.mark.parametrize(
    "override, key",
    [
        ("rollout.max_restarts=10000000000000000000", "rollout.max_restarts"),
        ("reward.timeout_s=1e300", "reward.timeout_s"),
        ("reward.max_restarts=10000000000000000000", "reward.max_restarts"),
        ("train.stat_buffer_size=10000000000000000000", "train.stat_buffer_size"),
        ("train.num_inner_epochs=1000000000000", "train.num_inner_epochs"),
        ("checkpoint.grace_s=1e300", "checkpoint.grace_s"),
    ],
)
def test_integers_and_times_beyond_what_their_use_takes_are_refused_by_name(override, key):
    """Numbers Ray or Python would choke on later (OverflowError), or that would run on without bound,
    are refused at load time, naming the key."""
    with pytest.raises(ConfigError, match=f"^{key}: Input should be less than or equal to"):
        load_config("tiny", [override])
