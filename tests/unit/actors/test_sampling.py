"""Dual-state pair sampling and the rollout worker on the real tiny diffusers pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from actors.batch import PolicyWeights, RolloutBatch
from actors.config import ModelConfig, SamplingConfig
from actors.policy import encode_prompts, lora_state, unet_output
from actors.rollout_worker import RolloutWorker
from actors.sampling import score_steps

PROMPTS = ["cat", "dog", "owl"]


@pytest.fixture(scope="module")
def worker(tiny_cache):
    w = RolloutWorker(model=ModelConfig(tiny_cache_dir=tiny_cache), sampling=SamplingConfig(num_steps=5), seed=7)
    w.set_weights(PolicyWeights(0, lora_state(w.pipe.unet)))
    return w


@pytest.fixture(scope="module")
def batch(worker) -> RolloutBatch:
    return worker.rollout(epoch=3, pair_indices=[0, 1, 2], prompts=PROMPTS, version=0)


def test_shapes_and_shared_initial_noise(batch):
    B, P, T = 3, 2, 5
    assert batch.trajectories.latents.shape == (B, P, T + 1, 4, 16, 16)
    assert batch.trajectories.log_probs.shape == (B, P, T) and batch.queries.similarities.shape == (B, P, 3, T)
    assert batch.queries.images.shape == (B, P, 3, 64, 64, 3) and batch.queries.images.dtype == np.uint8
    assert torch.equal(batch.trajectories.latents[:, 0, 0], batch.trajectories.latents[:, 1, 0])  # one x_0 per pair
    assert not torch.equal(
        batch.trajectories.latents[:, 0, 1], batch.trajectories.latents[:, 1, 1]
    )  # independent step noise
    assert (batch.queries.query_steps[..., 0] == 0).all() and (batch.queries.query_steps[..., -1] == T - 1).all()
    assert batch.queries.policy_version == 0 and batch.queries.epoch == 3


def test_pairs_do_not_depend_on_chunking(worker, batch):
    """A pair's samples depend on (seed, epoch, pair index) only, not on its chunk or worker."""
    alone = worker.rollout(epoch=3, pair_indices=[1], prompts=PROMPTS[1:2], version=0)
    assert torch.allclose(alone.trajectories.latents[0], batch.trajectories.latents[1], atol=1e-6)
    other_epoch = worker.rollout(epoch=4, pair_indices=[1], prompts=PROMPTS[1:2], version=0)
    assert not torch.allclose(other_epoch.trajectories.latents[0, :, 0], batch.trajectories.latents[1, :, 0])


@torch.no_grad()
def _rescore(pipe, batch, embeds, i: int):
    """The learner's recomputation (actors.sampling.score_steps) of step i of every trajectory."""
    batch = batch.trajectories
    n = batch.latents.shape[0] * 2
    x, x_next = batch.latents[:, :, i].flatten(0, 1), batch.latents[:, :, i + 1].flatten(0, 1)  # (2B, C, h, w)
    return score_steps(pipe.unet, pipe.scheduler, x, x_next, torch.full((n,), i), batch.timesteps, embeds, 1.0)


def test_stored_log_probs_are_recomputed_exactly(worker, batch):
    """Scoring the stored (x_i, x_{i+1}) with the same policy gives the stored log-prob: ratio 1."""
    pipe = worker.pipe
    embeds = encode_prompts(pipe, PROMPTS).repeat_interleave(2, dim=0)  # (2B, L, D)
    for i in range(batch.trajectories.timesteps.shape[0]):
        lp = _rescore(pipe, batch, embeds, i).log_prob
        assert torch.equal(torch.exp(lp - batch.trajectories.log_probs[:, :, i].flatten()), torch.ones(6))


