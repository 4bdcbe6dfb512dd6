"""End to end on the tiny SDXL, SD3 (no T5), FLUX, FLUX.2-klein and SANA-Sprint pipelines: the real CLI on a real local
Ray cluster,
`model.pretrained` pointing at a saved diffusers directory. Two epochs (so the second samples with
LoRA weights broadcast to the rollout actors), the held-out evaluation on the deterministic samplers,
and a LoRA file that the family's plain diffusers pipeline loads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from learner.run.outputs import read_metrics
from tests.conftest import run_cli

SMALL = [
    "rollout.num_actors=1",
    "rollout.pairs_per_epoch=2",
    "rollout.chunk_size=1",
    "sampling.num_steps=3",
    "eval.num_prompts=2",
    "ray.num_cpus=2",
]
PIPELINES = {
    "sdxl": "StableDiffusionXLPipeline",
    "sd3": "StableDiffusion3Pipeline",
    "flux": "FluxPipeline",
    "flux2_klein": "Flux2KleinPipeline",
}
PIPELINES["sana_sprint"] = "SanaSprintPipeline"


@pytest.fixture(scope="module", params=["sdxl", "sd3", "flux", "flux2_klein", "sana_sprint"])
def family_run(
    request, tiny_sdxl_dir, tiny_sd3_dir, tiny_flux_dir, tiny_flux2_klein_dir, tiny_sana_sprint_dir, tmp_path_factory
):
    name = request.param
    dirs = {"sdxl": tiny_sdxl_dir, "sd3": tiny_sd3_dir, "flux": tiny_flux_dir, "flux2_klein": tiny_flux2_klein_dir}
    model_dir = (dirs | {"sana_sprint": tiny_sana_sprint_dir})[name]
    run_dir = tmp_path_factory.mktemp(f"e2e-{name}") / "run"
    res = run_cli(
        "--epochs",
        "2",
        "--run-dir",
        str(run_dir),
        f"model.pretrained={model_dir}",
        "model.resolution=32",
        "sampling.eta=0.7",
        *SMALL,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return name, model_dir, run_dir


def test_trains_two_epochs_and_evaluates(family_run):
    _, _, run_dir = family_run
    metrics = read_metrics(run_dir)
    assert [m["epoch"] for m in metrics] == [0, 1]
    for m in metrics:
        assert m["pairs"] == 2 and m["reward_queries"] == 12
        assert all(np.isfinite(m[k]) for k in ("loss", "reward_1step_mean", "reward_final_mean"))
        assert m["ratio_first_pass"] == pytest.approx(1.0, abs=1e-6)  # rollout actors and learner agree
    assert metrics[1]["weights_version"] == metrics[0]["weights_version"] + 1
    for k in (1, 2, 4, 8):
        assert np.isfinite(metrics[1][f"eval_reward_{k}step_mean"])


def test_lora_loads_into_the_family_pipeline(family_run):
    import diffusers

    name, model_dir, run_dir = family_run
    extra = {"text_encoder_3": None, "tokenizer_3": None} if name == "sd3" else {}
    pipe = getattr(diffusers, PIPELINES[name]).from_pretrained(model_dir, **extra)
    pipe.set_progress_bar_config(disable=True)

    size = (
        {"use_resolution_binning": False} if name == "sana_sprint" else {}
    )  # SANA-Sprint's bins are for its 1024 px model

    def sample():
        gen = torch.Generator().manual_seed(0)
        return pipe(
            prompt="a cat",
            num_inference_steps=2,
            guidance_scale=1.0,
            height=32,
            width=32,
            generator=gen,
            output_type="np",
            **size,
        ).images

    before = sample()
    pipe.load_lora_weights(str(run_dir / "lora"))  # plain diffusers, no project code
    after = sample()
    assert before.shape == after.shape == (1, 32, 32, 3)
    assert np.abs(after - before).max() > 0
