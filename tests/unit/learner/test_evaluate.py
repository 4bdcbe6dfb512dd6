"""`python -m learner.evaluate`: the paired change of a policy's held-out scores, and its errors.
The command itself, against a real run on Ray, is checked in tests/e2e/learner/driver/test_eval_fidelity_e2e.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from learner.driver.evaluation import EvalResult
from learner.evaluate import change_table, format_report, free_stem, main, paired_change


def test_paired_change_by_hand():
    # differences 0.25, 0, -0.5 (the NaN image is left out): mean -1/12; sample std sqrt(0.2916667 / 2) = 0.381881
    mean, sem = paired_change(np.array([0.5, 0.25, 1.0, np.nan]), np.array([0.75, 0.25, 0.5, 1.0]))
    assert mean == pytest.approx(-1 / 12) and sem == pytest.approx(0.381881 / math.sqrt(3), rel=1e-5)
    assert math.isnan(paired_change(np.array([np.nan]), np.array([1.0]))[0])


def _result(rewards: list[float], factors: list[list[int]]) -> EvalResult:
    n = len(rewards)
    return EvalResult([1], np.zeros((1, n, 4, 4, 3), np.uint8), np.array([rewards]), np.array([factors]))


def test_change_table_and_report_give_reward_and_fidelity_per_step_count():
    initial = _result([0.5, 0.5], [[1, 0, 0, 0], [1, 1, 0, 0]])  # fidelity 0.25, 0.5
    trained = _result([0.7, 0.5], [[1, 1, 1, 0], [1, 1, 0, 0]])  # fidelity 0.75, 0.5
    change = change_table(initial, trained)
    assert change["eval_reward_1step_change"] == pytest.approx(0.1) and change[
        "eval_fidelity_1step_change"
    ] == pytest.approx(0.25)
    assert change["eval_fidelity_1step_change_sem"] == pytest.approx(0.25)  # differences 0.5, 0: std 0.3536 / sqrt 2
    report = {"eval": {"steps": [1]}, "initial": initial.metrics(), "trained": trained.metrics(), "change": change}
    assert (
        format_report(report)
        == "1-step  reward 0.5000 -> 0.6000 (+0.1000 +- 0.1000)  fidelity 0.3750 -> 0.6250 (+0.2500 +- 0.2500)"
    )


def test_a_recheck_never_replaces_an_earlier_one(tmp_path):
    assert free_stem(tmp_path, "recheck-epoch-000003-seed-7") == "recheck-epoch-000003-seed-7"
    (tmp_path / "recheck-epoch-000003-seed-7.json").write_text("{}")
    assert free_stem(tmp_path, "recheck-epoch-000003-seed-7") == "recheck-epoch-000003-seed-7-2"
    (tmp_path / "recheck-epoch-000003-seed-7-2.json").write_text("{}")
    assert free_stem(tmp_path, "recheck-epoch-000003-seed-7") == "recheck-epoch-000003-seed-7-3"


def test_errors_exit_2_with_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "missing")]) == 2
    assert main([str(tmp_path)]) == 2
    torn = tmp_path / "checkpoints" / "epoch-000003"
    torn.mkdir(parents=True)
    (torn / "manifest.json").write_text("{")
    assert main([str(tmp_path), "--checkpoint", str(torn)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: {tmp_path / 'missing'} is not a run directory",
        f"error: {tmp_path}: no valid checkpoint under {tmp_path / 'checkpoints'}",
        f"error: checkpoint {torn} is corrupt or partial (no readable manifest.json)",
    ]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_device_is_a_usage_error(tmp_path, capsys):
    assert main([str(tmp_path), "--device", "cuda"]) == 2
    assert capsys.readouterr().err.strip() == "error: --device cuda: no CUDA device here"


def test_overrides_that_change_the_adapter_are_refused_by_name(tmp_path, capsys):
    """The checkpoint's LoRA fits only the model and adapters it was trained with: model.lora_rank=8 (or
    another base model) is one line naming the key, not a size-mismatch traceback."""
    _checkpoint(tmp_path, 1)
    assert main([str(tmp_path), "model.lora_rank=8"]) == 2
    assert main([str(tmp_path), "model.pretrained=shapes"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == (
        "error: model.lora_rank: the checkpoint's LoRA was trained with 4, not 8; "
        "an evaluation keeps the run's model and adapters"
    )
    assert err[1].startswith("error: model.pretrained: the checkpoint's LoRA was trained with 'tiny', not 'shapes'")


def _checkpoint(run_dir, epoch: int):
    from actors.policy import lora_adapter_metadata
    from learner.config import load_config, to_yaml
    from learner.run.checkpoint import TrainingState, checkpoint_dir, write_checkpoint

    cfg = load_config("tiny")
    state = TrainingState(
        epoch=epoch,
        weights_version=epoch,
        lora={"x": torch.zeros(1)},
        trainer={},
        tracker=None,
        rng={},
        config_yaml=to_yaml(cfg),
    )
    model = cfg.model
    adapter = lora_adapter_metadata(model.lora_rank, model.lora_alpha, model.lora_target_modules)
    return write_checkpoint(checkpoint_dir(run_dir), state, keep=3, adapter=adapter)


def test_a_checkpoint_pruned_while_it_is_read_is_looked_up_again(tmp_path, monkeypatch):
    """The training run prunes the newest checkpoint between the reader finding it and reading it
    (checkpoint.keep=1 with a new one written): the reader takes the newer one instead."""
    from learner.run import checkpoint as ck

    _checkpoint(tmp_path, 1)
    real_read, calls = ck.read_checkpoint, []

    def read_while_the_run_prunes(path):
        calls.append(path.name)
        if len(calls) == 1:  # the run writes epoch 2 and prunes epoch 1 just now
            _checkpoint(tmp_path, 2)
            ck.prune(ck.checkpoint_dir(tmp_path), keep=1)
        return real_read(path)

    monkeypatch.setattr(ck, "read_checkpoint", read_while_the_run_prunes)
    assert ck.read_latest(ck.checkpoint_dir(tmp_path)).epoch == 2
    assert calls == ["epoch-000001", "epoch-000002"]


def test_an_output_dir_that_cannot_be_written_is_one_line_before_any_sampling(tmp_path, capsys):
    _checkpoint(tmp_path, 1)
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    assert main([str(tmp_path), "--out", str(blocked / "eval")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: cannot write to {blocked / 'eval'} (") and "--out DIR" in err[0]
