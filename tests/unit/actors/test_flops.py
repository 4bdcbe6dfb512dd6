"""MFU's parts (actors/flops.py): FLOPs counted by hand for a known layer stack, the per-sample count of
the tiny families' denoisers, the sample counter, and the peak table."""

from __future__ import annotations

import math

import pytest
import torch

from actors.flops import SampleCounter, count_flops, denoiser_flops, mfu, peak_flops


def test_flops_of_a_known_layer_stack_by_hand():
    stack = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    x = torch.randn(4, 16)
    # forward: 2 * batch * in * out per matmul = 2*4*16*32 + 2*4*32*8 = 4096 + 2048
    assert count_flops(lambda: stack(x)) == 6144
    # backward: the weight gradients (the same count again) and the input gradient of the second layer
    # (2*4*8*32 = 2048; the first layer's input needs none): 6144 + 6144 + 2048
    assert count_flops(lambda: stack(x).sum().backward()) == 6144 + 6144 + 2048


def test_the_sample_counter_counts_every_call_by_its_batch():
    layer = torch.nn.Linear(4, 4)
    counter = SampleCounter(layer)
    layer(torch.zeros(3, 4))
    layer(input=torch.zeros(5, 4))
    assert counter.take() == 8 and counter.take() == 0


@pytest.mark.parametrize("family", ["sd", "flux", "flux2_klein", "sana_sprint"])
def test_a_tiny_denoiser_sample_is_counted_without_touching_training(
    family, tiny_dir, tiny_flux_dir, tiny_flux2_klein_dir, tiny_sana_sprint_dir
):
    from actors.config import ModelConfig
    from actors.families import family_of
    from actors.policy import denoiser, load_pipeline

    dirs = {
        "sd": tiny_dir,
        "flux": tiny_flux_dir,
        "flux2_klein": tiny_flux2_klein_dir,
        "sana_sprint": tiny_sana_sprint_dir,
    }
    pipe = load_pipeline(ModelConfig(pretrained=dirs[family], resolution=32))
    state = torch.random.get_rng_state()
    fwd = denoiser_flops(family_of(pipe), pipe, with_backward=False)
    both = denoiser_flops(family_of(pipe), pipe, with_backward=True)
    assert torch.equal(torch.random.get_rng_state(), state)  # no draw from the global RNG
    assert fwd > 0 and 1.5 * fwd < both < 4 * fwd  # a backward costs one to two forwards
    assert all(p.grad is None for p in denoiser(pipe).parameters())


def test_peak_and_mfu():
    assert peak_flops("cpu", sixteen_bit=True, override_tflops=2.0) == 2e12
    assert math.isnan(peak_flops("cpu", sixteen_bit=True))  # a CPU's peak is not in the table
    assert mfu(1e12, 4e12) == 0.25 and mfu(1e12, float("nan")) is None and mfu(0.0, 1e12) is None
