"""Weights & Biases logging, in W&B's offline mode (no network), read back from the files it wrote:
a run of 2 epochs, then the same command with --epochs 3 continues the same W&B run."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli
from tests.e2e.learner.wandb_file import read_records

pytest.importorskip("wandb")

SMALL = [
    "rollout.pairs_per_epoch=4",
    "rollout.chunk_size=2",
    "sampling.num_steps=4",
    "eval.every=2",
    "output.image_every=1",
]
WANDB = [
    "output.wandb.enabled=true",
    "output.wandb.mode=offline",
    "output.wandb.project=sdpo-test",
    "output.wandb.tags=[ci,tiny]",
]


def _history(run_file) -> list[dict]:
    rows = []
    for record in read_records(run_file):
        if record.WhichOneof("record_type") == "history":
            rows.append(
                {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            )
    return rows


def test_offline_wandb_run_is_continued_by_the_resumed_run(tiny_cache, tmp_path):
    run_dir = tmp_path / "run"
    common = ["--run-dir", str(run_dir), f"model.tiny_cache_dir={tiny_cache}", "ray.enabled=false", *SMALL, *WANDB]
    first = run_cli("--epochs", "2", *common)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "wandb:" not in first.stdout + first.stderr  # W&B stays off the console but for the job's one line
    run_id = (run_dir / "wandb_run_id").read_text().strip()
    assert f"W&B: run {run_id} in project sdpo-test" in first.stdout
    second = run_cli("--epochs", "3", *common)
    assert second.returncode == 0, second.stderr[-3000:]

    runs = sorted((run_dir / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(runs) == 2  # one folder per attempt, both the same W&B run id
    first_run, second_run = (next(r.glob(f"run-{run_id}.wandb")) for r in runs)
    header = next(r.run for r in read_records(first_run) if r.WhichOneof("record_type") == "run")
    assert header.run_id == run_id and header.display_name == "run" and list(header.tags) == ["ci", "tiny"]
    config = {u.key: json.loads(u.value_json) for u in header.config.update}
    assert config["train"]["learning_rate"] == 1e-2 and config["epochs"] == 2

    rows = _history(first_run) + _history(second_run)
    scalars = [r for r in rows if "loss" in r]
    assert [r["epoch"] for r in scalars] == [0, 1, 2]  # the same scalars as metrics.jsonl, x-axis epoch
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for logged, written in zip(scalars, metrics, strict=True):
        assert logged["loss"] == pytest.approx(written["loss"]) and logged["reward_1step_mean"] == pytest.approx(
            written["reward_1step_mean"]
        )
    assert "eval_reward_1step_mean" in scalars[1]  # the held-out evaluation after epoch 2
    images = {
        key.split("/")[0]: r["epoch"] for r in rows for key in r if key.endswith("/_type") and r[key] == "image-file"
    }
    assert set(images) == {"samples", "eval"}
    for attempt in runs:  # the grids themselves were written with the run
        assert list((attempt / "files" / "media" / "images").glob("samples_*.png"))
