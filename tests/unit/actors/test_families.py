"""Model families on tiny SDXL, SD3, FLUX, FLUX.2-klein and SANA-Sprint pipelines (random weights, saved and loaded
back through
from_pretrained): family choice, conditioning, rollout/learner log-prob agreement, the evaluation
sampler against diffusers' own schedulers, and LoRA files that the family's diffusers pipeline loads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from actors.batch import PolicyWeights
from actors.config import ModelConfig, SamplingConfig
from actors.families import FAMILIES, ModelLoadError, family_of, repeat_rows
from actors.policy import (
    denoiser,
    encode_prompts,
    load_lora_state,
    load_pipeline,
    lora_adapter_metadata,
    lora_state,
    model_family,
    resolve_model_path,
    save_lora_diffusers,
    save_lora_state_diffusers,
)
from actors.rollout_worker import RolloutWorker
from actors.sampling import sample_deterministic, score_steps

PROMPTS = ["cat", "dog"]
T = 3


@pytest.fixture(scope="module", params=["sdxl", "sd3", "flux", "flux2_klein", "sana_sprint"])
def family_dir(request, tiny_sdxl_dir, tiny_sd3_dir, tiny_flux_dir, tiny_flux2_klein_dir, tiny_sana_sprint_dir):
    dirs = {"sdxl": tiny_sdxl_dir, "sd3": tiny_sd3_dir, "flux": tiny_flux_dir, "flux2_klein": tiny_flux2_klein_dir}
    dirs["sana_sprint"] = tiny_sana_sprint_dir
    return request.param, dirs[request.param]


@pytest.fixture(scope="module")
def worker(family_dir):
    _, path = family_dir
    # the tiny builds' size (FluxPipeline's default is 1024); alpha != rank, so a LoRA file must carry its alpha
    model = ModelConfig(pretrained=path, resolution=32, lora_rank=4, lora_alpha=8.0)
    w = RolloutWorker(model=model, sampling=SamplingConfig(num_steps=T, eta=0.7), seed=3)
    w.set_weights(PolicyWeights(0, _perturbed_lora(w.pipe)))
    return w


def _perturbed_lora(pipe) -> dict[str, torch.Tensor]:
    """LoRA tensors with non-zero B matrices (peft starts B at zero), so the adapters change the output."""
    gen = torch.Generator().manual_seed(0)
    return {k: v + 0.05 * torch.randn(v.shape, generator=gen) for k, v in lora_state(denoiser(pipe)).items()}


def test_family_is_read_from_model_index(
    tiny_dir, tiny_sdxl_dir, tiny_sd3_dir, tiny_flux_dir, tiny_flux2_klein_dir, tiny_sana_sprint_dir
):
    pairs = (
        (tiny_dir, "sd"),
        (tiny_sdxl_dir, "sdxl"),
        (tiny_sd3_dir, "sd3"),
        (tiny_flux_dir, "flux"),
        (tiny_flux2_klein_dir, "flux2_klein"),
    )
    pairs += ((tiny_sana_sprint_dir, "sana_sprint"),)
    for path, name in pairs:
        assert model_family(ModelConfig(pretrained=path)).name == name


def test_unsupported_pipeline_is_a_usage_error_naming_the_supported_ones(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "PixArtAlphaPipeline"}))
    with pytest.raises(ModelLoadError) as err:
        model_family(ModelConfig(pretrained=str(tmp_path)))
    assert err.value.exit_code == 2
    msg = str(err.value)
    assert "is a PixArtAlphaPipeline" in msg and all(f.pipeline_class in msg for f in FAMILIES.values())
    # model.family overrides the class name; the directory must then hold that family's components
    cfg = ModelConfig(pretrained=str(tmp_path), family="sdxl")
    with pytest.raises(ModelLoadError, match="not a StableDiffusionXLPipeline directory .*text_encoder_2"):
        resolve_model_path(cfg)
    assert model_family(cfg, str(tmp_path)).name == "sdxl"


def test_conditioning(worker, family_dir):
    name, _ = family_dir
    cond = encode_prompts(worker.pipe, PROMPTS)
    if name == "sdxl":
        assert cond.embeds.shape == (2, 16, 64) and cond.pooled.shape == (
            2,
            32,
        )  # two encoders' 32 + 32; pooled of the 2nd
        assert cond.time_ids.tolist() == [[32.0, 32.0, 0.0, 0.0, 32.0, 32.0]] * 2  # (orig, crop, target) at 32 x 32
        assert (
            type(worker.pipe.scheduler).__name__ == "DDIMScheduler"
            and worker.pipe.scheduler.config.timestep_spacing == "trailing"
        )
    elif name == "sd3":
        assert cond.embeds.shape == (2, 16 + 256, 64) and cond.pooled.shape == (2, 64)  # CLIP tokens, then T5's (zeros)
        assert torch.equal(cond.embeds[:, 16:], torch.zeros(2, 256, 64))  # no T5 in this build
    elif name == "flux":
        assert cond.embeds.shape == (2, 256, 32) and cond.pooled.shape == (2, 32)  # T5 tokens; CLIP pooled
        assert type(worker.pipe.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"
    elif name == "sana_sprint":
        assert cond.embeds.shape == (2, 300, 32) and cond.mask.shape == (
            2,
            300,
        )  # [bos] + the last 299 of instruction + prompt; Gemma-2 width
        # kept: [bos], the instruction's last token, the prompt ("cat" is a word of the instruction, "dog" spelled d ##o
        # ##g)
        assert cond.mask[:, 0].tolist() == [1, 1] and cond.mask.sum(1).tolist() == [3, 5]
        assert torch.allclose(
            cond.guidance, torch.full((2,), 0.45)
        )  # the embedded guidance 4.5 x guidance_embeds_scale 0.1
        assert type(worker.pipe.scheduler).__name__ == "SCMScheduler"
    else:
        assert cond.shape == (
            2,
            512,
            48,
        )  # the chat-templated prompt's 512 Qwen3 tokens; three layers' hidden states (3 x 16)
        sched = worker.pipe.scheduler  # FLUX.2's own, dynamic shift kept; its mu reads the 8 x 8 latent tokens at 32 px
        assert (
            type(sched).__name__ == "FlowMatchEulerDiscreteScheduler"
            and sched.config.use_dynamic_shifting
            and sched.image_seq_len == 64
        )


def test_rollout_log_probs_are_recomputed_exactly(worker, family_dir):
    """The learner's rescoring (score_steps with the family) of the stored actions gives the stored log-probs."""
    name, _ = family_dir
    traj = worker.rollout(epoch=1, pair_indices=[0, 1], prompts=PROMPTS, version=0).trajectories
    assert traj.latents.shape[:3] == (2, 2, T + 1) and torch.equal(traj.latents[:, 0, 0], traj.latents[:, 1, 0])
    fam, pipe = family_of(worker.pipe), worker.pipe
    assert fam.name == name
    cond = repeat_rows(encode_prompts(pipe, PROMPTS), 2)  # (2B, ...)
    for i in range(T):
        x, x_next = traj.latents[:, :, i].flatten(0, 1), traj.latents[:, :, i + 1].flatten(0, 1)  # (2B, C, h, w)
        with torch.no_grad():
            step = score_steps(
                denoiser(pipe), pipe.scheduler, x, x_next, torch.full((4,), i), traj.timesteps, cond, 0.7, family=fam
            )
        assert torch.equal(step.log_prob, traj.log_probs[:, :, i].flatten())


