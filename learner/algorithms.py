"""Policy losses by algorithm name (config `algorithm`). Pure torch: no ray, no diffusers.

Every loss maps one backward pass of M pairs at one step each,
    new_log_probs (M, P), old_log_probs (M, P), advantages (M, P), temporal weights w_j (M,), clip_range,
to a named (loss, clipfrac, approx_kl). SDPO uses the temporal weights; DDPO has none.
"""

from __future__ import annotations

from typing import Callable

from learner.ddpo import ddpo_loss
from learner.objective import sdpo_loss

POLICY_LOSSES: dict[str, Callable] = {
    "sdpo": sdpo_loss,
    "ddpo": lambda new, old, adv, weights, clip_range: ddpo_loss(new, old, adv, clip_range),
}


def policy_loss(algorithm: str) -> Callable:
    try:
        return POLICY_LOSSES[algorithm]
    except KeyError:
        raise ValueError(f"unknown algorithm {algorithm!r}; valid names: {', '.join(sorted(POLICY_LOSSES))}") from None
