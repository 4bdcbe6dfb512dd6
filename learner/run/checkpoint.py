"""Checkpoints of a run: written atomically, checked by checksum, pruned to the newest K.

Pure file handling (no ray). A checkpoint is a directory ``<run_dir>/checkpoints/epoch-NNNNNN``
(NNNNNN = epochs completed, i.e. the first epoch a resume runs) holding

    pytorch_lora_weights.safetensors  LoRA in the diffusers format (StableDiffusionPipeline.load_lora_weights)
    lora_peft.safetensors             the same tensors under peft names: what the learner reloads, exactly
    trainer_state.pt                  optimizer (+ grad scaler, learner RNG) state; torch.load(weights_only=True)
    tracker.json                      per-(prompt, step) stat-tracker buffers (null without tracking)
    rng.json                          the driver's global RNG states (python, numpy, torch)
    state.json                        epoch and weight-version counters
    config.yaml                       the resolved config of the run
    manifest.json                     sha256 and size of every file above; written last

It is written into a temporary directory that is renamed into place once complete, so a crash at
any moment leaves either the whole checkpoint or none. A checkpoint whose files do not match its
manifest (a torn copy, a bad disk, an interrupted sync to object storage) is skipped, with a
warning, in favour of the previous one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from plumbing.errors import RunFailure

log = logging.getLogger(__name__)

FORMAT = 1
MANIFEST = "manifest.json"
REQUIRED = {
    "lora_peft.safetensors",
    "trainer_state.pt",
    "tracker.json",
    "rng.json",
    "state.json",
    "config.yaml",
}  # what a resume reads
PREFIX = "epoch-"

# Config keys (dotted prefixes) that may differ between a checkpoint's run and the run resuming it:
# resources, outputs and the number of epochs. Every other key changes what is sampled or learned,
# so a resume with a different value is refused (start a new run directory instead).
RESUMABLE_KEYS = (
    "name",
    "epochs",
    "output",
    "ray",
    "checkpoint",
    "eval",
    "learner.num_cpus",  # not learner.num_workers: the number of ranks shards the stat tracking and the update
    "learner.num_gpus",
    "learner.torch_threads",
    "learner.max_restarts",  # how a lost rank is recovered, not what is learned
    "learner.restart_timeout_s",
    "monitor",  # it watches, it does not train
    "train.peak_tflops",  # a metric's denominator
    "model.tiny_cache_dir",
    "model.local_files_only",
    "rollout.num_actors",
    "rollout.num_cpus",
    "rollout.num_gpus",
    "rollout.torch_threads",
    "rollout.max_restarts",
    "rollout.restart_timeout_s",
    "reward.num_servers",
    "reward.num_cpus",
    "reward.num_gpus",
    "reward.batch_size",
    "reward.timeout_s",
    "reward.start_timeout_s",
    "reward.max_retries",
    "reward.max_restarts",
    "reward.max_dropped_fraction",
    "reward.runtime_env",  # where the reward runs (a moved virtualenv, a longer setup timeout), not which reward
)


class CheckpointError(RunFailure):
    """A checkpoint directory that is incomplete or does not match its manifest, or a checkpoint
    that cannot or must not be written (a full disk, non-finite weights)."""


def nonfinite(tree: Any, prefix: str = "") -> list[str]:
    """Names of the floating-point tensors in a nest of dicts/lists that hold NaN or infinity."""
    if isinstance(tree, torch.Tensor):
        return [prefix] if tree.is_floating_point() and not torch.isfinite(tree).all() else []
    if isinstance(tree, dict):
        return [n for k, v in tree.items() for n in nonfinite(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(tree, (list, tuple)):
        return [n for i, v in enumerate(tree) for n in nonfinite(v, f"{prefix}[{i}]")]
    return []


@dataclass
class TrainingState:
    """Everything an exact resume needs (all other randomness is seeded by (seed, epoch, pair))."""

    epoch: int  # epochs completed = the first epoch a resume runs
    weights_version: int  # the learner's policy version after `epoch` updates
    lora: dict[str, torch.Tensor]  # peft LoRA state dict, CPU tensors
    trainer: dict[str, Any]  # LearnerWorker.state_dict()["trainer"]: optimizer, grad scaler, RNG
    tracker: dict[str, Any] | None  # StepStatTracker.state_dict(), None without per-step tracking
    rng: dict[str, Any]  # driver_rng_state()
    config_yaml: str  # the resolved config
    path: Path | None = None  # where it was read from
    prompts_sha256: str | None = (
        None  # fingerprint of the training prompt list (None: a checkpoint from before it was kept)
    )


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def epoch_of(path: Path) -> int:
    return int(path.name[len(PREFIX) :])


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Checkpoint directories (complete or not), oldest first; temporary ones are not listed."""
    d = Path(directory)
    found = [p for p in d.glob(f"{PREFIX}*") if p.is_dir() and p.name[len(PREFIX) :].isdigit()] if d.is_dir() else []
    return sorted(found, key=epoch_of)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def problem(path: Path) -> str | None:
    """Why `path` is not a complete, intact checkpoint, or None if it is."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"no readable {MANIFEST}"
    if not isinstance(files, dict):
        return f"no readable {MANIFEST}"
    if manifest.get("format") != FORMAT or manifest.get("epoch") != epoch_of(path):
        return f"{MANIFEST} is for format {manifest.get('format')}, epoch {manifest.get('epoch')}"
    for name, want in files.items():
        f = path / name
        if not f.is_file():
            return f"{name} is missing"
        if not isinstance(want, dict) or f.stat().st_size != want.get("bytes") or _sha256(f) != want.get("sha256"):
            return f"{name} does not match its sha256 in {MANIFEST}"
    missing = sorted(REQUIRED - set(files))
    return f"{MANIFEST} does not list {', '.join(missing)}" if missing else None


def latest_valid(directory: str | Path) -> Path | None:
    """The newest checkpoint that matches its manifest; newer broken ones are skipped with a warning."""
    for path in reversed(list_checkpoints(directory)):
        why = problem(path)
        if why is None:
            return path
        log.warning("checkpoint %s is corrupt or partial (%s); skipping it", path, why)
    return None


def read_latest(directory: str | Path, attempts: int = 3) -> TrainingState | None:
    """The newest valid checkpoint, read; None when there is none. For a reader beside the run that
    writes them (learner.evaluate): a checkpoint pruned between finding and reading it is looked up
    again, up to `attempts` times; one that is still there but unreadable is a CheckpointError."""
    for _ in range(attempts):
        path = latest_valid(directory)
        if path is None:
            return None
        try:
            return read_checkpoint(path)
        except (CheckpointError, OSError):
            if path.exists():
                raise
    raise CheckpointError(f"the checkpoints in {directory} were pruned {attempts} times while being read; try again")


def _write(path: Path, data: bytes) -> None:
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_checkpoint(directory: str | Path, state: TrainingState, keep: int, adapter: dict) -> Path:
    """Write `state` as ``directory/epoch-NNNNNN`` (tmp dir, then rename), then keep only the newest `keep`.
    `adapter` is the run's LoRA adapter (actors.policy.lora_adapter_metadata: rank, alpha, target modules),
    written into the diffusers-format LoRA file's metadata.
    CheckpointError (the previous checkpoint stands) for non-finite state or a failed write."""
    bad = nonfinite({"lora": state.lora, "trainer": state.trainer})
    if bad:
        raise CheckpointError(f"refusing to checkpoint epoch {state.epoch}: non-finite values in {', '.join(bad[:3])}")
    try:
        return _write_checkpoint(Path(directory), state, keep, adapter)
    except OSError as err:  # a full disk, a read-only mount: the previous checkpoint stands
        raise CheckpointError(
            f"cannot write the checkpoint of epoch {state.epoch} in {directory}: {err.strerror or err}"
        ) from None
    except Exception as err:  # safetensors reports I/O failures as its own error type
        if type(err).__name__ != "SafetensorError":
            raise
        raise CheckpointError(f"cannot write the checkpoint of epoch {state.epoch} in {directory}: {err}") from None


def _write_failure(directory: Path) -> str:
    """Why torch.save could not write (it says only "file write failed")."""
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        free = None
    if free is not None and free < 64 * 2**20:
        return f"No space left on device ({free / 2**20:.1f} MiB free)"
    return "torch.save failed writing trainer_state.pt (file write failed: a full disk, a quota or a file-size limit)"


def _write_checkpoint(d: Path, state: TrainingState, keep: int, adapter: dict) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    final = d / f"{PREFIX}{state.epoch:06d}"
    tmp = d / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        _write_files(tmp, state, adapter)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # e.g. a full disk: leave no partial directory behind
        raise
    if final.exists():  # a broken checkpoint of the same epoch, from before a resume
        stale = d / f".old-{final.name}-{os.getpid()}"
        os.replace(final, stale)
        shutil.rmtree(stale, ignore_errors=True)
    os.replace(tmp, final)
    _fsync_dir(d)
    prune(d, keep, known_valid=final)
    return final


def _write_files(tmp: Path, state: TrainingState, adapter: dict) -> None:
    """Every file of the checkpoint and, last, its manifest, each fsynced."""
    from safetensors.torch import save as save_safetensors

    from actors.policy import save_lora_state_diffusers

    save_lora_state_diffusers(state.lora, tmp, adapter)
    _write(tmp / "lora_peft.safetensors", save_safetensors({k: v.contiguous() for k, v in state.lora.items()}))
    trainer = tmp / "trainer_state.pt"
    try:
        torch.save(state.trainer, trainer)
    except RuntimeError:  # a failed write, in torch's words ("iostream error", "enforce fail at inline_container.cc")
        raise CheckpointError(
            f"cannot write the checkpoint of epoch {state.epoch} in {tmp.parent}: {_write_failure(tmp.parent)}"
        ) from None
    _write(tmp / "tracker.json", json.dumps(state.tracker).encode())
    _write(tmp / "rng.json", json.dumps(state.rng).encode())
    counters = {"epoch": state.epoch, "weights_version": state.weights_version, "prompts_sha256": state.prompts_sha256}
    _write(tmp / "state.json", json.dumps(counters).encode())
    _write(tmp / "config.yaml", state.config_yaml.encode())
    files = sorted(p for p in tmp.iterdir() if p.is_file())
    for f in files:  # torch.save and diffusers wrote without fsync
        with f.open("rb") as fh:
            os.fsync(fh.fileno())
    manifest = {
        "format": FORMAT,
        "epoch": state.epoch,
        "files": {f.name: {"sha256": _sha256(f), "bytes": f.stat().st_size} for f in files},
    }
    _write(tmp / MANIFEST, json.dumps(manifest, indent=1).encode())
    _fsync_dir(tmp)


def prune(directory: str | Path, keep: int, known_valid: Path | None = None) -> None:
    """Keep the newest `keep` valid checkpoints; delete every other one (older ones, and broken ones,
    which no resume can use: e.g. the damaged newer checkpoints of an attempt that started again),
    and what writers killed mid-write left behind (one run directory has one writer: the driver).
    A valid checkpoint is never deleted to keep a broken one. Checked newest first, so about `keep`
    manifests are hashed (`known_valid`, the one just written, is not)."""
    d = Path(directory)
    kept = 0
    for path in reversed(list_checkpoints(d)):
        if kept < keep and (path == known_valid or problem(path) is None):
            kept += 1
            continue
        shutil.rmtree(path, ignore_errors=True)
    for leftover in [*d.glob(".tmp-*"), *d.glob(".old-*")]:
        shutil.rmtree(leftover, ignore_errors=True)


def read_checkpoint(path: str | Path) -> TrainingState:
    """Load a checkpoint (after re-checking its manifest). Tensors only through safetensors and
    torch.load(weights_only=True)."""
    from safetensors.torch import load_file

    p = Path(path)
    why = problem(p)
    if why is not None:
        raise CheckpointError(f"checkpoint {p} is corrupt or partial ({why})")
    counters = json.loads((p / "state.json").read_text())
    return TrainingState(
        epoch=int(counters["epoch"]),
        weights_version=int(counters["weights_version"]),
        lora=load_file(p / "lora_peft.safetensors"),
        trainer=torch.load(p / "trainer_state.pt", map_location="cpu", weights_only=True),
        tracker=json.loads((p / "tracker.json").read_text()),
        rng=json.loads((p / "rng.json").read_text()),
        config_yaml=(p / "config.yaml").read_text(),
        path=p,
        prompts_sha256=counters.get("prompts_sha256"),
    )


def prompts_fingerprint(prompts: list[str]) -> str:
    """sha256 of the resolved training prompt list (order included): what a resume must train on."""
    return hashlib.sha256(json.dumps(list(prompts)).encode()).hexdigest()


def saved_config(path: str | Path) -> dict[str, Any]:
    return yaml.safe_load((Path(path) / "config.yaml").read_text())


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out |= _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    return out


def _resumable(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in RESUMABLE_KEYS)


def incompatible_keys(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two resolved configs (as plain data) and that a
    resume may not change."""
    a, b = _flatten(saved), _flatten(current)
    return sorted(k for k in set(a) | set(b) if not _resumable(k) and a.get(k, "<unset>") != b.get(k, "<unset>"))


def driver_rng_state() -> dict[str, Any]:
    """The driver's global RNG states as JSON-ready data. (Nothing in the driver draws from them:
    prompts and pairs are seeded by (seed, epoch); they are saved so that a resume is exact even if
    a future change does.)"""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "python": [version, list(internal), gauss_next],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
        "torch": torch.get_rng_state().tolist(),
    }


def restore_driver_rng(state: dict[str, Any]) -> None:
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
