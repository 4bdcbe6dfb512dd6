"""Checkpoint files (atomic write, manifest checksums, pruning, corrupt ones skipped), the resume
config check, metrics truncation, and the learner state an exact resume needs."""

from __future__ import annotations

import json
import logging
import random

import numpy as np
import pytest
import torch

from actors.config import ModelConfig
from actors.policy import lora_adapter_metadata
from learner.config import load_config
from learner.run import checkpoint as ck
from learner.run.outputs import keep_metrics_before

ADAPTER = lora_adapter_metadata(4, 4.0, ModelConfig().lora_target_modules)  # the run's LoRA, as ModelConfig's defaults


def _state(epoch: int) -> ck.TrainingState:
    lora = {  # peft names, as lora_state() returns them
        "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight": torch.full((2, 8), float(epoch)),
        "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight": torch.ones(8, 2),
    }
    state = {0: {"step": torch.tensor(3.0), "exp_avg": torch.ones(2)}}
    trainer = {"optimizer": {"state": state, "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "params": [0]}]}}
    tracker = {"buffer_size": 4, "min_count": 2, "buffers": {"cat": {"0": [1.0]}}}
    return ck.TrainingState(epoch, epoch, lora, trainer, tracker, ck.driver_rng_state(), "seed: 0\n")


def test_write_read_round_trip_with_manifest(tmp_path):
    path = ck.write_checkpoint(tmp_path, _state(2), keep=3, adapter=ADAPTER)
    assert path.name == "epoch-000002" and ck.problem(path) is None
    manifest = json.loads((path / ck.MANIFEST).read_text())
    assert set(manifest["files"]) == {
        "pytorch_lora_weights.safetensors",
        "lora_peft.safetensors",
        "trainer_state.pt",
        "tracker.json",
        "rng.json",
        "state.json",
        "config.yaml",
    }
    back = ck.read_checkpoint(path)  # trainer_state.pt through torch.load(weights_only=True)
    assert (back.epoch, back.weights_version, back.config_yaml) == (2, 2, "seed: 0\n")
    assert all(torch.equal(back.lora[k], v) for k, v in _state(2).lora.items())
    assert back.trainer["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert back.tracker["buffers"]["cat"]["0"] == [1.0]
    assert not list(tmp_path.glob(".tmp-*"))


def test_diffusers_lora_file_loads_into_a_pipeline(tmp_path, tiny_dir, tiny_cache):
    from diffusers import StableDiffusionPipeline

    from actors.policy import load_pipeline, lora_state

    lora = lora_state(load_pipeline(ModelConfig(tiny_cache_dir=tiny_cache)).unet)
    state = _state(1)
    state.lora = lora
    path = ck.write_checkpoint(tmp_path, state, keep=1, adapter=ADAPTER)
    pipe = StableDiffusionPipeline.from_pretrained(tiny_dir, safety_checker=None, requires_safety_checker=False)
    pipe.load_lora_weights(str(path))  # plain diffusers, no project code
    assert torch.equal(ck.read_checkpoint(path).lora[next(iter(lora))], next(iter(lora.values())))


def test_keep_the_newest_k_and_drop_leftover_tmp_dirs(tmp_path):
    (tmp_path / ".tmp-epoch-000009-1").mkdir()  # a writer killed mid-write
    for e in range(1, 5):
        ck.write_checkpoint(tmp_path, _state(e), keep=2, adapter=ADAPTER)
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == ["epoch-000003", "epoch-000004"]
    assert not list(tmp_path.glob(".tmp-*"))


def test_pruning_never_deletes_a_valid_checkpoint_to_keep_a_broken_one(tmp_path):
    """An attempt that found only broken checkpoints (epochs 5 and 6) starts again from scratch; its
    new epoch-000001 is kept (with keep=1), and the broken ones go."""
    for e in (5, 6):
        broken = ck.write_checkpoint(tmp_path, _state(e), keep=3, adapter=ADAPTER)
        (broken / ck.MANIFEST).unlink()
    ck.write_checkpoint(tmp_path, _state(1), keep=1, adapter=ADAPTER)
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == ["epoch-000001"]
    assert ck.latest_valid(tmp_path).name == "epoch-000001"
    ck.write_checkpoint(tmp_path, _state(2), keep=2, adapter=ADAPTER)  # the newest two valid ones
    broken = ck.write_checkpoint(tmp_path, _state(3), keep=3, adapter=ADAPTER)
    (broken / "trainer_state.pt").write_bytes(b"torn")
    ck.write_checkpoint(tmp_path, _state(4), keep=2, adapter=ADAPTER)  # epoch 3 is broken: 2 and 4 are the two kept
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == ["epoch-000002", "epoch-000004"]


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "no_manifest", "missing_file"])
def test_corrupt_or_partial_checkpoint_is_skipped_with_a_warning(tmp_path, caplog, damage):
    ck.write_checkpoint(tmp_path, _state(1), keep=3, adapter=ADAPTER)
    newest = ck.write_checkpoint(tmp_path, _state(2), keep=3, adapter=ADAPTER)
    target = newest / "trainer_state.pt"
    if damage == "flip_byte":
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0xFF
        target.write_bytes(bytes(data))
    elif damage == "truncate":
        target.write_bytes(target.read_bytes()[:10])
    elif damage == "no_manifest":
        (newest / ck.MANIFEST).unlink()
    else:
        target.unlink()
    with caplog.at_level(logging.WARNING):
        assert ck.latest_valid(tmp_path).name == "epoch-000001"
    assert "epoch-000002" in caplog.text and "skipping" in caplog.text
    with pytest.raises(ck.CheckpointError):
        ck.read_checkpoint(newest)
    ck.write_checkpoint(tmp_path, _state(2), keep=3, adapter=ADAPTER)  # a resumed run writes that epoch again, intact
    assert ck.latest_valid(tmp_path).name == "epoch-000002"


def test_resume_config_check_names_only_keys_that_break_the_run():
    base = load_config("tiny").model_dump(mode="json")
    fine = load_config(
        "tiny", ["epochs=99", "output.run_dir=/x", "ray.num_cpus=2", "rollout.num_actors=3", "checkpoint.keep=1"]
    )
    assert ck.incompatible_keys(base, fine.model_dump(mode="json")) == []
    bad = load_config(
        "tiny", ["seed=1", "train.learning_rate=0.5", "rollout.pairs_per_epoch=4", "rollout.chunk_size=2"]
    )
    assert ck.incompatible_keys(base, bad.model_dump(mode="json")) == [
        "rollout.chunk_size",
        "rollout.pairs_per_epoch",
        "seed",
        "train.learning_rate",
    ]


def test_resume_on_another_number_of_learner_ranks_is_refused():
    """The ranks shard the stat tracking and the update: another count changes the resumed epochs."""
    base = load_config("tiny").model_dump(mode="json")
    other = load_config("tiny", ["learner.num_workers=2", "learner.num_cpus=0.25", "monitor.bands={diversity: 0.5}"])
    assert ck.incompatible_keys(base, other.model_dump(mode="json")) == ["learner.num_workers"]


def test_resume_with_edited_prompts_is_refused(tmp_path):
    from learner.config import ConfigError, to_yaml
    from learner.driver.resume import find_resume

    cfg = load_config("tiny")
    state = _state(1)
    state = ck.TrainingState(
        **{**state.__dict__, "config_yaml": to_yaml(cfg), "prompts_sha256": ck.prompts_fingerprint(["a cat", "a dog"])}
    )
    ck.write_checkpoint(ck.checkpoint_dir(tmp_path), state, keep=1, adapter=ADAPTER)
    assert find_resume(tmp_path, cfg, ["a cat", "a dog"]).prompts_sha256 == state.prompts_sha256
    with pytest.raises(ConfigError, match="trained on other prompts"):
        find_resume(tmp_path, cfg, ["a cat", "a bird"])
    with pytest.raises(ConfigError, match="trained on other prompts"):
        find_resume(tmp_path, cfg, ["a dog", "a cat"])  # the order decides which prompts each epoch draws


def test_driver_rng_round_trip():
    state = ck.driver_rng_state()
    expect = (random.random(), np.random.rand(), torch.rand(1).item())
    ck.restore_driver_rng(json.loads(json.dumps(state)))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expect


def test_metrics_after_the_resumed_epoch_and_cut_lines_are_dropped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 0, "loss": 1}\n{"epoch": 1, "loss": 2}\n{"epoch": 2, "loss": 3}\n{"epoch": 3, "lo')
    keep_metrics_before(path, 2)
    assert [json.loads(line)["epoch"] for line in path.read_text().splitlines()] == [0, 1]
    keep_metrics_before(path, 0)
    assert path.read_text() == ""


# ---- the learner's part of a checkpoint, on the real tiny pipeline ----


@pytest.fixture(scope="module")
def tiny_workers(tiny_cache):
    from actors.config import ModelConfig, SamplingConfig
    from actors.rollout_worker import RolloutWorker
    from learner.worker.config import TrainConfig
    from learner.worker.learner_worker import LearnerWorker

    model, sampling = ModelConfig(tiny_cache_dir=tiny_cache), SamplingConfig(num_steps=3)
    train = TrainConfig(learning_rate=1e-2, clip_range=1e-2, gradient_accumulation_steps=2)
    make = lambda: LearnerWorker(model=model, sampling=sampling, train=train, seed=0)  # noqa: E731
    return make, RolloutWorker(model=model, sampling=sampling, seed=0)


def _update(learner, rollout, epoch) -> dict:
    """Sample 2 pairs with the learner's policy and update on them; the metrics without timings."""
    from tests.conftest import update_request

    rollout.set_weights(learner.get_weights())
    traj = rollout.rollout(epoch, [0, 1], ["cat", "dog"], learner.version).trajectories
    adv = torch.tensor([[1.0, -1.0], [-0.5, 0.5]])[:, :, None].expand(2, 2, 3).contiguous()  # (B, P, T)
    metrics = learner.update(update_request(traj, adv), traj)
    return {k: v for k, v in metrics.items() if k != "busy_s"}


def test_learner_state_dict_resumes_exactly(tiny_workers, tmp_path):
    """Train 2 updates straight, or 1 update -> checkpoint -> fresh learner -> 1 update: the same."""
    make_learner, rollout = tiny_workers
    straight = make_learner()
    _update(straight, rollout, 0)
    saved = straight.state_dict()
    torch.save(saved["trainer"], tmp_path / "trainer.pt")
    second = _update(straight, rollout, 1)

    resumed = make_learner()
    trainer = torch.load(tmp_path / "trainer.pt", weights_only=True)  # plain tensors and numbers only
    assert resumed.load_state_dict({"version": saved["version"], "lora": saved["lora"], "trainer": trainer}) == 1
    again = _update(resumed, rollout, 1)
    assert again == second
    a, b = straight.get_weights().lora, resumed.get_weights().lora
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_rollouts_and_updates_leave_the_global_rngs_alone(tiny_workers):
    """Sampling and updates draw only from generators seeded by (seed, epoch[, pair]), so the global
    RNG states of the worker processes need no checkpoint, and a restarted rollout actor samples
    exactly what the one it replaced would have."""
    make_learner, rollout = tiny_workers
    learner = make_learner()
    before = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    _update(learner, rollout, 0)
    after = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    assert torch.equal(before[0], after[0]) and np.array_equal(before[1], after[1]) and before[2] == after[2]


class _Learner:
    """A learner rank's checkpoint state (LearnerWorker.state_dict), in-process."""

    def state_dict(self) -> dict:
        state = _state(1)
        return {"version": state.weights_version, "lora": state.lora, "trainer": state.trainer}


def test_the_checkpoints_lora_file_carries_the_runs_rank_and_alpha(tmp_path):
    """Without the adapter metadata, diffusers' load_lora_weights takes alpha = rank (scale 1). The driver
    writes the run's model.lora_rank, lora_alpha and lora_target_modules into the file's metadata."""
    from safetensors import safe_open

    from learner.driver.resume import save_checkpoint
    from plumbing.remote import LocalActor

    cfg = load_config("tiny", ["model.lora_rank=2", "model.lora_alpha=16", "model.lora_target_modules=[to_q]"])
    path = save_checkpoint(tmp_path, 1, LocalActor(_Learner()), None, cfg)
    with safe_open(str(path / "pytorch_lora_weights.safetensors"), "pt") as f:
        metadata = json.loads(f.metadata()["lora_adapter_metadata"])
    assert metadata == {"unet.r": 2, "unet.lora_alpha": 16.0, "unet.target_modules": ["to_q"]}
