"""Paired statistics over seeds and the replication's decision rule (benchmarks/learning.py).
Pure Python: no numpy, no torch.

Two arms run with the same seeds share each seed's prompts, pair noises and evaluation noises, so
their difference is compared seed by seed: d_s = a_s - b_s, mean d, its standard error
sd(d) / sqrt(n) (sd with n - 1), paired t = mean / s.e., and the two-sided 95 % interval
mean +- t_{0.975, n-1} s.e.
"""

from __future__ import annotations

import math
import statistics
from typing import NamedTuple

# two-sided 95 % quantiles of Student's t (0.975 quantile) for 1..30 degrees of freedom; beyond: normal
T975 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
)


def t975(df: int) -> float:
    if df < 1:
        raise ValueError("a t interval needs at least 2 paired values (1 degree of freedom)")
    return T975[df - 1] if df <= len(T975) else 1.960


class Paired(NamedTuple):
    n: int
    mean: float  # mean of a - b
    se: float  # standard error of that mean
    t: float  # mean / se (inf for a non-zero mean with no spread, nan for 0 / 0)
    low: float  # 95 % interval
    high: float

    def as_dict(self, digits: int = 4) -> dict:
        return {
            k: (round(v, digits) if isinstance(v, float) and math.isfinite(v) else v) for k, v in self._asdict().items()
        }


def paired(a: list[float], b: list[float]) -> Paired:
    """a - b seed by seed (a[i] and b[i] from the same seed)."""
    if len(a) != len(b):
        raise ValueError(f"paired values need the same seeds: {len(a)} against {len(b)}")
    d = [x - y for x, y in zip(a, b)]
    n = len(d)
    mean = statistics.fmean(d)
    se = statistics.stdev(d) / math.sqrt(n) if n > 1 else float("nan")
    if se > 0:
        t = mean / se
    else:
        t = float("nan") if mean == 0 or math.isnan(se) else math.copysign(math.inf, mean)
    half = t975(n - 1) * se if n > 1 else float("nan")
    return Paired(n, mean, se, t, mean - half, mean + half)


CONFIRM_T = 2.8


def decide(
    sdpo: dict[int, list[float]],
    ddpo: dict[int, list[float]],
    ddpo_stepwise: dict[int, list[float]],
    initial: dict[int, float],
) -> dict:
    """The replication's decision, from the final held-out metric per step count k and seed:
    `sdpo[k]`, `ddpo[k]` (ddpo-pytorch's schedule), `ddpo_stepwise[k]` (SDPO's schedule) are per-seed
    values in the same seed order; `initial[k]` the initial policy's value.

    - confirm: SDPO beats both DDPO arms at every k with paired t > CONFIRM_T;
    - refute at k: the 95 % upper bound of SDPO - DDPO(SDPO's schedule) is below half of SDPO's own
      mean gain over the initial policy there;
    - schedule: at some k SDPO beats only the ddpo-pytorch-schedule arm (t > CONFIRM_T against it, not
      against the same-schedule arm): that gain belongs to the schedule, not the objective;
    - otherwise: not resolvable at this budget.
    """
    per_k, refuted, schedule_only = {}, [], []
    beats_all = True
    for k in sorted(sdpo):
        vs_ddpo, vs_same = paired(sdpo[k], ddpo[k]), paired(sdpo[k], ddpo_stepwise[k])
        gain = statistics.fmean(sdpo[k]) - initial[k]
        wins = (vs_ddpo.t > CONFIRM_T, vs_same.t > CONFIRM_T)
        beats_all &= all(wins)
        if vs_same.high < gain / 2:
            refuted.append(k)
        if wins[0] and not wins[1]:
            schedule_only.append(k)
        per_k[k] = {
            "sdpo_gain": round(gain, 4),
            "sdpo_minus_ddpo": vs_ddpo.as_dict(),
            "sdpo_minus_ddpo_stepwise": vs_same.as_dict(),
        }
    if beats_all:
        verdict = "confirmed: SDPO beats both DDPO arms at every step count"
    elif refuted:
        verdict = (
            f"refuted at k = {', '.join(map(str, refuted))}: SDPO's edge over DDPO on its own schedule is below half "
            "its gain"
        )
    elif schedule_only:
        verdict = (
            f"schedule: at k = {', '.join(map(str, schedule_only))} SDPO beats only DDPO on ddpo-pytorch's schedule"
        )
    else:
        verdict = "not resolvable at this budget"
    return {"verdict": verdict, "refuted_at": refuted, "schedule_only_at": schedule_only, "per_step_count": per_k}