def test_deterministic_sampler_equals_the_diffusers_scheduler(worker, family_dir):
    """SDXL: DDIMScheduler.step(eta=0) bit for bit; SD3 and FLUX: FlowMatchEulerDiscreteScheduler.step (its own
    sigmas; FLUX's from linspace(1, 1/k, k) as FluxPipeline sets them, FLUX.2's shifted by the mu of its pipeline);
    SANA-Sprint: SCMScheduler.step's x0, re-noised with the noise x_t implies."""
    name, _ = family_dir
    pipe, fam = worker.pipe, family_of(worker.pipe)
    seeds = (1, 2)
    ours = sample_deterministic(pipe, PROMPTS, [torch.Generator().manual_seed(s) for s in seeds], 4)
    shape = fam.latent_shape(pipe)
    x = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds])
    cond = encode_prompts(pipe, PROMPTS)
    if name == "sana_sprint":
        assert torch.allclose(ours, _scm_deterministic_chain(pipe, x, cond, 4), atol=1e-5)
        return
    sched = pipe.scheduler
    if name != "sdxl":
        from diffusers import FlowMatchEulerDiscreteScheduler

        sched = FlowMatchEulerDiscreteScheduler.from_config(sched.config)
    if name == "flux":
        sched.set_timesteps(sigmas=np.linspace(1.0, 1 / 4, 4))
    elif name == "flux2_klein":
        from diffusers.pipelines.flux2.pipeline_flux2_klein import compute_empirical_mu

        sched.set_timesteps(
            sigmas=np.linspace(1.0, 1 / 4, 4), mu=compute_empirical_mu(image_seq_len=8 * 8, num_steps=4)
        )
    else:
        sched.set_timesteps(4)
    for t in sched.timesteps:
        with torch.no_grad():
            out = fam.predict(denoiser(pipe), x, t.expand(2), cond)
        if name == "sdxl":
            step = sched.step(out, t, x, eta=0.0)
            x, ref = step.prev_sample, step.pred_original_sample
        else:
            ref = x - sched.sigmas[sched.step_index or 0] * out  # x0 = x - s v at this step's level
            x = sched.step(out, t, x).prev_sample
    assert ours.shape == (2, *shape)
    if name == "sdxl":
        assert torch.equal(ours, ref)
    else:
        assert torch.allclose(ours, ref, atol=1e-4)


