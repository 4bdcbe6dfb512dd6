"""The learner's rescoring and update on the tiny SDXL, SD3, FLUX, FLUX.2-klein and SANA-Sprint pipelines (with
classifier-free
guidance, so the negative conditioning goes through the family's row helpers): the first pass of a
version reproduces the rollout's log-probs exactly (ratio 1), and the update reaches the policy the
rollout worker then samples with. (Which way one update moves tiny random-weight models is left to
the SD learner tests; the loss is the same code for every family.)"""

from __future__ import annotations

import pytest
import torch

from actors.config import ModelConfig, SamplingConfig
from actors.families import expand_rows, family_of, repeat_rows
from actors.policy import denoiser, encode_prompts
from actors.rollout_worker import RolloutWorker
from actors.sampling import score_steps
from learner.worker.config import TrainConfig
from learner.worker.learner_worker import LearnerWorker
from tests.conftest import update_request

T = 3


@pytest.mark.parametrize("name", ["sdxl", "sd3", "flux", "flux2_klein", "sana_sprint"])
def test_family_update_ratio_is_one_and_moves_the_policy(
    name, tiny_sdxl_dir, tiny_sd3_dir, tiny_flux_dir, tiny_flux2_klein_dir, tiny_sana_sprint_dir
):
    dirs = {"sdxl": tiny_sdxl_dir, "sd3": tiny_sd3_dir, "flux": tiny_flux_dir, "flux2_klein": tiny_flux2_klein_dir}
    dirs["sana_sprint"] = tiny_sana_sprint_dir
    model = ModelConfig(pretrained=dirs[name], resolution=32)
    sampling = SamplingConfig(num_steps=T, eta=0.7, guidance_scale=2.0)
    learner = LearnerWorker(
        model=model, sampling=sampling, train=TrainConfig(learning_rate=1e-2, gradient_accumulation_steps=2), seed=0
    )
    rollout = RolloutWorker(model=model, sampling=sampling, seed=0)
    rollout.set_weights(learner.get_weights())
    traj = rollout.rollout(0, [0, 1], ["cat", "dog"], learner.version).trajectories
    adv = torch.tensor([1.0, -1.0])[None, :, None].expand(2, 2, T).contiguous()  # (B, P, T): trajectory 1 better
    metrics = learner.update(update_request(traj, adv), traj)
    assert learner.family.name == name and metrics["backward_passes"] == 3
    assert metrics["ratio_first_pass"] == 1.0
    rollout.set_weights(learner.get_weights())
    pipe, fam = rollout.pipe, family_of(rollout.pipe)
    cond = repeat_rows(encode_prompts(pipe, traj.prompts), 2)  # (2B, ...)
    negative = expand_rows(encode_prompts(pipe, [""]), 4)
    rho = []
    for i in range(T):
        x, x_next = traj.latents[:, :, i].flatten(0, 1), traj.latents[:, :, i + 1].flatten(0, 1)  # (2B, C, h, w)
        with torch.no_grad():
            lp = score_steps(
                denoiser(pipe),
                pipe.scheduler,
                x,
                x_next,
                torch.full((4,), i),
                traj.timesteps,
                cond,
                0.7,
                2.0,
                negative,
                family=fam,
            )
        rho.append(lp.log_prob.view(2, 2) - traj.log_probs[:, :, i])  # (B, P)
    rho = torch.stack(rho)  # (T, B, P): log-ratios of the stored actions under the updated policy
    assert torch.isfinite(rho).all() and rho.abs().max() > 0
