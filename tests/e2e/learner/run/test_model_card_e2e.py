"""The model card's snippet, run as it is in a fresh interpreter. The card itself in-process:
tests/unit/learner/run/test_model_card.py."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from learner.config import load_config
from learner.run.model_card import write_model_card


def test_the_cards_snippet_runs_with_diffusers_alone(tiny_cache, tmp_path):
    """The card names where the base model really is, a prompt of the run's own task, the initial
    policy's evaluation beside the final one with the change, and its snippet loads the card's own
    LoRA with diffusers alone and generates an image (run as it is, in a fresh interpreter)."""
    import re
    import subprocess
    import sys

    from actors.policy import load_pipeline, resolve_model_path, save_lora_diffusers
    from actors.prompts import load_prompts
    from tests.conftest import cli_env

    cfg = load_config("tiny", [f"model.tiny_cache_dir={tiny_cache}"])
    lora = tmp_path / "run" / "lora"
    save_lora_diffusers(load_pipeline(cfg.model).unet, lora)
    final = {"epoch": 9, "eval_reward_1step_mean": 0.25, "eval_reward_2step_mean": 0.5}
    initial = {"eval_reward_1step_mean": 0.2, "eval_reward_2step_mean": 0.5}
    text = write_model_card(lora, cfg, final, 10, None, initial).read_text()
    assert "| reward | 1 | 0.2000 | 0.2500 | +0.0500 |" in text and "| reward | 2 | 0.5000 | 0.5000 | +0.0000 |" in text
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    assert str(Path(resolve_model_path(cfg.model)).resolve()) in code and str(lora.resolve()) in code
    assert f'pipe("{load_prompts(cfg.eval.prompts)[0]}"' in code and "a photo of a cat" not in code
    assert [line for line in code.splitlines() if "import" in line] == ["from diffusers import DiffusionPipeline"]
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert Image.open(tmp_path / "sample.png").size == (64, 64)
