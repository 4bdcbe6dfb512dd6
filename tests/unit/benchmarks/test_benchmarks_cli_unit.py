"""benchmarks/layout.py's epoch model, in-process (its CLI runs in tests/e2e/benchmarks/test_benchmarks_cli.py)."""

from __future__ import annotations

import pytest


def test_layout_model_hand_worked():
    """rates 2 pairs/s rollout, 0.5 update (micro 2), 1.0 (micro 8), per GPU; 4 policy GPUs, 32 pairs each:
    reference = 32/2 + 32/0.5 = 16 + 64 = 80 s; hybrid micro 8 = 16 + 32 = 48 s (0.6 of it), all GPUs busy;
    disaggregated = 4 rollout GPUs + 1 learner on 128 pairs: 128/(4*2) + 128/1 = 16 + 128 = 144 s, and its
    5 GPUs work 128/2 + 128/1 = 192 GPU-s of 5 x 144 = 720: 26.7 % busy (communication adds < 0.1 s)."""
    from benchmarks.layout import model_epoch

    rates = {
        "rollout": 2.0,
        "update_micro2": 0.5,
        "update_micro8": 1.0,
        "rollout_compiled": 2.0,
        "update_compiled_micro8": 1.0,
    }
    ref, hyb, dis = (model_epoch(name, 4, rates) for name in ("reference", "hybrid_micro8", "disaggregated"))
    assert ref["epoch_s"] == pytest.approx(80.0, abs=0.1) and hyb["epoch_s"] == pytest.approx(48.0, abs=0.1)
    assert hyb["busy_fraction"] == pytest.approx(1.0, abs=0.002)
    assert dis["gpus"] == 5 and dis["epoch_s"] == pytest.approx(144.0, abs=0.2)
    assert dis["busy_fraction"] == pytest.approx(192 / 720, abs=0.002)