def test_images_are_decoded_queried_states(worker, batch):
    """images[b, k, q] is the VAE decoding of x0 at queried step q, recomputed here from x_q."""
    from actors.sampling import decode_to_uint8

    pipe = worker.pipe
    embeds = encode_prompts(pipe, PROMPTS).repeat_interleave(2, dim=0)  # (2B, L, D)
    steps = batch.queries.query_steps[0, 1].tolist()
    assert steps == sorted(steps) and len(set(steps)) == 3
    for q_pos, i in enumerate(steps):
        x0 = _rescore(pipe, batch, embeds, i).pred_original_sample
        image = decode_to_uint8(pipe, x0[1:2])[0]  # pair 0, trajectory 1
        assert np.abs(image.astype(int) - batch.queries.images[0, 1, q_pos].astype(int)).max() <= 1


def test_two_steps_without_anchor_query_both_states(tiny_cache):
    """sampling.num_anchors = 0 (T = 2 allowed): each trajectory queries x0_0 and x0_1 only, and the
    1-step state is shared by the pair (one initial noise), the 2-step one is not."""
    w = RolloutWorker(
        model=ModelConfig(tiny_cache_dir=tiny_cache), sampling=SamplingConfig(num_steps=2, num_anchors=0), seed=7
    )
    w.set_weights(PolicyWeights(0, lora_state(w.pipe.unet)))
    b = w.rollout(epoch=0, pair_indices=[0, 1], prompts=PROMPTS[:2], version=0)
    b.trajectories.validate()
    assert b.queries.query_steps.tolist() == [[[0, 1]] * 2] * 2
    assert b.queries.images.shape == (2, 2, 2, 64, 64, 3) and b.queries.similarities.shape == (2, 2, 2, 2)
    assert np.array_equal(b.queries.images[:, 0, 0], b.queries.images[:, 1, 0])
    assert not np.array_equal(b.queries.images[:, 0, 1], b.queries.images[:, 1, 1])


def test_stale_version_is_refused(worker):
    from actors.rollout_worker import StaleWeightsError

    with pytest.raises(StaleWeightsError, match="version"):
        worker.rollout(epoch=0, pair_indices=[0], prompts=["cat"], version=5)


def test_validate_catches_shape_errors(batch):
    import dataclasses

    broken = dataclasses.replace(batch.trajectories, log_probs=batch.trajectories.log_probs[:, :, :-1])
    with pytest.raises(ValueError, match="log_probs"):
        broken.validate()


# ---------------------------------------------------------------- held-out evaluation sampler (eta = 0)


@pytest.mark.parametrize("k", [1, 2, 4, 8])
def test_deterministic_sampler_equals_diffusers_ddim_eta0(worker, k):
    """The evaluation chain equals a loop over diffusers' own DDIMScheduler.step(eta=0) with the same
    UNet calls (k divides 1000, where diffusers' timestep rule is exact), bit for bit."""
    from actors.sampling import sample_deterministic

    pipe = worker.pipe
    ours = sample_deterministic(pipe, PROMPTS, [torch.Generator().manual_seed(s) for s in (1, 2, 3)], k)
    x = torch.stack([torch.randn(4, 16, 16, generator=torch.Generator().manual_seed(s)) for s in (1, 2, 3)])
    embeds = encode_prompts(pipe, PROMPTS)  # (N, L, D)
    pipe.scheduler.set_timesteps(k)
    for t in pipe.scheduler.timesteps:
        with torch.no_grad():
            out = unet_output(pipe.unet, x, t.expand(3), embeds)
        step = pipe.scheduler.step(out, t, x, eta=0.0)
        x, ref = step.prev_sample, step.pred_original_sample
    assert ours.shape == (3, 4, 16, 16)
    assert torch.equal(ours, ref)


def test_evaluate_returns_fixed_images(worker):
    a = worker.evaluate(PROMPTS, [5, 6, 7], 2)
    assert a.shape == (3, 64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, worker.evaluate(PROMPTS, [5, 6, 7], 2))  # deterministic: no step noise
    assert np.array_equal(a[1], worker.evaluate(PROMPTS[1:2], [6], 2)[0])  # a prompt's image ignores its batch
    assert not np.array_equal(a, worker.evaluate(PROMPTS, [8, 9, 10], 2))  # the seeds pick the noise