def _scm_deterministic_chain(pipe, x: torch.Tensor, cond, k: int) -> torch.Tensor:
    """SANA-Sprint's k-step chain with SCMScheduler.step's x0 (on the pipeline's latents, ours x sigma_data)
    and, in place of its fresh noise, the noise x_t implies (eta = 0): x_s = cos(s) x0 + sin(s) (x_t - cos(t) x0) /
    sin(t).
    Returns the last step's x0 (N, C, h, w)."""
    from diffusers import SCMScheduler

    fam, sched = family_of(pipe), SCMScheduler.from_config(pipe.scheduler.config)
    sched.set_timesteps(k, intermediate_timesteps=None)  # linspace(1.5708, 0, k + 1)
    sigma = sched.config.sigma_data
    for i, t in enumerate(sched.timesteps[:-1]):
        with torch.no_grad():
            out = fam.predict(denoiser(pipe), x, t.expand(len(x)), cond)
        x0 = (
            sched.step(sigma * out, t, sigma * x, generator=torch.Generator().manual_seed(0)).pred_original_sample
            / sigma
        )
        s = sched.timesteps[i + 1]
        x = torch.cos(s) * x0 + torch.sin(s) * (x - torch.cos(t) * x0) / torch.sin(t)
    return x0


def test_lora_file_loads_with_the_family_pipeline(worker, family_dir, tmp_path):
    """The saved LoRA, loaded by the family's plain diffusers pipeline, reproduces the trained denoiser's output
    (alpha 8 at rank 4: the file's adapter metadata carries the scale). A checkpoint writes it from the peft
    state and the run's config alone: the file format is then read off the key names."""
    import diffusers
    from safetensors.torch import load_file

    name, path = family_dir
    fam, pipe = family_of(worker.pipe), worker.pipe
    save_lora_diffusers(denoiser(pipe), tmp_path / "with_family", fam)
    save_lora_state_diffusers(
        lora_state(denoiser(pipe)), tmp_path, lora_adapter_metadata(4, 8.0, ModelConfig().lora_target_modules)
    )
    with_family, inferred = (
        load_file(str(d / "pytorch_lora_weights.safetensors")) for d in (tmp_path / "with_family", tmp_path)
    )
    assert with_family.keys() == inferred.keys() and all(torch.equal(with_family[k], inferred[k]) for k in inferred)
    plain = getattr(diffusers, fam.pipeline_class).from_pretrained(path, **_absent(path))
    x = torch.randn(2, *fam.latent_shape(pipe), generator=torch.Generator().manual_seed(5))
    t = torch.full(
        (2,), 1.3 if name == "sana_sprint" else 500
    )  # SANA-Sprint's timesteps are TrigFlow times in (0, pi / 2]
    cond = encode_prompts(pipe, PROMPTS)
    with torch.no_grad():
        trained = fam.predict(denoiser(pipe), x, t, cond)
        before = fam.predict(fam.denoiser(plain), x, t, cond)
        plain.load_lora_weights(str(tmp_path))  # no project code
        after = fam.predict(fam.denoiser(plain), x, t, cond)
    assert (before - trained).abs().max() > 1e-3
    assert torch.allclose(after, trained, atol=1e-5)


