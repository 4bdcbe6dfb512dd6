"""The rollout worker: a plain class (``ray.remote`` is applied where it is launched).
Each method unpacks, calls the core, and packs."""

from __future__ import annotations

import os
import socket
import time

import numpy as np
import torch

from actors.batch import PolicyWeights, RolloutBatch, SparseQueries, Trajectories
from actors.config import ModelConfig, SamplingConfig
from actors.families import family_of
from actors.flops import SampleCounter, denoiser_flops, peak_flops
from actors.policy import denoiser, load_lora_state, load_pipeline
from actors.sampling import (
    decode_to_uint8,
    final_queries,
    pair_generator,
    sample_deterministic,
    sample_pairs,
    sparse_queries,
)
from plumbing.errors import RunFailure, UsageError


class BrokenBaseModelError(UsageError):
    """The base model itself (policy version 0: no update yet) sampled NaN or infinite latents: bad input."""


class StaleWeightsError(RunFailure):
    """Asked to sample with a policy version other than the one loaded (e.g. just restarted by Ray)."""


class NonFinitePolicyError(RunFailure):
    """The policy sampled NaN or infinite latents: its weights are broken (e.g. a learning rate far too large)."""


class RolloutWorker:
    def __init__(
        self,
        *,
        model: ModelConfig,
        sampling: SamplingConfig,
        seed: int,
        device: str = "cpu",
        torch_threads: int = 1,
        pipe=None,
        peak_tflops: float | None = None,
    ):
        """`pipe`: an already loaded pipeline to sample with (the hybrid policy worker shares its own).
        `peak_tflops`: the device's peak, for MFU (default: known GPUs' 16-bit peak, actors/flops.py)."""
        if device == "cpu":
            torch.set_num_threads(torch_threads)
        self.sampling, self.seed = sampling, seed
        self.pipe = pipe if pipe is not None else load_pipeline(model, device)
        self.version = -1
        fam, net = family_of(self.pipe), denoiser(self.pipe)
        self.flops_per_sample = denoiser_flops(fam, self.pipe, with_backward=False) or 0.0
        self.samples = SampleCounter(net)
        self.peak_flops = peak_flops(
            device, next(net.parameters()).dtype in (torch.float16, torch.bfloat16), peak_tflops
        )

    def identity(self) -> str:
        return f"{type(self).__name__}(pid={os.getpid()}, host={socket.gethostname()})"

    def set_weights(self, weights: PolicyWeights) -> int:
        load_lora_state(denoiser(self.pipe), weights.lora)
        self.version = weights.version
        return self.version

    def rollout(self, epoch: int, pair_indices: list[int], prompts: list[str], version: int) -> RolloutBatch:
        """Sample pairs `pair_indices` of `epoch`: (SparseQueries for the driver, Trajectories for the learner)."""
        if version != self.version:
            raise StaleWeightsError(f"{self.identity()} holds policy version {self.version}, asked for {version}")
        start, s = time.perf_counter(), self.sampling
        self.samples.take()  # from here: this rollout's denoiser calls
        gens = [pair_generator(self.seed, epoch, i) for i in pair_indices]
        pairs = sample_pairs(self.pipe, prompts, gens, s.num_steps, s.eta, s.guidance_scale)
        if not (torch.isfinite(pairs.latents).all() and torch.isfinite(pairs.log_probs).all()):
            if self.version == 0:  # no update has touched the LoRA (B = 0): it is the base model
                raise BrokenBaseModelError(
                    f"model.pretrained: the base model samples non-finite latents before any update (epoch {epoch}, "
                    f"{self.identity()}): NaN or inf in its weights, or overflow in its dtype"
                )
            raise NonFinitePolicyError(
                f"{self.identity()}: policy version {self.version} sampled non-finite latents in epoch {epoch}; its "
                "weights are broken (lower train.learning_rate)"
            )
        if s.reward_queries == "final":  # DDPO: the decoded x_T
            query_steps, sims, images = final_queries(self.pipe, pairs.latents)
        else:  # SDPO: x0 of the first step, the anchors and the last step
            query_steps, sims, images = sparse_queries(self.pipe, pairs.pred_x0, s.num_anchors)
        index = torch.tensor(pair_indices)
        trajectories = Trajectories(
            self.version, epoch, index, list(prompts), pairs.timesteps, pairs.latents, pairs.log_probs
        )
        queries = SparseQueries(
            self.version,
            epoch,
            index,
            list(prompts),
            query_steps,
            sims,
            images,
            worker=self.identity(),
            busy_s=time.perf_counter() - start,
            flops=self.samples.take() * self.flops_per_sample,
            peak_flops=self.peak_flops,
        )
        return RolloutBatch(queries.validate(), trajectories.validate())

    def evaluate(self, prompts: list[str], seeds: list[int], num_steps: int) -> np.ndarray:
        """Held-out samples of the loaded policy: the family's deterministic `num_steps`-step sampler from
        the noise of torch.Generator().manual_seed(seeds[n]); uint8 images (N, H, W, 3)."""
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        pred_x0 = sample_deterministic(
            self.pipe, prompts, gens, num_steps, self.sampling.guidance_scale
        )  # (N, C, h, w)
        return decode_to_uint8(self.pipe, pred_x0)
