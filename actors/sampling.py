"""Dual-state trajectory pair sampling (spec section 2) over a diffusers pipeline of any model family
(actors.families): the family encodes the prompts, calls the denoiser and takes the policy step.

Each pair shares one initial noise x_0 and runs two trajectories with independent step noise.
All randomness of pair b comes from its own torch.Generator, so a pair's samples do not depend on
which worker draws it or in which order workers finish.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from actors.families import FAMILIES, ModelFamily, PolicyStep, expand_rows, family_of, repeat_rows
from actors.families.base import Conditioning
from actors.similarity import select_anchors
from plumbing.seeds import seeded_generator


class SampledPairs(NamedTuple):
    timesteps: torch.Tensor  # (T,)
    latents: torch.Tensor  # (B, 2, T+1, C, h, w)
    log_probs: torch.Tensor  # (B, 2, T)
    pred_x0: torch.Tensor  # (B, 2, T, C, h, w)


def pair_generator(seed: int, epoch: int, pair_index: int) -> torch.Generator:
    """The generator of one pair, from (seed, epoch, pair index) only."""
    return seeded_generator(seed, epoch, pair_index)


def latent_shape(pipe) -> tuple[int, int, int]:
    """(C, h, w) of the pipeline's latents at the configured resolution."""
    return family_of(pipe).latent_shape(pipe)


def initial_noise(pipe, generators: list[torch.Generator]) -> torch.Tensor:
    """x_0 ~ N(0, I) scaled by the scheduler's init sigma, the FIRST draw of each generator: (N, C, h, w)."""
    x0 = torch.stack([torch.randn(latent_shape(pipe), generator=g) for g in generators])  # (N, C, h, w)
    return x0 * getattr(pipe.scheduler, "init_noise_sigma", 1.0)


@torch.no_grad()
def sample_pairs(
    pipe,
    prompts: list[str],
    generators: list[torch.Generator],
    num_steps: int,
    eta: float,
    guidance_scale: float = 1.0,
) -> SampledPairs:
    """Sample B = len(prompts) trajectory pairs; generators[b] drives every draw of pair b."""
    fam = family_of(pipe)
    net = fam.denoiser(pipe)
    B, device, dtype = len(prompts), net.device, net.dtype
    shape = latent_shape(pipe)
    embeds = repeat_rows(fam.encode_prompts(pipe, prompts), 2)  # (2B, ...): pair-major
    # the empty prompt encoded once and seen as 2B rows, exactly as the learner's rescoring builds it
    negative = expand_rows(fam.encode_prompts(pipe, [""]), 2 * B) if guidance_scale > 1 else None
    sched = pipe.scheduler
    timesteps = fam.set_timesteps(sched, num_steps)  # (T,)
    # x_0: one draw per pair, shared by its two trajectories
    x = initial_noise(pipe, generators).repeat_interleave(2, dim=0).to(device, dtype)  # (2B, C, h, w)
    latents, log_probs, pred_x0 = [x], [], []
    for i, t in enumerate(timesteps):
        out = fam.denoise(net, x, t.expand(2 * B).to(device), embeds, guidance_scale, negative)
        noise = torch.stack([torch.randn((2, *shape), generator=g) for g in generators])  # (B, 2, C, h, w)
        step = fam.step_with_logprob(
            sched,
            out,
            x,
            torch.full((2 * B,), i),
            timesteps,
            eta,
            noise=noise.flatten(0, 1).to(device),  # (2B, C, h, w)
        )
        x = step.next_sample
        latents.append(x)
        log_probs.append(step.log_prob)
        pred_x0.append(step.pred_original_sample)
    to_pairs = lambda seq: torch.stack(seq, dim=1).unflatten(0, (B, 2)).cpu()  # noqa: E731  (2B, S, ...) -> (B, 2, S, ...)
    return SampledPairs(timesteps, to_pairs(latents).float(), to_pairs(log_probs).float(), to_pairs(pred_x0))


def score_steps(
    denoiser,
    scheduler,
    x: torch.Tensor,
    x_next: torch.Tensor,
    step_index: torch.Tensor,
    timesteps: torch.Tensor,
    embeds: Conditioning,
    eta: float,
    guidance_scale: float = 1.0,
    negative_embeds: Conditioning | None = None,
    family: ModelFamily | None = None,
) -> PolicyStep:
    """Rescore stored actions under the current denoiser: the policy step x_i (N, C, h, w) -> x_{i+1}
    (N, C, h, w) at per-sample step indices (N,) into `timesteps` (T,), with the conditioning `embeds`
    (N, ...). The learner's log-prob recomputation; the same family code (denoiser call and step
    arithmetic) as sampling. `family`: the model family (None: Stable Diffusion)."""
    fam = family or FAMILIES["sd"]
    out = fam.denoise(denoiser, x, timesteps[step_index].to(x.device), embeds, guidance_scale, negative_embeds)
    return fam.step_with_logprob(scheduler, out, x, step_index, timesteps, eta, next_sample=x_next)


