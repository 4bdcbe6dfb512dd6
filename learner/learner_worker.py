"""The learner worker: LoRA UNet, AdamW, gradient accumulation, grad-norm clip, and mixed precision
through accelerate on GPU. A plain class; ``ray.remote`` is applied where it is launched."""

from __future__ import annotations

import os
import socket
from collections import defaultdict

import numpy as np
import torch

from actors.batch import PolicyWeights
from actors.config import ModelConfig, SamplingConfig
from actors.policy import encode_prompts, load_lora_state, load_pipeline, lora_state, save_lora_diffusers
from actors.sampling import score_steps
from learner.algorithms import policy_loss
from learner.batch import TrainBatch
from learner.config import TrainConfig
from learner.distributed import Rank, average_gradients, average_scalars, init_group
from learner.minibatches import step_shuffled_minibatches
from learner.objective import temporal_weights


class StalePolicyError(RuntimeError):
    """A batch sampled by a policy version other than the one the learner expects."""


def update_generator(seed: int, epoch: int) -> torch.Generator:
    state = np.random.SeedSequence([seed, epoch, 0x5D90]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)


class LearnerWorker:
    def __init__(
        self,
        model: ModelConfig,
        sampling: SamplingConfig,
        train: TrainConfig,
        seed: int,
        device: str = "cpu",
        torch_threads: int = 1,
        algorithm: str = "sdpo",
        rank: int = 0,
        world_size: int = 1,
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
        self.algorithm, self.policy_loss = algorithm, policy_loss(algorithm)
        self.pipe = load_pipeline(model, self.accelerator.device, seed=seed)
        params = [p for p in self.pipe.unet.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            params,
            lr=train.learning_rate,
            betas=(train.adam_beta1, train.adam_beta2),
            weight_decay=train.adam_weight_decay,
            eps=train.adam_epsilon,
        )
        self.unet, self.optimizer = self.accelerator.prepare(self.pipe.unet, optimizer)
        self.params = params
        self.version = 0
        # set after accelerate decided it runs single-process: gradients are averaged by hand
        self.rank, self.device = Rank(rank, world_size), device

    def join_group(self, address: str) -> int:
        """Join the data-parallel group hosted at `address` ('host:port'); blocks until all ranks join."""
        init_group(self.rank, address, self.device)
        return self.rank.rank

    def rendezvous(self) -> str:
        from learner.distributed import free_address

        host, port = free_address()
        return f"{host}:{port}"

    def identity(self) -> str:
        return f"LearnerWorker(pid={os.getpid()}, host={socket.gethostname()})"

    def get_weights(self) -> PolicyWeights:
        return PolicyWeights(self.version, lora_state(self.pipe.unet))

    def save_lora(self, directory: str) -> str:
        return str(save_lora_diffusers(self.pipe.unet, directory))

    def state_dict(self) -> dict:
        """What an exact resume needs from the learner, on CPU: policy version, LoRA (peft names),
        and under "trainer" the optimizer and grad-scaler state and the global torch RNG."""
        scaler = self.accelerator.scaler
        trainer = {"optimizer": self.optimizer.state_dict(), "torch_rng": torch.get_rng_state()}
        if scaler is not None:
            trainer["scaler"] = scaler.state_dict()
        return {"version": self.version, "lora": lora_state(self.pipe.unet), "trainer": _to_cpu(trainer)}

    def load_state_dict(self, state: dict) -> int:
        load_lora_state(self.pipe.unet, state["lora"])
        self.optimizer.load_state_dict(state["trainer"]["optimizer"])
        torch.set_rng_state(state["trainer"]["torch_rng"])
        if self.accelerator.scaler is not None and "scaler" in state["trainer"]:
            self.accelerator.scaler.load_state_dict(state["trainer"]["scaler"])
        self.version = int(state["version"])
        return self.version

    def update(self, batch: TrainBatch) -> dict[str, float]:
        """One policy update (the `algorithm`'s loss) on a batch sampled with the current policy; returns metric means."""
        if batch.policy_version != self.version:
            raise StalePolicyError(
                f"{self.identity()} expects data from policy version {self.version}, got {batch.policy_version}"
            )
        batch.validate()
        cfg, dev = self.train, self.accelerator.device
        sched = self.pipe.scheduler
        T = batch.timesteps.shape[0]
        embeds = encode_prompts(self.pipe, batch.prompts)  # (B, L, D)
        negative = encode_prompts(self.pipe, [""]) if self.sampling.guidance_scale > 1 else None
        weights = temporal_weights(T, cfg.lam, cfg.log_scale)  # (T,)
        gen = update_generator(self.seed, batch.epoch)
        stats, passes = defaultdict(list), 0
        self.unet.train()
        for _ in range(cfg.num_inner_epochs):
            world = self.rank.world_size
            for mb in step_shuffled_minibatches(batch.num_pairs, T, cfg.batch_size * world, cfg.timestep_fraction, gen):
                idx, steps = self.rank.shard(mb.sample_index, cfg.batch_size), self.rank.shard(mb.step_index, cfg.batch_size)  # (M,), (M,)
                rows, cols = idx[:, None], steps[:, None]  # (M, 1) each, broadcast over the pair axis
                pair = torch.arange(2)[None, :]  # (1, 2)
                x = batch.latents[rows, pair, cols].flatten(0, 1).to(dev)  # (2M, C, h, w)
                x_next = batch.latents[rows, pair, cols + 1].flatten(0, 1).to(dev)  # (2M, C, h, w)
                step_idx = steps.repeat_interleave(2)  # (2M,)
                cond = embeds[idx].repeat_interleave(2, dim=0)  # (2M, L, D)
                neg = negative.expand(len(step_idx), -1, -1) if negative is not None else None
                with self.accelerator.autocast():  # the DDIM arithmetic inside stays float32 (it upcasts first)
                    new_lp = score_steps(
                        self.unet, sched, x, x_next, step_idx, batch.timesteps, cond, self.sampling.eta,
                        self.sampling.guidance_scale, neg,
                    ).log_prob.view(-1, 2)  # (M, 2)
                old_lp = batch.log_probs[rows, pair, cols].to(dev)  # (M, 2)
                adv = batch.advantages[rows, pair, cols].to(dev)  # (M, 2)
                res = self.policy_loss(new_lp, old_lp, adv, weights[steps].to(dev), cfg.clip_range)
                self.accelerator.backward(res.loss / cfg.gradient_accumulation_steps)
                passes += 1
                if passes % cfg.gradient_accumulation_steps == 0:
                    stats["grad_norm"].append(self._optimizer_step())
                stats["loss"].append(res.loss.item())
                stats["clipfrac"].append(res.clipfrac.item())
                stats["approx_kl"].append(res.approx_kl.item())
                if passes == 1:  # first pass of a version: the ratio must be exactly 1
                    stats["ratio_first_pass"].append((new_lp - old_lp).exp().mean().item())
        if passes % cfg.gradient_accumulation_steps:
            stats["grad_norm"].append(self._optimizer_step())  # never carry gradients into the next version
        self.version += 1
        metrics = {k: float(np.mean(v)) for k, v in stats.items()}
        if self.rank.distributed:
            metrics = average_scalars(metrics, str(dev))
        return metrics | {"backward_passes": float(passes)}

    def _optimizer_step(self) -> float:
        if self.rank.distributed:
            average_gradients(self.params, self.rank.world_size)  # before unscaling/clipping: all ranks agree
        norm = self.accelerator.clip_grad_norm_(self.params, self.train.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)


def _to_cpu(tree):
    """A copy of a nest of dicts/lists/tuples with every tensor moved to the CPU."""
    if isinstance(tree, torch.Tensor):
        return tree.detach().to("cpu", copy=True)
    if isinstance(tree, dict):
        return {k: _to_cpu(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_to_cpu(v) for v in tree)
    return tree