def _absent(path) -> dict:
    index = json.loads((Path(path) / "model_index.json").read_text())
    return {k: None for k, v in index.items() if isinstance(v, list) and v[1] is None}


def test_resolution_sets_the_latent_size(family_dir):
    name, path = family_dir
    fam = FAMILIES[name]
    pipe = load_pipeline(ModelConfig(pretrained=path, resolution=48), with_lora=False)
    assert fam.latent_shape(pipe)[1:] == (
        (12, 12) if name == "flux2_klein" else (24, 24)
    )  # FLUX.2's latents are patchified
    # the VAE halves once (2); SD3's transformer, FLUX's packing and FLUX.2's patchify take 2 x 2 latent patches (4)
    bad, multiple = {"sdxl": (31, 2), "sd3": (30, 4), "flux": (30, 4), "flux2_klein": (30, 4), "sana_sprint": (31, 2)}[
        name
    ]
    with pytest.raises(ModelLoadError, match=f"model.resolution: {bad} is not a multiple of {multiple} "):
        load_pipeline(ModelConfig(pretrained=path, resolution=bad), with_lora=False)


def test_flux_packing_is_fluxpipelines():
    """Our 2 x 2 packing and position ids are FluxPipeline's, and unpacking inverts packing."""
    from diffusers import FluxPipeline

    from actors.families.flux import image_ids, pack_latents, unpack_latents

    x = torch.randn(2, 4, 6, 8)  # (N, C, h, w)
    assert torch.equal(pack_latents(x), FluxPipeline._pack_latents(x, 2, 4, 6, 8))  # (N, 3 * 4, 16)
    assert torch.equal(unpack_latents(pack_latents(x), 6, 8), x)
    assert torch.equal(
        image_ids(6, 8, "cpu", torch.float32), FluxPipeline._prepare_latent_image_ids(2, 3, 4, "cpu", torch.float32)
    )


