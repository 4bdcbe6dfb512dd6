"""Model FLOP utilization (MFU): the denoiser's FLOPs per sample, counted once by torch, times the
samples it processed, over busy time and the device's peak.

    MFU = (denoiser samples x FLOPs per sample) / (busy seconds x peak FLOP/s)

FLOPs per sample are counted at batch 1 with torch's FlopCounterMode on the eager module (a compiled
forward is bypassed for the count): one forward (rollout), and one forward and backward with the
LoRA's gradients (update). Every denoiser call is counted by a forward pre-hook (the batch size of
its first tensor argument), so classifier-free guidance, chunking and micro-batching count as they
run. Matmuls, convolutions and attention are what FlopCounterMode counts; element-wise work is
left out, as in every MFU figure. Peak: `train.peak_tflops`, or the dense 16-bit tensor-core peak of
a known GPU (PEAK_TFLOPS) when the model runs in float16 or bfloat16; otherwise unknown, and MFU is
not reported.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

# Dense fp16/bf16 tensor-core peak TFLOP/s by device-name fragment (vendor datasheets, no sparsity);
# the first fragment found in torch.cuda.get_device_name() wins.
PEAK_TFLOPS = {
    "H200": 989.0,
    "H100 SXM": 989.0,
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10G": 125.0,
    "A10": 125.0,
    "4090": 165.0,
}


def peak_flops(device: torch.device | str, sixteen_bit: bool, override_tflops: float | None = None) -> float:
    """The device's peak FLOP/s: the override, else the table's for 16-bit compute (a float16 or
    bfloat16 model, or mixed precision) on a known GPU, else NaN (unknown)."""
    if override_tflops is not None:
        return override_tflops * 1e12
    device = torch.device(device)
    if device.type != "cuda" or not sixteen_bit:
        return float("nan")
    name = torch.cuda.get_device_name(device)
    return next((v * 1e12 for k, v in PEAK_TFLOPS.items() if k in name), float("nan"))


def count_flops(fn) -> int:
    """FLOPs torch counts while running `fn()` (its backward too, if `fn` runs one)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


class SampleCounter:
    """Counts the samples a module's forward calls process (the batch size of each call's first
    tensor argument), through a forward pre-hook. `take()` returns the count since the last take."""

    def __init__(self, module: torch.nn.Module):
        self.samples = 0
        self._handle = module.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module, args, kwargs) -> None:
        first = next((a for a in (*args, *kwargs.values()) if torch.is_tensor(a)), None)
        if first is not None and first.ndim > 0:
            self.samples += int(first.shape[0])

    def take(self) -> int:
        n, self.samples = self.samples, 0
        return n


def denoiser_flops(family, pipe, with_backward: bool) -> float | None:
    """FLOPs of one denoiser sample: a forward, or (`with_backward`) a forward and backward with the
    LoRA's gradients. Counted on the eager module at batch 1 with no effect on training: the global
    RNG is untouched, the module is in eval mode meanwhile and the gradients are cleared. None (and
    one warning) if torch cannot count it."""
    denoiser = family.denoiser(pipe)
    device, dtype = next(denoiser.parameters()).device, next(denoiser.parameters()).dtype
    compiled = denoiser.__dict__.get("forward")
    eager = getattr(compiled, "_torchdynamo_orig_callable", None)
    was_training = denoiser.training
    try:
        if eager is not None:
            denoiser.forward = eager
        denoiser.eval()
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(1, *family.latent_shape(pipe), generator=gen).to(device, dtype)
        t = torch.full((1,), 500, device=device)
        cond = family.encode_prompts(pipe, ["a photo"])

        def forward():
            with torch.no_grad():
                family.predict(denoiser, x, t, cond)

        def forward_backward():
            family.predict(denoiser, x, t, cond).float().square().mean().backward()

        return float(count_flops(forward_backward if with_backward else forward))
    except Exception as err:  # an op torch cannot count, a family that needs more inputs: no MFU, no failure
        log.warning("cannot count the denoiser's FLOPs (%s: %s); MFU is not reported", type(err).__name__, err)
        return None
    finally:
        for p in denoiser.parameters():
            p.grad = None
        denoiser.train(was_training)
        if eager is not None:
            denoiser.forward = compiled


def mfu(flops: float, peak_flop_seconds: float) -> float | None:
    """FLOPs over peak FLOP-seconds (the sum over workers of busy seconds x peak FLOP/s); None when
    a peak is unknown (NaN) or nothing was timed."""
    if not peak_flop_seconds > 0 or not flops > 0:
        return None
    return flops / peak_flop_seconds