@torch.no_grad()
def sample_deterministic(
    pipe, prompts: list[str], generators: list[torch.Generator], num_steps: int, guidance_scale: float = 1.0
) -> torch.Tensor:
    """The held-out evaluation sampler: the family's deterministic chain (DDIM at eta = 0, or the flow
    ODE's Euler steps) from x_0 = the first draw of generators[n] (as in sample_pairs), over the same
    prompt encoding, denoiser call and step arithmetic as training. Returns the predicted clean state
    of the last step, x0_{k-1}, (N, C, h, w): the state whose decoding training scores as the k-step
    sample (x0_0 for k = 1)."""
    fam = family_of(pipe)
    net = fam.denoiser(pipe)
    N, device, dtype = len(prompts), net.device, net.dtype
    embeds = fam.encode_prompts(pipe, prompts)  # (N, ...)
    negative = expand_rows(fam.encode_prompts(pipe, [""]), N) if guidance_scale > 1 else None
    sched = pipe.scheduler
    timesteps = fam.set_timesteps(sched, num_steps)  # (k,)
    x = initial_noise(pipe, generators).to(device, dtype)  # (N, C, h, w)
    pred_x0 = x
    for i, t in enumerate(timesteps):
        out = fam.denoise(net, x, t.expand(N).to(device), embeds, guidance_scale, negative)
        x, pred_x0 = fam.step(sched, out, x, torch.full((N,), i), timesteps)
    return pred_x0.cpu()


@torch.no_grad()
def decode_to_uint8(pipe, latents: torch.Tensor, chunk: int = 16) -> np.ndarray:
    """VAE-decode latents (N, C, h, w) to uint8 images (N, H, W, 3), as the family's pipeline decodes
    (undoing the VAE's scaling and shift, or FLUX.2's latent normalization)."""
    fam, images = family_of(pipe), []
    for start in range(0, latents.shape[0], chunk):
        img = fam.decode(pipe, latents[start : start + chunk]).float()  # (n, 3, H, W) in about [-1, 1]
        img = ((img / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
        images.append(img.permute(0, 2, 3, 1).cpu().numpy())  # (n, H, W, 3)
    return np.concatenate(images)


def sparse_queries(pipe, pred_x0: torch.Tensor, num_anchors: int):
    """Anchors and the decoded images of the queried states.

    pred_x0 (B, 2, T, C, h, w) -> query_steps (B, 2, K+2), similarities (B, 2, K+2, T),
    images (B, 2, K+2, H, W, 3) uint8.
    """
    B, P, T = pred_x0.shape[:3]
    flat = pred_x0.flatten(0, 1)  # (2B, T, C, h, w)
    sel = select_anchors(flat, num_anchors)
    Q = sel.query_steps.shape[1]
    queried = flat[torch.arange(B * P)[:, None], sel.query_steps]  # (2B, K+2, C, h, w)
    images = decode_to_uint8(pipe, queried.flatten(0, 1))  # (2B*(K+2), H, W, 3)
    return (
        sel.query_steps.unflatten(0, (B, P)),
        sel.similarities.unflatten(0, (B, P)),
        images.reshape(B, P, Q, *images.shape[1:]),
    )


def final_queries(pipe, latents: torch.Tensor):
    """The final-sample query of DDPO as ddpo-pytorch scores it: the decoded last latent x_T of each
    trajectory (not a predicted clean state). latents (B, 2, T+1, C, h, w) -> query_steps (B, 2, 1)
    (= T, the index of x_T among the latents), similarities (B, 2, 1, T) (ones: no dense fill),
    images (B, 2, 1, H, W, 3) uint8."""
    B, P, T1 = latents.shape[:3]
    images = decode_to_uint8(pipe, latents[:, :, -1].flatten(0, 1))  # (2B, H, W, 3)
    return (
        torch.full((B, P, 1), T1 - 1, dtype=torch.long),
        torch.ones((B, P, 1, T1 - 1)),
        images.reshape(B, P, 1, *images.shape[1:]),
    )
