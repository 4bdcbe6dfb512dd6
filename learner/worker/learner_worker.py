"""The learner worker: LoRA denoiser (UNet or transformer), AdamW, the step-shuffled update with gradient accumulation,
grad-norm clipping, and mixed precision through accelerate on GPU. A plain class; ``ray.remote``
is applied where it is launched.

Data parallelism: the epoch's pairs are split into N shards (rank r of N trains shard r, as each
of the reference's GPUs trains the pairs it sampled). Every shard has its own step-shuffled
schedule; optimizer step k takes the k-th `batch_size x gradient_accumulation_steps` (pair, step)
items of every shard, and the gradient is their mean over the shards (all-reduced across ranks).
A single process given all N shards computes the same update, which is how the in-process run
reproduces an N-rank run.
"""

from __future__ import annotations

import copy
import math
import os
import socket
import time
from collections import defaultdict

import numpy as np
import torch

from actors.batch import PolicyWeights, Trajectories
from actors.config import ModelConfig, SamplingConfig
from actors.families import expand_rows, family_of, repeat_rows, select_rows
from actors.flops import SampleCounter, denoiser_flops, peak_flops
from actors.policy import load_lora_state, load_pipeline, lora_state, save_lora_diffusers
from actors.sampling import score_steps
from learner.algo.minibatches import (
    Minibatch,
    items_per_optimizer_step,
    micro_batches,
    num_train_steps,
    trainable_steps,
    update_schedule,
)
from learner.algo.registry import StepItems, get_algorithm
from learner.algo.sdpo import temporal_weights
from learner.worker.batch import TrainBatch, UpdateRequest, shard_batches
from learner.worker.config import TrainConfig
from learner.worker.distributed import Rank, average_gradients, average_scalars, free_port, init_group, leave_group
from learner.worker.fault_injection import kill_point
from plumbing.errors import RunFailure
from plumbing.seeds import UPDATE, seeded_generator


class StalePolicyError(RunFailure):
    """A batch sampled by a policy version other than the one the learner expects."""


class NonFiniteUpdateError(RunFailure):
    """More optimizer steps than train.max_nonfinite_steps had a non-finite loss or gradient."""


