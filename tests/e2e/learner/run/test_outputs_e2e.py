"""W&B's own processes: with a key but no W&B server to reach, the run logs offline (wandb.init starts
wandb-core and git as child processes). The rest of a run's outputs in-process:
tests/unit/learner/run/test_outputs.py."""

from __future__ import annotations

import pytest


def test_wandb_unreachable_falls_back_to_offline_and_says_so(tmp_path, capsys, monkeypatch):
    """With a key but no W&B server to reach, the run logs offline after a bounded wait, with one warning line."""
    pytest.importorskip("wandb")
    from learner.run import wandb_log
    from learner.run.config import WandbConfig

    monkeypatch.setenv("WANDB_API_KEY", "a" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setattr(wandb_log, "INIT_TIMEOUT_S", 5.0)
    logger = wandb_log.WandbLogger(WandbConfig(enabled=True), tmp_path, {"a": 1})
    try:
        out = capsys.readouterr().out
        assert (
            "warning: W&B is unreachable" in out
            and "logging offline under" in out
            and out.rstrip().endswith("(upload: wandb sync)")
        )
        assert list((tmp_path / "wandb").glob("offline-run-*"))
    finally:
        logger.run.finish()
