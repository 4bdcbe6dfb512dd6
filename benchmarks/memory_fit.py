"""Which settings of a preset fit a GPU's memory, and the cheapest change that makes one fit: pure
arithmetic over measured peaks (benchmarks/gpu_throughput.py --fits measures them on a GPU).

One hybrid policy worker samples, then trains, in one process: its peak is the larger of the two
phases' peaks. The rollout's peak depends on the pairs per rollout call (rollout.chunk_size) and
whether SD3 carries its T5 encoder; the update's on the pairs per backward pass
(train.micro_batch_size), gradient checkpointing and T5. So each phase is measured for a few values
of its own knobs, and every combination is a setting:

    peak(setting)       = max(rollout peak(t5, chunk), update peak(t5, micro, checkpointing))
    s_per_pair(setting) = rollout s/pair(t5, chunk) + update s/pair(t5, micro, checkpointing)

A setting fits a card when peak + CONTEXT_GIB <= the card's capacity. A phase that ran out of memory
on the measuring card does not fit that card or a smaller one; on a larger one it is unknown.
The cheapest change is the fitting setting with the least seconds per pair; one that drops T5 (it
changes the model's conditioning, not just speed) only when nothing else fits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

# Memory torch can have on each card: the total torch.cuda.mem_get_info() reports (H100 80GB: 79.2 GiB;
# H200: 139.8 GiB).
CAPACITIES_GIB = {"80GB": 79.2, "141GB": 139.8}
CONTEXT_GIB = 1.0  # the CUDA context and library workspaces, outside the caching allocator's counts


@dataclass(frozen=True)
class Phase:
    peak_gib: float | None  # torch.cuda.max_memory_reserved in the phase; None: out of memory on the measuring card
    s_per_pair: float | None  # seconds per pair of the phase (None: not measured)


@dataclass(frozen=True)
class Setting:
    chunk_size: int  # pairs per rollout call
    micro_batch_size: int  # pairs per backward pass
    gradient_checkpointing: bool = False
    t5: bool = True  # SD3 with its T5 encoder (the other families: always True)


def combine(
    rollout: dict[tuple[bool, int], Phase], update: dict[tuple[bool, int, bool], Phase]
) -> dict[Setting, Phase]:
    """Every setting of measured phases: rollout keyed (t5, chunk), update keyed (t5, micro, checkpointing)."""
    out = {}
    for (t5, chunk), r in rollout.items():
        for (t5_u, micro, ckpt), u in update.items():
            if t5_u != t5:
                continue
            peak = None if r.peak_gib is None or u.peak_gib is None else max(r.peak_gib, u.peak_gib)
            secs = None if r.s_per_pair is None or u.s_per_pair is None else r.s_per_pair + u.s_per_pair
            out[Setting(chunk, micro, ckpt, t5)] = Phase(peak, secs)
    return out


def fits(phase: Phase, capacity_gib: float, card_gib: float) -> bool | None:
    """True/False; None when the phase ran out of memory on a smaller card than this capacity (unknown)."""
    if phase.peak_gib is None:
        return False if capacity_gib <= card_gib else None
    return phase.peak_gib + CONTEXT_GIB <= capacity_gib


def overrides(baseline: Setting, setting: Setting) -> dict[str, object]:
    """The config changes (KEY: VALUE, as learner.main takes them) from `baseline` to `setting`."""
    out: dict[str, object] = {}
    if setting.chunk_size != baseline.chunk_size:
        out["rollout.chunk_size"] = setting.chunk_size  # rollout.pairs_per_epoch must stay a multiple of it
    if setting.micro_batch_size != baseline.micro_batch_size:
        out["train.micro_batch_size"] = setting.micro_batch_size
    if setting.gradient_checkpointing != baseline.gradient_checkpointing:
        out["model.gradient_checkpointing"] = setting.gradient_checkpointing
    if setting.t5 != baseline.t5:
        out["model.pretrained"] = (
            "a copy of the pipeline without T5: StableDiffusion3Pipeline.from_pretrained(ID, text_encoder_3=None, "
            "tokenizer_3=None).save_pretrained(DIR), then model.pretrained=DIR"
        )
    return out


def _cost(baseline: Setting, setting: Setting, phase: Phase) -> tuple:
    changed = sum(getattr(setting, f.name) != getattr(baseline, f.name) for f in fields(Setting))
    secs = phase.s_per_pair if phase.s_per_pair is not None else math.inf
    return (setting.t5 != baseline.t5, secs, changed)


def advise(
    settings: dict[Setting, Phase], baseline: Setting, card_gib: float, capacities: dict[str, float] = CAPACITIES_GIB
) -> dict[str, dict]:
    """Per capacity: whether the baseline fits, else the cheapest measured setting that does (its
    overrides, peak and slowdown against the baseline), or why none is known."""
    base = settings.get(baseline, Phase(None, None))
    out = {}
    for name, cap in capacities.items():
        verdict = fits(base, cap, card_gib)
        entry: dict[str, object] = {"fits": verdict, "peak_gib": base.peak_gib}
        if verdict is None:
            entry["note"] = f"out of memory on the {card_gib:.0f} GiB card it was measured on: measure on a larger card"
        elif not verdict:
            fitting = [(s, p) for s, p in settings.items() if s != baseline and fits(p, cap, card_gib)]
            if fitting:
                best, phase = min(fitting, key=lambda sp: _cost(baseline, *sp))
                entry["cheapest_change"] = overrides(baseline, best)
                entry["peak_gib_after"] = phase.peak_gib
                if phase.s_per_pair is not None and base.s_per_pair is not None:
                    entry["slowdown"] = round(phase.s_per_pair / base.s_per_pair, 3)
            else:
                entry["cheapest_change"] = None
                entry["note"] = "no measured change fits (tried: " + ", ".join(sorted(_knobs(baseline, settings))) + ")"
        out[name] = entry
    return out


def _knobs(baseline: Setting, settings: dict[Setting, Phase]) -> set[str]:
    return {k for s in settings for k in overrides(baseline, s)} or {"nothing"}