def test_flux2_klein_packing_is_the_pipelines():
    """Our token packing, 4-axis position ids and unpatchify are Flux2KleinPipeline's, and unpacking inverts packing."""
    from diffusers import Flux2KleinPipeline as Klein

    from actors.families.flux2_klein import latent_ids, pack_latents, text_ids, unpack_latents, unpatchify

    x = torch.randn(2, 16, 6, 8)  # (N, 4C, h, w)
    tokens, ids = pack_latents(x), Klein._prepare_latent_ids(x)  # (N, 6 * 8, 16), (N, 6 * 8, 4)
    assert torch.equal(tokens, Klein._pack_latents(x)) and torch.equal(latent_ids(6, 8, "cpu"), ids[0])
    assert torch.equal(unpack_latents(tokens, 6, 8), x) and torch.equal(
        Klein._unpack_latents_with_ids(tokens, ids, 6, 8), x
    )
    assert torch.equal(text_ids(5, "cpu"), Klein._prepare_text_ids(torch.zeros(2, 5, 3))[0])
    assert torch.equal(unpatchify(x), Klein._unpatchify_latents(x)) and torch.equal(
        Klein._patchify_latents(unpatchify(x)), x
    )


@pytest.mark.parametrize("k", [1, 4])
def test_flux2_klein_deterministic_sampler_is_the_pipelines(tiny_flux2_klein_dir, k):
    """The k-step evaluation sampler gives what Flux2KleinPipeline itself samples (with the same LoRA'd
    transformer) from the same initial latents: its output latents (batch-norm statistics undone,
    unpatchified) and its decoded images."""
    pipe = load_pipeline(ModelConfig(pretrained=tiny_flux2_klein_dir, resolution=32))
    load_lora_state(denoiser(pipe), _perturbed_lora(pipe))
    fam, seeds = family_of(pipe), (1, 2)
    ours = sample_deterministic(pipe, PROMPTS, [torch.Generator().manual_seed(s) for s in seeds], k)  # (2, 16, 8, 8)
    x = torch.stack([torch.randn(fam.latent_shape(pipe), generator=torch.Generator().manual_seed(s)) for s in seeds])
    call = dict(prompt=PROMPTS, latents=x, num_inference_steps=k, guidance_scale=1.0, height=32, width=32)
    ref = pipe(**call, output_type="latent").images  # (2, 4, 16, 16): the VAE's latents
    assert torch.allclose(fam.vae_latents(pipe, ours), ref, atol=1e-5)
    with torch.no_grad():
        images = (fam.decode(pipe, ours) / 2 + 0.5).clamp(0, 1)  # (2, 3, 32, 32), as the pipeline postprocesses
    assert torch.allclose(images, pipe(**call, output_type="pt").images, atol=1e-5)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_sana_sprint_sampler_is_the_pipelines(tiny_sana_sprint_dir, k):
    """SanaSprintPipeline itself (with the same LoRA'd transformer) from the same initial latents, to the
    bit: at k = 1 (no re-noising) the evaluation sampler's output; at every k the policy chain at eta = 1
    (SCM's own re-noising) fed the pipeline's step noise (one draw per step from each prompt's generator):
    its output latents and decoded images. k = 2 takes the pipeline's intermediate time 1.3, other k
    SCMScheduler's linspace."""
    pipe = load_pipeline(ModelConfig(pretrained=tiny_sana_sprint_dir))
    load_lora_state(denoiser(pipe), _perturbed_lora(pipe))
    fam, seeds = family_of(pipe), (1, 2)
    shape = fam.latent_shape(pipe)  # (4, 16, 16): 32 x 32 images
    x = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds])  # (2, C, h, w)
    call = dict(
        prompt=PROMPTS,
        latents=x,
        num_inference_steps=k,
        intermediate_timesteps=1.3 if k == 2 else None,
        height=32,
        width=32,
    )
    call |= dict(use_resolution_binning=False)  # its bins are for the 1024 px model

    def noise():  # the step noise, one generator per prompt
        return [torch.Generator().manual_seed(10 + s) for s in seeds]

    ref = pipe(**call, generator=noise(), output_type="latent").images  # (2, C, h, w): denoised / sigma_data
    if k == 1:
        assert torch.equal(
            sample_deterministic(pipe, PROMPTS, [torch.Generator().manual_seed(s) for s in seeds], 1), ref
        )
    cond, timesteps, gens = fam.encode_prompts(pipe, PROMPTS), fam.set_timesteps(pipe.scheduler, k), noise()
    for i, t in enumerate(timesteps):
        with torch.no_grad():
            out = fam.predict(denoiser(pipe), x, t.expand(2), cond)
        z = torch.cat(
            [torch.randn((1, *shape), generator=g) for g in gens]
        )  # (2, C, h, w), in the pipeline's draw order
        step = fam.step_with_logprob(pipe.scheduler, out, x, torch.full((2,), i), timesteps, 1.0, noise=z)
        x = step.next_sample
    assert torch.equal(step.pred_original_sample, ref)
    with torch.no_grad():
        images = (fam.decode(pipe, step.pred_original_sample) / 2 + 0.5).clamp(
            0, 1
        )  # (2, 3, 32, 32), as the pipeline postprocesses
    assert torch.equal(images, pipe(**call, generator=noise(), output_type="pt").images)


