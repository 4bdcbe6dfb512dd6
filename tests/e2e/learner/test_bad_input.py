"""Bad input the config tests do not cover: a model directory that exists but is not a diffusers
pipeline, and the dashboard's URL as RAY_ADDRESS. Each bad input exits 2 with one line and no traceback
(resources: test_fault_e2e.py; where weights may be read from: tests/unit/learner/test_bad_input_unit.py)."""

from __future__ import annotations

import pytest

from tests.conftest import REPO, run_cli


@pytest.mark.parametrize(
    "layout, needle",
    [
        ({}, "no model_index.json"),
        ({"model_index.json": "{not json"}, "model_index.json' is not valid JSON"),
        ({"model_index.json": "[1, 2]"}, "is not a JSON object"),
        (
            {"model_index.json": '{"_class_name": "StableDiffusionPipeline"}', "unet/": None},
            "no vae, text_encoder, tokenizer, scheduler folder",
        ),
        (
            {"model_index.json": '{"_class_name": "PixArtAlphaPipeline"}'},
            "is a PixArtAlphaPipeline, which cannot be trained; supported pipelines: StableDiffusionPipeline (sd), "
            "StableDiffusionXLPipeline (sdxl)",
        ),
    ],
)
def test_model_dir_that_is_not_a_pipeline_exits_2(tmp_path, layout, needle):
    model = tmp_path / "model"
    model.mkdir()
    for name, text in layout.items():
        if name.endswith("/"):
            (model / name).mkdir()
        else:
            (model / name).write_text(text)
    res = run_cli(f"model.pretrained={model}", "ray.enabled=false", timeout=120)
    assert res.returncode == 2, res.stderr[-2000:]
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: model.pretrained:") and needle in lines[0], res.stderr
    assert "Traceback" not in res.stderr


def test_the_dashboard_url_as_ray_address_is_one_line():
    """RAY_ADDRESS=http://127.0.0.1:8265 (the form `ray job submit` takes) is explained, exit 2, no traceback."""
    import subprocess
    import sys

    from tests.conftest import cli_env

    env = dict(cli_env(), RAY_ADDRESS="http://127.0.0.1:8265")
    res = subprocess.run(
        [sys.executable, "-m", "learner.main", "--config", "tiny", "--epochs", "1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 2, res.stderr[-2000:]
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(
        "error: RAY_ADDRESS: 'http://127.0.0.1:8265' is the dashboard's address"
    )
    assert "Traceback" not in res.stderr
