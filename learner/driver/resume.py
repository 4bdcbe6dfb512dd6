"""Checkpointing a run and resuming it: the driver's side (the files are learner.run.checkpoint's).

Running the same command again with the same --run-dir resumes from the newest complete checkpoint,
without sampling earlier epochs again; a larger --epochs continues a finished run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from actors.policy import lora_adapter_metadata
from learner.config import Config, ConfigError, to_yaml
from learner.run.checkpoint import (
    TrainingState,
    checkpoint_dir,
    driver_rng_state,
    incompatible_keys,
    latest_valid,
    prompts_fingerprint,
    read_checkpoint,
    restore_driver_rng,
    saved_config,
    write_checkpoint,
)
from plumbing.remote import get


def find_resume(run_dir: Path, cfg: Config, prompt_list: list[str] | None = None) -> TrainingState | None:
    """The newest complete checkpoint in `run_dir`, or None for a new run. ConfigError (exit 2)
    naming the keys if `cfg` differs from the checkpoint's config where a resume cannot follow, or
    if the training prompts (`prompt_list`, e.g. an edited prompts.source file) are not the ones
    the checkpoint trained on."""
    path = latest_valid(checkpoint_dir(run_dir))
    if path is None:
        return None
    saved = saved_config(path)
    try:  # fill in keys added to the config since the checkpoint was written
        saved = Config.model_validate(saved).model_dump(mode="json")
    except ValueError:
        pass
    keys = incompatible_keys(saved, cfg.model_dump(mode="json"))
    if keys:
        raise ConfigError(
            f"run dir {run_dir} holds a checkpoint ({path.name}) of a run with a different config: "
            f"{', '.join(keys)} differ (use the checkpoint's values to resume, or start a new --run-dir)"
        )
    state = read_checkpoint(path)
    if prompt_list is not None and state.prompts_sha256 not in (None, prompts_fingerprint(prompt_list)):
        raise ConfigError(
            f"run dir {run_dir} holds a checkpoint ({path.name}) trained on other prompts than "
            f"prompts.source={cfg.prompts.source} gives now ({len(prompt_list)} prompts; was the file edited?): "
            "restore the prompts to resume, or start a new --run-dir"
        )
    return state


def restore(state: TrainingState | None, learner, tracker) -> tuple[int, int]:
    """Load a checkpoint into the learner (every rank), the stat tracker and the driver's RNGs;
    (the first epoch to run, the policy version the learner holds)."""
    if state is None:
        return 0, 0
    get(
        learner.load_state_dict.remote({"version": state.weights_version, "lora": state.lora, "trainer": state.trainer})
    )
    if tracker is not None and state.tracker is not None:
        tracker.load_state_dict(state.tracker)
    restore_driver_rng(state.rng)
    print(f"resuming after epoch {state.epoch} (policy version {state.weights_version}) from {state.path}", flush=True)
    return state.epoch, state.weights_version


def is_due(epochs_done: int, cfg: Config) -> bool:
    return epochs_done % cfg.checkpoint.every == 0 or epochs_done == cfg.epochs


def save_checkpoint(
    run_dir: Path, epochs_done: int, learner, tracker, cfg: Config, prompt_list: list[str] | None = None
) -> Path:
    """Everything an exact resume after `epochs_done` epochs needs, written atomically."""
    learner_state = get(learner.state_dict.remote())
    state = TrainingState(
        epoch=epochs_done,
        weights_version=learner_state["version"],
        lora=learner_state["lora"],
        trainer=learner_state["trainer"],
        tracker=tracker.state_dict() if tracker is not None else None,
        rng=driver_rng_state(),
        config_yaml=to_yaml(cfg),
        prompts_sha256=None if prompt_list is None else prompts_fingerprint(prompt_list),
    )
    model = cfg.model  # the run's LoRA rank, alpha and targets, for the diffusers-format file's metadata
    adapter = lora_adapter_metadata(model.lora_rank, model.lora_alpha, model.lora_target_modules)
    return write_checkpoint(checkpoint_dir(run_dir), state, cfg.checkpoint.keep, adapter)


def finish_completed(run_dir: Path, state: TrainingState) -> Path:
    """A run whose newest checkpoint already holds all its epochs: its LoRA becomes run_dir/lora."""
    lora = run_dir / "lora"
    lora.mkdir(parents=True, exist_ok=True)
    shutil.copy2(state.path / "pytorch_lora_weights.safetensors", lora / "pytorch_lora_weights.safetensors")
    print(
        f"done: the run in {run_dir} already has {state.epoch} epochs (pass a larger --epochs to continue); LoRA in "
        f"{lora}",
        flush=True,
    )
    return run_dir
