"""benchmarks/gpu_throughput.py's configs, in-process: the preset each family is measured with (the
module run as a command, off the GPU, is tests/e2e/benchmarks/test_gpu_throughput.py)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("family", ["sd", "sdxl", "flux", "flux2_klein", "sana_sprint"])
def test_every_family_preset_loads_into_the_benchmark_config(family):
    """The preset each family is measured with, and the settings the benchmark takes from it."""
    import argparse

    from benchmarks.gpu_throughput import PRESETS, configs

    args = argparse.Namespace(
        preset=None,
        no_compile=True,
        resolution=None,
        steps=None,
        train_steps=1,
        train_batch=None,
        micro_batch=None,
        device="cuda",
        pairs=None,
    )
    cfg, model, sampling, train, chunk, pairs = configs(family, args)
    assert cfg.name == PRESETS[family] and model.compile is False and model.resolution == cfg.model.resolution
    assert chunk == pairs == cfg.rollout.chunk_size and int(sampling.num_steps * train.timestep_fraction) == 1