def test_one_step_eval_is_the_training_one_step_state(worker, batch):
    """From the same initial noise, the 1-step eval sample is training's x0_0 (the 1-step query)."""
    from actors.sampling import pair_generator, sample_deterministic

    gens = [pair_generator(7, 3, i) for i in range(3)]  # the worker's seed 7, epoch 3, pairs 0..2
    images = decode_to_uint8_of(worker, sample_deterministic(worker.pipe, PROMPTS, gens, 1))
    assert np.abs(images.astype(int) - batch.queries.images[:, 0, 0].astype(int)).max() <= 1
    assert np.abs(images.astype(int) - batch.queries.images[:, 1, 0].astype(int)).max() <= 1


def decode_to_uint8_of(worker, latents):
    from actors.sampling import decode_to_uint8

    return decode_to_uint8(worker.pipe, latents)


def test_compile_option_compiles_the_unet_forward(tiny_cache):
    """model.compile wraps the UNet's forward in torch.compile (the module stays what callers hold)."""
    from actors.policy import load_pipeline

    pipe = load_pipeline(ModelConfig(tiny_cache_dir=tiny_cache, compile=True))
    assert hasattr(pipe.unet.forward, "_torchdynamo_orig_callable")
    assert not hasattr(load_pipeline(ModelConfig(tiny_cache_dir=tiny_cache)).unet.forward, "_torchdynamo_orig_callable")


def test_final_queries_score_the_decoded_last_latent(worker, batch):
    """sampling.reward_queries=final (DDPO as ddpo-pytorch): one query per trajectory, the decoded x_T
    (the last latent, after the last step), from the same trajectories as the anchor queries."""
    from actors.sampling import decode_to_uint8

    worker.sampling = SamplingConfig(num_steps=5, reward_queries="final")
    try:
        final = worker.rollout(epoch=3, pair_indices=[0, 1, 2], prompts=PROMPTS, version=0)
    finally:
        worker.sampling = SamplingConfig(num_steps=5)
    assert torch.equal(final.trajectories.latents, batch.trajectories.latents)
    assert final.queries.images.shape == (3, 2, 1, 64, 64, 3) and (final.queries.query_steps == 5).all()
    x_T = decode_to_uint8(worker.pipe, batch.trajectories.latents[:, :, -1].flatten(0, 1)).reshape(3, 2, 64, 64, 3)
    np.testing.assert_array_equal(final.queries.images[:, :, 0], x_T)
    assert not np.array_equal(final.queries.images[:, :, 0], batch.queries.images[:, :, -1])  # not x0_{T-1}


def test_nan_in_the_base_model_is_bad_input_and_later_a_broken_update(tiny_cache):
    """Non-finite samples at policy version 0 (no update yet: the base model) are bad input naming
    model.pretrained (exit 2); after an update they are a run failure pointing at the learning rate."""
    from actors.rollout_worker import BrokenBaseModelError, NonFinitePolicyError
    from plumbing.errors import EXIT_FAILURE, EXIT_USAGE

    w = RolloutWorker(
        model=ModelConfig(tiny_cache_dir=tiny_cache), sampling=SamplingConfig(num_steps=2, num_anchors=0), seed=7
    )
    with torch.no_grad():
        next(w.pipe.unet.conv_out.parameters()).fill_(float("nan"))
    w.set_weights(PolicyWeights(0, lora_state(w.pipe.unet)))
    with pytest.raises(
        BrokenBaseModelError, match="^model.pretrained: the base model samples non-finite latents"
    ) as err:
        w.rollout(epoch=0, pair_indices=[0], prompts=["cat"], version=0)
    assert err.value.exit_code == EXIT_USAGE
    w.set_weights(PolicyWeights(3, lora_state(w.pipe.unet)))
    with pytest.raises(NonFinitePolicyError, match="lower train.learning_rate") as err:
        w.rollout(epoch=3, pair_indices=[0], prompts=["cat"], version=3)
    assert err.value.exit_code == EXIT_FAILURE
