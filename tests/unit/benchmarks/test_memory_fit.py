"""benchmarks/memory_fit.py: which preset settings fit 80 GB and 141 GB cards, from hand-made peaks."""

from __future__ import annotations

from benchmarks.memory_fit import CONTEXT_GIB, Phase, Setting, advise, combine, fits

CAPS = {"80GB": 79.2, "141GB": 139.8}


def test_a_setting_peaks_at_its_larger_phase_and_costs_both():
    """rollout 30 GiB at 2.0 s/pair, update 70 GiB at 6.0 s/pair: the worker peaks at max(30, 70) = 70 and
    takes 2 + 6 = 8 s per pair; an update measured without T5 does not combine with a rollout with T5."""
    settings = combine(
        {(True, 8): Phase(30.0, 2.0)}, {(True, 8, False): Phase(70.0, 6.0), (False, 8, False): Phase(60.0, 5.0)}
    )
    assert settings == {Setting(8, 8): Phase(70.0, 8.0)}


def test_fits_leaves_room_for_the_cuda_context():
    assert CONTEXT_GIB == 1.0
    assert fits(Phase(78.2, 1.0), 79.2, 139.8) is True  # 78.2 + 1 = 79.2 <= 79.2
    assert fits(Phase(78.3, 1.0), 79.2, 139.8) is False
    assert fits(Phase(None, None), 79.2, 79.2) is False  # out of memory on an 80 GB card: does not fit it
    assert fits(Phase(None, None), 139.8, 79.2) is None  # ... and on a 141 GB card nobody knows


def test_the_cheapest_fitting_change_is_the_fastest_and_t5_goes_last():
    """Baseline (chunk 8, micro 8): rollout 40 GiB, update 95 GiB: fits 141 (95 + 1 <= 139.8), not 80.
    Fitting 80 (peak + 1 <= 79.2): micro 1 -> max(40, 60) = 60 at 2 + 9 = 11 s/pair; checkpointing ->
    max(40, 50) = 50 at 2 + 7.5 = 9.5 s/pair (cheaper: 9.5 / 8 = 1.1875x the baseline's 2 + 6 = 8);
    T5 off -> 30 GiB at 7 s/pair, faster still, but it changes the model: only when nothing else fits."""
    rollout = {(True, 8): Phase(40.0, 2.0), (False, 8): Phase(30.0, 1.8)}
    update = {
        (True, 8, False): Phase(95.0, 6.0),
        (True, 1, False): Phase(60.0, 9.0),
        (True, 8, True): Phase(50.0, 7.5),
        (False, 8, False): Phase(28.0, 5.2),
    }
    advice = advise(combine(rollout, update), Setting(8, 8), card_gib=139.8, capacities=CAPS)
    assert advice["141GB"] == {"fits": True, "peak_gib": 95.0}
    assert advice["80GB"]["fits"] is False
    assert advice["80GB"]["cheapest_change"] == {"model.gradient_checkpointing": True}
    assert advice["80GB"]["peak_gib_after"] == 50.0 and advice["80GB"]["slowdown"] == 1.188


def test_t5_off_when_nothing_else_fits_and_unknown_above_the_measuring_card():
    """Measured on an 80 GB card where the baseline ran out of memory: for 141 GB the answer is unknown;
    for 80 GB only dropping T5 (rollout 30, update 70: 70 + 1 <= 79.2) fits."""
    rollout = {(True, 8): Phase(40.0, 2.0), (False, 8): Phase(30.0, 1.8)}
    update = {
        (True, 8, False): Phase(None, None),
        (True, 1, False): Phase(None, None),
        (False, 8, False): Phase(70.0, 5.0),
    }
    advice = advise(combine(rollout, update), Setting(8, 8), card_gib=79.2, capacities=CAPS)
    assert advice["141GB"]["fits"] is None and "measure on a larger card" in advice["141GB"]["note"]
    change = advice["80GB"]["cheapest_change"]
    assert list(change) == ["model.pretrained"] and "text_encoder_3=None" in change["model.pretrained"]
    assert "slowdown" not in advice["80GB"]  # the baseline has no time: it never ran


def test_no_fitting_change_names_what_was_tried():
    rollout = {(True, 8): Phase(90.0, 2.0), (True, 4): Phase(85.0, 2.2)}
    update = {(True, 2, False): Phase(90.0, 6.0), (True, 1, False): Phase(88.0, 8.0)}
    advice = advise(combine(rollout, update), Setting(8, 2), card_gib=139.8, capacities={"80GB": 79.2})
    assert advice["80GB"]["cheapest_change"] is None
    assert advice["80GB"]["note"] == "no measured change fits (tried: rollout.chunk_size, train.micro_batch_size)"
