"""The config section the learner workers consume: the policy update (`train`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from plumbing.config import Section


class TrainConfig(Section):
    learning_rate: float = Field(1e-4, gt=0, description="AdamW learning rate.")
    peak_tflops: float | None = Field(
        None,
        gt=0,
        le=1_000_000,
        description="Peak TFLOP/s of one device, for the mfu_rollout / mfu_update metrics; None: "
        "the dense 16-bit peak of a known GPU when the model computes in float16/bfloat16, else MFU is not reported.",
    )
    adam_beta1: float = Field(0.9, ge=0, lt=1, description="AdamW beta1.")
    adam_beta2: float = Field(0.999, ge=0, lt=1, description="AdamW beta2.")
    adam_weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay.")
    adam_epsilon: float = Field(1e-8, gt=0, description="AdamW epsilon.")
    batch_size: int = Field(
        2,
        ge=1,
        le=65536,
        description="Pairs per minibatch, as the reference counts it: each rank's optimizer step averages "
        "batch_size x gradient_accumulation_steps (pair, step) samples.",
    )
    gradient_accumulation_steps: int = Field(
        8, ge=1, le=1_000_000, description="Minibatches per optimizer step (per rank)."
    )
    micro_batch_size: int | None = Field(
        None,
        ge=1,
        le=65536,
        description="Pairs in one backward pass (None = batch_size). Changes speed, not the math: the same "
        "samples share each optimizer step. Must divide batch_size x gradient_accumulation_steps.",
    )
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient-norm clip.")
    max_nonfinite_steps: int = Field(
        3,
        ge=0,
        le=1_000_000,
        description="Optimizer steps per update that may be skipped for a non-finite loss or gradient (metric "
        "nonfinite_steps); one more stops the run (exit 1) before anything is checkpointed. Under fp16 the grad "
        "scaler's own skipped steps (overflow while it calibrates its scale) are normal and not counted.",
    )
    num_inner_epochs: int = Field(1, ge=1, le=1000, description="Passes over each epoch's samples.")
    timestep_fraction: float = Field(1.0, gt=0, le=1, description="Fraction of the T permuted steps trained on.")
    skip_last_step: bool = Field(
        False,
        description="Leave the last transition (x_{T-1} -> x_T) out of the update. No reward sees its action: r_last "
        "scores x0_{T-1}, computed before it (SDPO and this DDPO alike), so its loss term is pure noise, and with the "
        "last step's small sigma a large one. Off (all T steps) as the reference trains; docs/shapes.md measures it.",
    )
    schedule: Literal["auto", "step_shuffled", "trajectory"] = Field(
        "auto",
        description="Which (pair, step) items share an optimizer step. 'step_shuffled' (the SDPO reference): each "
        "takes batch_size x gradient_accumulation_steps items, steps of many pairs mixed; 'trajectory' "
        "(ddpo-pytorch): each takes every trained step of batch_size x gradient_accumulation_steps pairs. 'auto': the "
        "algorithm's own (SDPO: step_shuffled, DDPO: trajectory); DDPO with step_shuffled is the ablation that gives "
        "DDPO SDPO's schedule.",
    )
    clip_range: float = Field(
        1e-4,
        ge=0,
        description="SDPO: new log-probs clamped to old +- this in the clipped loss; DDPO: ratio clipped to 1 +- this "
        "(0 = off).",
    )
    adv_clip_max: float = Field(5.0, gt=0, description="Advantages clipped to [-adv_clip_max, adv_clip_max].")
    lam: float = Field(0.99, gt=0, le=1, description="Temporal weight base: w_j = lam**j / log_scale.")
    log_scale: float = Field(1.0, gt=0, description="Temporal weight divisor.")
    gamma: float = Field(0.99, ge=0, le=1, description="Discount of the dense rewards (0 = rewards as they are).")
    per_step_stat_tracking: bool = Field(
        True, description="Normalize returns per (prompt, step) (DDPO: final rewards per prompt); else over the batch."
    )
    stat_buffer_size: int = Field(
        32, ge=1, le=1_000_000, description="FIFO size per (prompt, step) in the stat tracker."
    )
    stat_min_count: int = Field(
        16, ge=1, le=1_000_000, description="Values needed before a (prompt, step) uses its own stats."
    )
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = Field(
        "auto", description="accelerate mixed precision; 'auto' = fp16 on GPU, none on CPU."
    )
    allow_tf32: bool = Field(True, description="Allow TF32 matmuls on Ampere+ GPUs.")

    @model_validator(mode="after")
    def _min_count_fits(self) -> "TrainConfig":
        if self.stat_min_count > self.stat_buffer_size:
            raise ValueError("train.stat_min_count must not exceed train.stat_buffer_size")
        if self.micro_batch_size and (self.batch_size * self.gradient_accumulation_steps) % self.micro_batch_size:
            raise ValueError(
                f"train.micro_batch_size ({self.micro_batch_size}) must divide train.batch_size x "
                f"train.gradient_accumulation_steps ({self.batch_size * self.gradient_accumulation_steps})"
            )
        return self