class LearnerWorker:
    def __init__(
        self,
        *,
        model: ModelConfig,
        sampling: SamplingConfig,
        train: TrainConfig,
        seed: int,
        algorithm: str = "sdpo",
        device: str = "cpu",
        torch_threads: int = 1,
        rank: int = 0,
        world_size: int = 1,
        keep_epoch_states: bool = False,
    ):
        from accelerate import Accelerator

        if device == "cpu":
            torch.set_num_threads(torch_threads)
        elif train.allow_tf32:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        precision = train.mixed_precision
        if precision == "auto":
            precision = "fp16" if device == "cuda" else "no"
        self.accelerator = Accelerator(mixed_precision=precision, cpu=device == "cpu")
        self.sampling, self.train, self.seed = sampling, train, seed
        self.algorithm = get_algorithm(algorithm)
        self.pipe = load_pipeline(model, self.accelerator.device, seed=seed)
        self.family = family_of(self.pipe)
        denoiser = self.family.denoiser(self.pipe)  # the UNet or transformer, with the LoRA
        params = [p for p in denoiser.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            params,
            lr=train.learning_rate,
            betas=(train.adam_beta1, train.adam_beta2),
            weight_decay=train.adam_weight_decay,
            eps=train.adam_epsilon,
        )
        # the same module, as accelerate prepared it (its forward under autocast on GPU): one name for both uses
        self.denoiser, self.optimizer = self.accelerator.prepare(denoiser, optimizer)
        sixteen_bit = precision in ("fp16", "bf16") or next(denoiser.parameters()).dtype in (
            torch.float16,
            torch.bfloat16,
        )
        self.flops_per_sample = (
            denoiser_flops(self.family, self.pipe, with_backward=True) or 0.0
        )  # for MFU (actors/flops.py)
        self.samples, self.peak_flops = SampleCounter(self.denoiser), peak_flops(device, sixteen_bit, train.peak_tflops)
        self.params = params
        self.version = 0
        # set after accelerate decided it runs single-process: gradients are averaged by hand
        self.rank, self.device = Rank(rank, world_size), device
        # version -> the state at that version (the last two), on CPU: what a restarted rank takes from
        # this one, and what this one rewinds to when an epoch runs again (learner.driver.recovery)
        self.epoch_states: dict[int, dict] | None = {} if keep_epoch_states else None
        self._keep_epoch_state()

    def join_group(self, address: str) -> int:
        """Join the data-parallel group hosted at `address` ('host:port'); blocks until all ranks join."""
        init_group(self.rank, address, self.device)
        return self.rank.rank

    def leave_group(self) -> None:
        """Leave the data-parallel group (a member was lost; the group is formed again)."""
        leave_group()

    def epoch_state(self, version: int) -> dict | None:
        """The state this rank held at policy `version`, if it still keeps it."""
        return None if self.epoch_states is None else self.epoch_states.get(version)

    def rewind(self, version: int, state: dict | None = None) -> bool:
        """Go back to policy `version`: to `state` (a surviving rank's) if given, else to this rank's
        own kept state of that version; False if it has none."""
        state = state if state is not None else self.epoch_state(version)
        if state is None:
            return False
        self.load_state_dict(copy.deepcopy(state))  # the optimizer would otherwise step the kept tensors in place
        return True

    def _keep_epoch_state(self) -> None:
        if self.epoch_states is not None:
            self.epoch_states = {v: s for v, s in self.epoch_states.items() if v >= self.version - 1} | {
                self.version: self._state()
            }

    def rendezvous(self, host: str = "127.0.0.1") -> str:
        """'host:port' for the group to meet at: `host` is this rank's node address (the launcher knows it)."""
        return f"{host}:{free_port()}"

    def identity(self) -> str:
        rank = f", rank {self.rank.rank} of {self.rank.world_size}" if self.rank.distributed else ""
        return f"{type(self).__name__}(pid={os.getpid()}, host={socket.gethostname()}{rank})"

    def get_weights(self) -> PolicyWeights:
        return PolicyWeights(self.version, lora_state(self.denoiser))

    def save_lora(self, directory: str) -> str:
        return str(save_lora_diffusers(self.denoiser, directory, self.family))

    def state_dict(self) -> dict:
        """What an exact resume needs from the learner, on CPU: policy version, LoRA (peft names),
        and under "trainer" the optimizer and grad-scaler state and the global torch RNG."""
        kill_point("state", self.version, self.rank.rank)
        return self._state()

    def _state(self) -> dict:
        scaler = self.accelerator.scaler
        trainer = {"optimizer": self.optimizer.state_dict(), "torch_rng": torch.get_rng_state()}
        if scaler is not None:
            trainer["scaler"] = scaler.state_dict()
        return {"version": self.version, "lora": lora_state(self.denoiser), "trainer": _to_cpu(trainer)}

    def load_state_dict(self, state: dict) -> int:
        self.optimizer.zero_grad(set_to_none=True)  # gradients of an update that was cut short go too
        load_lora_state(self.denoiser, state["lora"])
        self.optimizer.load_state_dict(state["trainer"]["optimizer"])
        torch.set_rng_state(state["trainer"]["torch_rng"])
        if self.accelerator.scaler is not None and "scaler" in state["trainer"]:
            self.accelerator.scaler.load_state_dict(state["trainer"]["scaler"])
        self.version = int(state["version"])
        self._keep_epoch_state()
        return self.version

    def update(self, request: UpdateRequest, *trajectories: Trajectories) -> dict[str, float]:
        """One policy update (the algorithm's loss) on this process's shards of an epoch sampled with
        the current policy; `trajectories` are chunks holding (at least) those shards' pairs.
        Returns metric means, `busy_s` and the new `policy_version`."""
        start = time.perf_counter()
        self.samples.take()  # from here: this update's denoiser calls
        if request.policy_version != self.version:
            raise StalePolicyError(
                f"{self.identity()} expects data from policy version {self.version}, got {request.policy_version}"
            )
        batches = shard_batches(request, list(trajectories))
        cfg = self.train
        T = batches[0].timesteps.shape[0]
        micro = cfg.micro_batch_size or cfg.batch_size  # M: items per backward pass
        steps = trainable_steps(T, cfg.skip_last_step)  # steps 0 .. steps - 1 are trained on
        name = self.algorithm.schedule if cfg.schedule == "auto" else cfg.schedule
        schedules = [
            update_schedule(
                name,
                b.num_pairs,
                steps,
                cfg.batch_size,
                cfg.timestep_fraction,
                cfg.num_inner_epochs,
                seeded_generator(self.seed, b.epoch, b.shard, UPDATE),
            )
            for b in batches
        ]
        per_step = items_per_optimizer_step(
            name, steps, cfg.batch_size, cfg.gradient_accumulation_steps, cfg.timestep_fraction
        )  # S
        items = request.max_pairs * num_train_steps(steps, cfg.timestep_fraction) * cfg.num_inner_epochs
        embeds = [self.family.encode_prompts(self.pipe, b.prompts) for b in batches]  # each (B_s, ...)
        negative = (
            self.family.encode_prompts(self.pipe, [""]) if self.sampling.guidance_scale > 1 else None
        )  # (1, ...), once
        weights = temporal_weights(T, cfg.lam, cfg.log_scale)  # (T,)
        stats, passes, self._nonfinite = defaultdict(list), 0, 0
        kill_point("update", request.epoch, self.rank.rank)
        self.denoiser.train()
        for k in range(math.ceil(items / per_step)):  # the same number of optimizer steps on every rank
            for batch, schedule, emb in zip(batches, schedules, embeds):
                for mb in micro_batches(schedule, k * per_step, (k + 1) * per_step, micro):
                    res, log_ratio = self._backward(
                        batch, mb, emb, negative, weights, len(mb) / (per_step * len(batches))
                    )
                    passes += 1
                    stats["loss"].append(res.loss.item())
                    stats["clipfrac"].append(res.clipfrac.item())
                    stats["approx_kl"].append(res.approx_kl.item())
                    if passes == 1:  # first pass of a version: the ratio must be exactly 1
                        stats["ratio_first_pass"].append(log_ratio.exp().mean().item())
            norm = self._optimizer_step()
            if math.isfinite(norm):
                stats["grad_norm"].append(norm)
        metrics = {k: float(np.mean(v)) for k, v in stats.items()} | {"backward_passes": float(passes)}
        if (
            self.rank.distributed
        ):  # means over the ranks; backward_passes is their sum, as one process counts all shards
            metrics = average_scalars(metrics, str(self.accelerator.device))
            metrics["backward_passes"] = round(metrics["backward_passes"] * self.rank.world_size)
        self.version += 1  # after the last collective: a rank that reaches here holds the group's new state
        self._keep_epoch_state()
        work = {"busy_s": time.perf_counter() - start, "flops": self.samples.take() * self.flops_per_sample}
        if math.isfinite(self.peak_flops):  # the device's peak is known: MFU's denominator (no NaN in the metrics)
            work["peak_flop_seconds"] = work["busy_s"] * self.peak_flops
        return metrics | {"nonfinite_steps": self._nonfinite, "policy_version": self.version} | work

    def _backward(
        self,
        batch: TrainBatch,
        mb: Minibatch,
        embeds: torch.Tensor,
        negative: torch.Tensor | None,
        weights: torch.Tensor,
        scale: float,
    ):
        """Recompute the log-probs of M pairs at one step each and backpropagate `scale` x their loss;
        (the loss terms, the detached log-ratios new - old (M, 2))."""
        dev = self.accelerator.device
        idx, steps = mb.sample_index, mb.step_index  # (M,), (M,)
        rows, cols = idx[:, None], steps[:, None]  # (M, 1) each, broadcast over the pair axis
        pair = torch.arange(2)[None, :]  # (1, 2)
        x = batch.latents[rows, pair, cols].flatten(0, 1).to(dev)  # (2M, C, h, w)
        x_next = batch.latents[rows, pair, cols + 1].flatten(0, 1).to(dev)  # (2M, C, h, w)
        step_idx = steps.repeat_interleave(2)  # (2M,)
        cond = repeat_rows(select_rows(embeds, idx), 2)  # (2M, ...)
        neg = expand_rows(negative, len(step_idx)) if negative is not None else None  # (2M, ...)
        with self.accelerator.autocast():  # the step arithmetic inside stays float32 (it upcasts first)
            new_lp = score_steps(
                self.denoiser,
                self.pipe.scheduler,
                x,
                x_next,
                step_idx,
                batch.timesteps,
                cond,
                self.sampling.eta,
                self.sampling.guidance_scale,
                neg,
                family=self.family,
            ).log_prob.view(-1, 2)  # (M, 2)
        old_lp = batch.log_probs[rows, pair, cols].to(dev)  # (M, 2)
        adv = batch.advantages[rows, pair, cols].to(dev)  # (M, 2)
        res = self.algorithm.loss(StepItems(new_lp, old_lp, adv, weights[steps].to(dev)), self.train.clip_range)
        self.accelerator.backward(res.loss * scale)
        return res, (new_lp - old_lp).detach()

    def _optimizer_step(self) -> float:
        if self.rank.distributed:
            average_gradients(self.params, self.rank.world_size)  # before unscaling/clipping: all ranks agree
        norm = float(self.accelerator.clip_grad_norm_(self.params, self.train.max_grad_norm))
        if not math.isfinite(norm) and self.accelerator.scaler is None:  # (a grad scaler skips such steps itself)
            self.optimizer.zero_grad(set_to_none=True)  # skip the step: the weights stay finite
            self._nonfinite += 1
            if self._nonfinite > self.train.max_nonfinite_steps:
                raise NonFiniteUpdateError(
                    f"{self.identity()}: {self._nonfinite} optimizer steps of policy version {self.version} had a "
                    f"non-finite loss or gradient (train.max_nonfinite_steps={self.train.max_nonfinite_steps}); lower "
                    "train.learning_rate or check the rewards. Nothing of this update was checkpointed"
                )
            return norm
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm


def _to_cpu(tree):
    """A copy of a nest of dicts/lists/tuples with every tensor moved to the CPU."""
    if isinstance(tree, torch.Tensor):
        return tree.detach().to("cpu", copy=True)
    if isinstance(tree, dict):
        return {k: _to_cpu(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_to_cpu(v) for v in tree)
    return tree
