"""The LoRA's model card: the diffusers card format (metadata a hub reads) and what it records."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from learner.config import load_config
from learner.run.hub import HubUploadError, push_folder, upload_calls
from learner.run.model_card import eval_table, hub_base_model, write_model_card

FINAL = {
    "epoch": 9,
    "eval_reward_1step_mean": 0.25,
    "eval_reward_1step_std": 0.5,
    "eval_reward_2step_mean": 0.375,
    "eval_reward_2step_std": 0.125,
    "eval_fidelity_1step_mean": 0.5,
    "eval_rewards_missing": 0,
}


def test_eval_table_has_a_row_per_step_count_and_a_column_per_measure():
    table = eval_table(FINAL).splitlines()
    assert table[0] == "| steps | fidelity | reward |"
    assert table[2] == "| 1 | 0.5000 | 0.2500 ± 0.5000 |"
    assert table[3] == "| 2 |  | 0.3750 ± 0.1250 |"
    assert len(table) == 4
    assert "No held-out evaluation" in eval_table({"epoch": 3, "loss": 1.0})


def test_base_model_metadata_only_for_hub_ids(tmp_path):
    assert hub_base_model("stabilityai/sd-turbo") == "stabilityai/sd-turbo"
    assert hub_base_model("tiny") is None
    assert hub_base_model(str(tmp_path)) is None
    assert hub_base_model("./models/sd") is None


def test_card_is_diffusers_format_and_records_the_run(tmp_path):
    from huggingface_hub import ModelCard

    cfg = load_config("sd_turbo_aesthetic", ["epochs=10"])
    grid = tmp_path / "grid.png"
    Image.fromarray(np.zeros((8, 16, 3), np.uint8)).save(grid)
    lora = tmp_path / "lora"
    lora.mkdir()
    path = write_model_card(lora, cfg, FINAL, 10, grid)
    card = ModelCard.load(path)  # what the hub parses
    assert card.data.library_name == "diffusers"
    assert card.data.base_model == "stabilityai/sd-turbo"
    assert {"lora", "sdpo", "reward-aesthetic", "text-to-image"} <= set(card.data.tags)
    text = card.text
    assert f"rank {cfg.model.lora_rank}" in text and "`aesthetic`" in text
    assert f"{10 * cfg.optimizer_steps_per_epoch} optimizer steps" in text
    assert "| 1 | 0.5000 | 0.2500 ± 0.5000 |" in text
    assert "load_lora_weights" in text and "![held-out evaluation](evaluation.png)" in text
    assert (lora / "evaluation.png").read_bytes() == grid.read_bytes()


def test_hub_upload_creates_the_repo_then_uploads_the_folder(tmp_path):
    calls = upload_calls(tmp_path, "me/sdpo-lora", True, "SDPO LoRA")
    assert [name for name, _ in calls] == ["create_repo", "upload_folder"]
    assert calls[0][1] == {"repo_id": "me/sdpo-lora", "repo_type": "model", "private": True, "exist_ok": True}
    assert calls[1][1]["folder_path"] == str(tmp_path) and calls[1][1]["repo_id"] == "me/sdpo-lora"


def test_a_failed_upload_is_one_error_that_says_the_run_is_safe(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no network here either way
    with pytest.raises(HubUploadError, match="run the same command again"):
        push_folder(tmp_path, "me/sdpo-lora", True, "SDPO LoRA")
