"""benchmarks/stats.py: paired t, intervals and the replication's decision rule, on hand-made numbers."""

from __future__ import annotations

import math

import pytest

from benchmarks.stats import decide, paired, t975


def test_paired_statistics_hand_worked():
    # d = (0.1, 0.2, 0.3): mean 0.2, sd 0.1, se 0.1 / sqrt(3) = 0.057735, t = 3.4641, t_{0.975, 2} = 4.303
    p = paired([1.1, 1.2, 1.3], [1.0, 1.0, 1.0])
    assert p.n == 3 and p.mean == pytest.approx(0.2) and p.se == pytest.approx(0.0577350, rel=1e-5)
    assert p.t == pytest.approx(3.4641016, rel=1e-6)
    assert p.low == pytest.approx(0.2 - 4.303 * 0.0577350, rel=1e-5) and p.high == pytest.approx(
        0.2 + 4.303 * 0.0577350, rel=1e-5
    )
    # pairing matters: the same values unpaired would have a large spread; paired they agree exactly
    q = paired([5.0, 1.0, 3.0], [4.0, 0.0, 2.0])
    assert q.mean == 1.0 and q.se == 0.0 and q.t == math.inf and q.low == q.high == 1.0
    assert math.isnan(paired([1.0, 2.0], [1.0, 2.0]).t)


def test_t_quantiles_and_bad_input():
    assert t975(4) == 2.776 and t975(1) == 12.706 and t975(100) == 1.96
    with pytest.raises(ValueError, match="at least 2"):
        t975(0)
    with pytest.raises(ValueError, match="same seeds"):
        paired([1.0, 2.0], [1.0])


def seeds(centre, spread=(-0.002, 0.001, 0.0, 0.002, -0.001)):
    return [centre + s for s in spread]


K = (1, 2, 4, 8)
INITIAL = {k: 0.5 for k in K}


def test_confirm_when_sdpo_beats_both_arms_everywhere():
    sdpo = {k: seeds(0.60) for k in K}
    other = {k: seeds(0.55, (0.001, -0.002, 0.0, 0.001, 0.0)) for k in K}
    out = decide(sdpo, other, other, INITIAL)
    assert out["verdict"].startswith("confirmed") and out["per_step_count"][1]["sdpo_gain"] == 0.1
    assert out["per_step_count"][1]["sdpo_minus_ddpo"]["t"] > 2.8


def test_refute_when_the_same_schedule_arm_is_as_good():
    sdpo = {k: seeds(0.60) for k in K}
    same = {k: seeds(0.60, (0.001, 0.0, -0.001, 0.002, 0.0)) for k in K}  # upper bound ~0.002 < gain / 2 = 0.05
    out = decide(sdpo, {k: seeds(0.55) for k in K}, same, INITIAL)
    assert out["verdict"].startswith("refuted at k = 1, 2, 4, 8") and out["refuted_at"] == [1, 2, 4, 8]


def test_schedule_when_only_the_ddpo_pytorch_arm_is_beaten():
    sdpo = {k: seeds(0.60) for k in K}
    ddpo = {k: seeds(0.50, (0.001, -0.001, 0.0, 0.002, -0.002)) for k in K}
    same = {k: [0.62, 0.50, 0.70, 0.55, 0.58] for k in K}  # noisy: neither beaten nor close enough to refute
    out = decide(sdpo, ddpo, same, INITIAL)
    assert out["verdict"].startswith("schedule: at k = 1, 2, 4, 8") and out["refuted_at"] == []


def test_not_resolvable_when_everything_overlaps():
    noisy = {k: [0.50, 0.60, 0.55, 0.52, 0.58] for k in K}
    out = decide(
        noisy, {k: [0.58, 0.51, 0.56, 0.60, 0.50] for k in K}, {k: [0.53, 0.59, 0.50, 0.57, 0.55] for k in K}, INITIAL
    )
    assert out["verdict"] == "not resolvable at this budget"


def test_gradient_alignment_reliability_hand_worked():
    """Spearman-Brown: halves agreeing at c give a full-set estimate whose squared correlation with the
    truth is 2c / (1 + c): c = 0.8 -> 16/18; c = 0.25 -> 0.4; negative or zero agreement -> 0."""
    from benchmarks.gradient_alignment import reliability

    assert reliability(0.8) == pytest.approx(16 / 18) and reliability(0.25) == pytest.approx(0.4)
    assert reliability(0.0) == 0.0 and reliability(-0.2) == 0.0 and reliability(1.0) == 1.0