@pytest.mark.parametrize(
    "targets", [("to_q", "to_k", "to_v", "to_out.0"), ("to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2")]
)
def test_sd_lora_file_with_convolution_adapters_loads_whole(tmp_path, targets):
    """An SD LoRA that also adapts the resnets' convolutions loads whole in plain diffusers: every
    adapter (attention and convolution) is in the file and the loaded UNet reproduces the trained one.
    On the shapes model, whose first UNet block has no attention, a file in diffusers' older attention
    names beside peft's convolution names loaded only the convolutions, silently."""
    from diffusers import StableDiffusionPipeline

    model = ModelConfig(pretrained="shapes", lora_target_modules=targets)
    pipe = load_pipeline(model)
    load_lora_state(pipe.unet, _perturbed_lora(pipe))
    path = save_lora_diffusers(pipe.unet, tmp_path)
    plain = StableDiffusionPipeline.from_pretrained(
        resolve_model_path(model), safety_checker=None, requires_safety_checker=False
    )
    plain.load_lora_weights(str(tmp_path))  # no project code
    adapted = {n for n, m in plain.unet.named_modules() if hasattr(m, "lora_A")}
    assert adapted == {n for n, m in pipe.unet.named_modules() if hasattr(m, "lora_A")}
    assert any(n.endswith(targets[-1]) for n in adapted) and path.is_file()
    fam = family_of(pipe)
    x = torch.randn(2, *fam.latent_shape(pipe), generator=torch.Generator().manual_seed(5))
    t = torch.full((2,), 500)
    cond = encode_prompts(pipe, PROMPTS)
    with torch.no_grad():
        assert torch.allclose(fam.predict(plain.unet, x, t, cond), fam.predict(pipe.unet, x, t, cond), atol=1e-5)


def test_gradient_checkpointing_recomputes_blocks_and_gives_the_same_lora_gradients(tiny_cache):
    """model.gradient_checkpointing: in training, each checkpointed block runs again in the backward pass
    (its forward is called twice, not once) and the LoRA's gradients are the ones without it."""
    grads, calls = [], []
    for ckpt in (False, True):
        pipe = load_pipeline(ModelConfig(tiny_cache_dir=tiny_cache, gradient_checkpointing=ckpt))
        fam, unet = family_of(pipe), pipe.unet
        block = next(m for m in unet.modules() if type(m).__name__ == "BasicTransformerBlock")
        count = []
        block.register_forward_pre_hook(lambda *_, count=count: count.append(1))
        unet.train()
        x = torch.randn(2, *fam.latent_shape(pipe), generator=torch.Generator().manual_seed(5))
        fam.predict(unet, x, torch.full((2,), 500), encode_prompts(pipe, PROMPTS)).square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in unet.named_parameters() if p.requires_grad})
        calls.append(len(count))
    assert calls == [1, 2]
    assert grads[0].keys() == grads[1].keys() and all(
        torch.allclose(grads[0][k], grads[1][k], atol=1e-6) for k in grads[0]
    )
